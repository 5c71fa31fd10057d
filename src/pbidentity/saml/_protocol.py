"""The SAML messages pbidentity writes itself: AuthnRequests and the SP metadata.

Both are small, fixed documents, built from escaped values without
python3-saml so that starting a sign-in or serving metadata never needs the
XML security stack. What comes back (the response) is verified by
:mod:`pbidentity.saml._response`.

A workspace may sign its AuthnRequests (some ADFS and Entra ID set-ups
require it) with the SP's signing key: on the Redirect binding the signature
covers the exact query string ``SAMLRequest=...&RelayState=...&SigAlg=...``
(SAML bindings 3.4.4.1) and travels as the ``Signature`` parameter; on the
POST binding it is an enveloped XML signature in the request, which needs
libxmlsec (loaded only then). The metadata publishes every SP key: signing
keys with ``AuthnRequestsSigned="true"`` when requests are signed,
encryption keys with the algorithms the SP decrypts.
"""

from __future__ import annotations

import base64
import html
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit
from xml.sax.saxutils import quoteattr

import attrs

from pbidentity.domain import IdentityProvider
from pbidentity.http import Response
from pbidentity.saml._types import ServiceProvider

if TYPE_CHECKING:
    from pbidentity.saml._keys import SpKey

__all__ = ["AuthnRedirect", "authn_request", "redirect_for", "sign_request", "sp_metadata"]

POST_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
#: The algorithm every signed request uses.
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
#: What the SP decrypts, most preferred first, as the metadata offers it.
ENCRYPTION_METHODS = (
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
)

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
    signing_key: SpKey | None = None,
) -> AuthnRedirect:
    """The redirect (or auto-posting form) that carries a new AuthnRequest to the IdP.

    With ``signing_key`` the request is signed as its binding says.
    """
    xml = authn_request(request_id=request_id, sp=sp, idp=idp, now=now).encode()
    params = [("RelayState", relay_state)] if relay_state else []
    if idp.sso_binding == "post":
        if signing_key is not None:
            xml = sign_request(xml, signing_key)
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
    if signing_key is not None:
        # The signature covers exactly the encoded parameters as sent, in
        # this order (SAML bindings 3.4.4.1); the IdP rebuilds the same string.
        # cryptography comes with the saml extra: loaded only to sign.
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        query += "&" + urlencode([("SigAlg", RSA_SHA256)])
        signature = signing_key.private_key.sign(
            query.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        query += "&" + urlencode([("Signature", base64.b64encode(signature).decode())])
    joined = f"{parts.query}&{query}" if parts.query else query
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))
    return AuthnRedirect(request_id=request_id, binding="redirect", url=url, cookie=cookie)


def sign_request(xml: bytes, signing_key: SpKey) -> bytes:
    """The AuthnRequest with an enveloped RSA-SHA256 signature after its Issuer (POST binding)."""
    import xmlsec  # the saml extra; only a signed POST request needs it
    from lxml import etree

    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    signature = xmlsec.template.create(
        root, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds"
    )
    # The schema wants the signature right after the Issuer.
    root.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer").addnext(signature)
    reference = xmlsec.template.add_reference(
        signature, xmlsec.Transform.SHA256, uri="#" + root.get("ID")
    )
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    xmlsec.tree.add_ids(root, ["ID"])
    key = xmlsec.Key.from_memory(signing_key.private_key_pem, xmlsec.KeyFormat.PEM)
    key.load_cert_from_memory(signing_key.certificate_pem, xmlsec.KeyFormat.CERT_PEM)
    context = xmlsec.SignatureContext()
    context.key = key
    context.sign(signature)
    return bytes(etree.tostring(root))


def _key_descriptor(use: str, key: SpKey, methods: Sequence[str] = ()) -> str:
    offered = "".join(f"<md:EncryptionMethod Algorithm={quoteattr(m)}/>" for m in methods)
    return (
        f'<md:KeyDescriptor use="{use}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        f"{key.certificate_body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
        f"{offered}</md:KeyDescriptor>"
    )


def sp_metadata(
    sp: ServiceProvider,
    *,
    signing_keys: Sequence[SpKey] = (),
    encryption_keys: Sequence[SpKey] = (),
) -> bytes:
    """The SP metadata document an admin can upload to the IdP instead of typing the values.

    ``signing_keys`` are published (and ``AuthnRequestsSigned="true"``) when
    the workspace signs its requests; ``encryption_keys`` when it accepts
    encrypted assertions. Every key of a rollover is listed, so an IdP that
    reads the metadata knows the next one before it is used.
    """
    descriptors = "".join(_key_descriptor("signing", key) for key in signing_keys) + "".join(
        _key_descriptor("encryption", key, ENCRYPTION_METHODS) for key in encryption_keys
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
        f"entityID={quoteattr(sp.entity_id)}>"
        f'<md:SPSSODescriptor AuthnRequestsSigned="{"true" if signing_keys else "false"}" '
        'WantAssertionsSigned="true" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{descriptors}"
        f"<md:NameIDFormat>{html.escape(sp.nameid_format, quote=False)}</md:NameIDFormat>"
        f"<md:AssertionConsumerService Binding={quoteattr(POST_BINDING)} "
        f'Location={quoteattr(sp.acs_url)} index="0" isDefault="true"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>\n"
    ).encode()
