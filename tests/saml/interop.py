"""An app for interoperability tests: pbidentity's SAML side over real HTTP, and a browser.

The interoperability tests run a real IdP implementation (pysaml2,
SimpleSAMLphp, Lasso) against pbidentity the way a customer's IdP meets a
deployed app: the app serves ``/saml`` through the WSGI adapter on a free
port of 127.0.0.1 (its ``public_url``, so loopback is its only development
host), with a SQLite file for storage; a host-app route starts the admin's
test sign-in (Save & authorize) as an admin page would; the outcomes that
reach the host app (after the ACS and the finish step, in the browser that
started the sign-in) are recorded. The browser is an HTTP client that keeps
cookies and follows what an IdP's pages tell it to do.
"""

from __future__ import annotations

import base64
import functools
import html
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer
from wsgiref.simple_server import make_server

import attrs
import httpx
from lxml import etree

from pbidentity.admin import Admin
from pbidentity.domain import IdentityProvider
from pbidentity.http import Handler
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.http import Router
from pbidentity.saml import SamlConfig
from pbidentity.saml import SamlService
from pbidentity.saml import SignInOutcome
from pbidentity.saml._keys import SpKey
from pbidentity.saml._keys import generate_sp_key
from pbidentity.saml._metadata import read_metadata
from pbidentity.saml._protocol import AuthnRedirect
from pbidentity.saml._protocol import redirect_for
from pbidentity.saml._protocol import sp_metadata
from pbidentity.saml._types import ServiceProvider
from pbidentity.storage import Storage
from pbidentity.storage import open_storage
from pbidentity.wsgi import WsgiApp

SLUG = "acme"
#: The member every IdP signs in, with the attributes each one sends.
EMAIL = "ada@example.com"
GIVEN_NAME = "Ada"
FAMILY_NAME = "Lovelace"

_DS = "http://www.w3.org/2000/09/xmldsig#"
_FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.DOTALL | re.IGNORECASE)
_ACTION = re.compile(r'\baction\s*=\s*"([^"]*)"', re.IGNORECASE)
_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r'\b(name|value|type)\s*=\s*"([^"]*)"', re.IGNORECASE)


@attrs.frozen
class HtmlForm:
    """A form of a page, as a browser would submit it (hidden and preset fields)."""

    action: str
    fields: dict[str, str]


def html_forms(page: str, base_url: str) -> list[HtmlForm]:
    """The forms of an HTML page with their actions made absolute against ``base_url``."""
    found = []
    for form in _FORM.findall(page):
        action = _ACTION.search(form)
        fields = {}
        for field in _INPUT.findall(form):
            attributes = {k.lower(): html.unescape(v) for k, v in _ATTRIBUTE.findall(field)}
            if "name" in attributes and attributes.get("type", "text") != "submit":
                fields[attributes["name"]] = attributes.get("value", "")
        target = html.unescape(action.group(1)) if action else base_url
        found.append(HtmlForm(str(httpx.URL(base_url).join(target)), fields))
    return found


class _AuthorizeStarter:
    """The host app's admin page that starts Save & authorize's test sign-in."""

    #: A GET page: no body to read.
    max_body_bytes = 0

    def __init__(self, service: SamlService) -> None:
        self.service = service

    def handle(self, request: Request) -> Response:
        slug = request.path.strip("/")
        return self.service.begin_authorize(slug, request=request).to_response()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output to what fails."""


@attrs.define
class InteropApp:
    """pbidentity's SAML side served over HTTP, with the outcomes its host app received."""

    base_url: str
    storage: Storage
    service: SamlService
    outcomes: list[SignInOutcome] = attrs.field(factory=list)

    @property
    def sp(self) -> ServiceProvider:
        """The workspace's service provider, as its metadata publishes it."""
        return self.service.service_provider(SLUG)

    @property
    def metadata_url(self) -> str:
        """The SP metadata URL an IdP admin pastes or downloads."""
        return self.sp.metadata_url

    @property
    def login_url(self) -> str:
        """Where a member starts an SP-initiated sign-in."""
        return self.sp.login_url

    @property
    def authorize_url(self) -> str:
        """The admin page that starts the test sign-in of the pending configuration."""
        return f"{self.base_url}/admin/authorize/{SLUG}"

    def browser(self) -> httpx.Client:
        """A browser of its own: cookies kept, redirects followed."""
        return httpx.Client(follow_redirects=True, timeout=30)

    def _on_result(self, _request: Request, outcome: SignInOutcome) -> Response:
        self.outcomes.append(outcome)
        return Response(
            status=200,
            headers=(("Content-Type", "text/plain; charset=utf-8"),),
            body=f"outcome: {type(outcome).__name__}".encode(),
        )

    def last_outcome(self, page: httpx.Response) -> SignInOutcome:
        """The outcome the host app received when the browser landed on ``page``."""
        assert page.status_code == 200, (page.status_code, page.url, page.text[:2000])
        assert page.text.startswith("outcome: "), (page.url, page.text[:2000])
        return self.outcomes[-1]


