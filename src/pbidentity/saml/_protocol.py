"""The SAML messages pbidentity writes itself: AuthnRequests and the SP metadata.

Both are small, fixed documents, built from escaped values without
python3-saml so that starting a sign-in or serving metadata never needs the
XML security stack. What comes back (the response) is verified by
:mod:`pbidentity.saml._response`.
"""

from __future__ import annotations

import base64
import html
import zlib
from datetime import datetime
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit
from xml.sax.saxutils import quoteattr

import attrs

from pbidentity.domain import IdentityProvider
from pbidentity.http import Response
from pbidentity.saml._types import ServiceProvider

__all__ = ["AuthnRedirect", "authn_request", "sp_metadata"]

POST_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"

_SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


def _instant(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def authn_request(
    *, request_id: str, sp: ServiceProvider, idp: IdentityProvider, now: datetime
) -> str:
    """The AuthnRequest XML: unsigned, asking for a POST to our ACS and an email NameID."""
    return (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID={quoteattr(request_id)} Version="2.0" IssueInstant={quoteattr(_instant(now))} '
        f"Destination={quoteattr(idp.sso_url)} "
        f"ProtocolBinding={quoteattr(POST_BINDING)} "
        f"AssertionConsumerServiceURL={quoteattr(sp.acs_url)}>"
        f"<saml:Issuer>{html.escape(sp.entity_id, quote=False)}</saml:Issuer>"
        f'<samlp:NameIDPolicy Format={quoteattr(sp.nameid_format)} AllowCreate="true"/>'
        "</samlp:AuthnRequest>"
    )


@attrs.frozen(kw_only=True)
class AuthnRedirect:
    """Where to send the browser to start a sign-in at the IdP.

    For the HTTP-Redirect binding a URL (answer with a 302); for HTTP-POST a
    form the browser posts to the IdP (answer with :meth:`to_response`'s page,
    which submits itself).
    """

    request_id: str
    binding: str
    url: str
    form: tuple[tuple[str, str], ...] = ()
    #: The ``Set-Cookie`` value that binds the sign-in to this browser: the
    #: response must carry it (:meth:`to_response` does), or the finish step
    #: refuses the sign-in as started in another browser.
    cookie: str | None = None

    def to_response(self) -> Response:
        """The HTTP answer that sends the browser on its way (with the binding cookie)."""
        cookie = (("Set-Cookie", self.cookie),) if self.cookie else ()
        if self.binding == "redirect":
            return Response(
                status=302,
                headers=(("Location", self.url), *cookie, *_SECURITY_HEADERS),
                body=b"",
            )
        fields = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in self.form
        )
        page = (
            '<!doctype html><html><head><meta charset="utf-8"><title>Signing in</title></head>'
            '<body onload="document.forms[0].submit()">'
            f'<form method="post" action="{html.escape(self.url)}">{fields}'
            "<noscript><p>Continue to your identity provider.</p>"
            '<button type="submit">Continue</button></noscript></form></body></html>'
        )
        return Response(
            status=200,
            headers=(("Content-Type", "text/html; charset=utf-8"), *cookie, *_SECURITY_HEADERS),
            body=page.encode(),
        )


def redirect_for(
    *,
    request_id: str,
    sp: ServiceProvider,
    idp: IdentityProvider,
    now: datetime,
    relay_state: str | None,
    cookie: str | None = None,
) -> AuthnRedirect:
    """The redirect (or auto-posting form) that carries a new AuthnRequest to the IdP."""
    xml = authn_request(request_id=request_id, sp=sp, idp=idp, now=now).encode()
    params = [("RelayState", relay_state)] if relay_state else []
    if idp.sso_binding == "post":
        encoded = base64.b64encode(xml).decode()
        return AuthnRedirect(
            request_id=request_id,
            binding="post",
            url=idp.sso_url,
            form=(("SAMLRequest", encoded), *params),
            cookie=cookie,
        )
    # The Redirect binding carries the request DEFLATE-compressed (raw, no
    # zlib header) and base64-encoded (SAML bindings, 3.4.4.1).
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = compressor.compress(xml) + compressor.flush()
    query = urlencode([("SAMLRequest", base64.b64encode(deflated).decode()), *params])
    parts = urlsplit(idp.sso_url)
    joined = f"{parts.query}&{query}" if parts.query else query
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))
    return AuthnRedirect(request_id=request_id, binding="redirect", url=url, cookie=cookie)


def sp_metadata(sp: ServiceProvider) -> bytes:
    """The SP metadata document an admin can upload to the IdP instead of typing the values."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f"entityID={quoteattr(sp.entity_id)}>"
        '<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"<md:NameIDFormat>{html.escape(sp.nameid_format, quote=False)}</md:NameIDFormat>"
        f"<md:AssertionConsumerService Binding={quoteattr(POST_BINDING)} "
        f'Location={quoteattr(sp.acs_url)} index="0" isDefault="true"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>\n"
    ).encode()