@contextmanager
def running_app(directory: Path) -> Iterator[InteropApp]:
    """The app on a free port of 127.0.0.1, with workspace ``acme`` on a SQLite file."""
    server: WSGIServer = make_server("127.0.0.1", 0, _not_yet, handler_class=_Quiet)
    base_url = f"http://127.0.0.1:{server.server_port}"
    storage = open_storage(f"sqlite:///{directory / 'pbidentity.db'}")
    Admin(storage).create_tenant(SLUG, "Acme")
    service = SamlService(
        storage,
        SamlConfig(public_url=base_url, dev_hosts=frozenset({"127.0.0.1", "localhost"})),
    )
    app = InteropApp(base_url=base_url, storage=storage, service=service)
    service.on_result = app._on_result
    handlers: dict[str, Handler] = {
        "/saml": service,
        "/admin/authorize": _AuthorizeStarter(service),
    }
    server.set_app(WsgiApp(Router(handlers)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        storage.close()


def _not_yet(_environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]


def post_form(browser: httpx.Client, form: HtmlForm) -> httpx.Response:
    """Submit a form as the browser does when a page submits it on load."""
    return browser.post(form.action, data=form.fields)


@attrs.frozen
class Signature:
    """Where a ``ds:Signature`` of a SAML response sits and which algorithms it uses."""

    signs: str
    signature_method: str
    digest_method: str


def signatures(saml_response: str) -> list[Signature]:
    """The signatures of a posted (base64) SAMLResponse, outermost first."""
    root = etree.fromstring(base64.b64decode(saml_response))
    found = []
    for signature in root.iter(f"{{{_DS}}}Signature"):
        parent = signature.getparent()
        assert parent is not None
        found.append(
            Signature(
                signs=etree.QName(parent).localname,
                signature_method=signature.find(f".//{{{_DS}}}SignatureMethod").get("Algorithm"),
                digest_method=signature.find(f".//{{{_DS}}}DigestMethod").get("Algorithm"),
            )
        )
    return found


# -- Signed requests and encrypted assertions (the SP's own keys) --------------------

_XENC = "http://www.w3.org/2001/04/xmlenc#"


@functools.cache
def sp_key(label: str = "current") -> SpKey:
    """An SP key pair made once per test session (RSA-3072 takes a while to generate)."""
    return generate_sp_key(f"app.example interop {label}")


def sp_metadata_with_keys(
    app: InteropApp, key: SpKey, *, signing: bool = False, encryption: bool = False
) -> bytes:
    """The app's SP metadata publishing ``key`` to sign requests and (or) to encrypt to.

    An SP that publishes a signing key says ``AuthnRequestsSigned="true"``,
    which some IdPs (SimpleSAMLphp) then enforce.
    """
    return sp_metadata(
        app.sp,
        signing_keys=[key] if signing else [],
        encryption_keys=[key] if encryption else [],
    )


def signed_request(
    app: InteropApp, idp: IdentityProvider, key: SpKey | None
) -> tuple[str, AuthnRedirect]:
    """A new AuthnRequest of the app to ``idp`` (signed with ``key``): (its ID, the redirect)."""
    request_id = "id" + secrets.token_hex(20)
    redirect = redirect_for(
        request_id=request_id,
        sp=app.sp,
        idp=idp,
        now=datetime.now(UTC),
        relay_state=None,
        signing_key=key,
    )
    return request_id, redirect


def identity_provider(metadata: bytes) -> IdentityProvider:
    """The IdP an IdP's metadata describes, as the validator reads it."""
    idp, report = read_metadata(metadata, now=datetime.now(UTC))
    assert idp is not None, report.render()
    return idp


@attrs.frozen
class Encryption:
    """How an EncryptedAssertion is encrypted: content and key transport algorithms."""

    content: str
    key_transport: str


def encryption(saml_response: str) -> Encryption | None:
    """The algorithms of a posted SAMLResponse's EncryptedAssertion (``None``: plaintext)."""
    root = etree.fromstring(base64.b64decode(saml_response))
    data = root.find(f".//{{{_XENC}}}EncryptedData")
    if data is None:
        return None
    content = data.find(f"{{{_XENC}}}EncryptionMethod")
    key = root.find(f".//{{{_XENC}}}EncryptedKey/{{{_XENC}}}EncryptionMethod")
    assert content is not None
    assert key is not None
    return Encryption(content=content.get("Algorithm", ""), key_transport=key.get("Algorithm", ""))
