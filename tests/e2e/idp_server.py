"""A SAML identity provider over real HTTP for browser tests: :class:`TestIdp` behind a page.

A browser test cannot hand a response to the ACS the way unit tests do: the
browser must travel to the IdP and back, as it does with Okta. This server
does the IdP's half of that trip on 127.0.0.1 (stdlib ``http.server`` in a
thread, a free port)::

    GET  /metadata           the IdP metadata (what the admin pastes as "Manifest URL")
    GET  /sso?SAMLRequest=   an AuthnRequest, HTTP-Redirect binding: the sign-in page
    POST /sso                an AuthnRequest, HTTP-POST binding: the same page
    GET  /start?acs=URL      IdP-initiated: the sign-in page without a request (an Okta tile)
    POST /sign-in            the page's form: answers with a form that posts the
                             signed SAMLResponse and the RelayState to the ACS

There are no passwords: whoever types an email address is that person, which
is all a test needs. Every sign-in is recorded in :attr:`IdpServer.sign_ins`.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import attrs

from pbidentity.saml._types import ServiceProvider
from tests.saml.idp import TestIdp

__all__ = ["IdpServer", "IdpSignIn", "running_idp", "service_provider_for"]

#: The longest form body read; an AuthnRequest or a sign-in form is a few kilobytes.
_MAX_BODY = 256 * 1024


@attrs.frozen(kw_only=True)
class IdpSignIn:
    """One response the IdP sent: to whom, for which request, where."""

    name_id: str
    acs_url: str
    in_response_to: str | None
    relay_state: str


def service_provider_for(acs_url: str) -> ServiceProvider:
    """The SP values pbidentity uses for the tenant whose ACS URL this is.

    pbidentity builds them all from one root, ``{public_url}/saml/{slug}``:
    the ACS is ``{root}/acs`` and the entity ID (the audience) is
    ``{root}/metadata``; a real IdP has them typed in by the admin, this one
    derives them so that any app and workspace work without set-up.
    """
    root = acs_url.removesuffix("/acs")
    return ServiceProvider(
        entity_id=f"{root}/metadata",
        acs_url=acs_url,
        metadata_url=f"{root}/metadata",
        login_url=f"{root}/login",
    )


def _names(email: str) -> tuple[str, str]:
    """A first and last name for an address nobody described: ``ada.lovelace@`` -> Ada Lovelace."""
    local = email.partition("@")[0]
    first, _, last = local.replace("_", ".").partition(".")
    return first.capitalize() or "Test", last.capitalize() or "User"


def _page(title: str, body: str) -> bytes:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    ).encode()


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )


class IdpServer:
    """The test IdP listening on 127.0.0.1; start it with :func:`running_idp`.

    ``people`` gives first and last names by email address (the attribute
    statements); anyone else gets names made from the address. It listens on
    127.0.0.1 whatever ``host`` its URLs name (see :func:`running_idp`).
    """

    def __init__(
        self, *, people: Mapping[str, tuple[str, str]] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.people = dict(people or {})
        self.sign_ins: list[IdpSignIn] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.idp_server = self
        port = self._server.server_address[1]
        self.base_url = f"http://{host}:{port}"
        self.idp = TestIdp(entity_id=f"{self.base_url}/metadata", sso_url=f"{self.base_url}/sso")
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def metadata_url(self) -> str:
        """Where the IdP's metadata is served: what the admin gives the app."""
        return f"{self.base_url}/metadata"

    @property
    def sso_url(self) -> str:
        """The single sign-on URL (both bindings)."""
        return self.idp.sso_url

    def start_url(self, acs_url: str, relay_state: str = "") -> str:
        """The page that starts an IdP-initiated sign-in to that ACS (what an Okta tile opens)."""
        query = urlencode({"acs": acs_url, "RelayState": relay_state})
        return f"{self.base_url}/start?{query}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- the pages ---------------------------------------------------------------

    def sign_in_page(self, fields: Mapping[str, str], *, error: str = "") -> bytes:
        """The page where the person types their email; ``fields`` ride along hidden."""
        alert = f'<p id="idp-error" role="alert">{html.escape(error)}</p>' if error else ""
        asked = fields.get("acs", "")
        return _page(
            "Sign in to the test IdP",
            "<h1>Sign in to the test IdP</h1>"
            f'<p>Signing in to <code id="idp-acs">{html.escape(asked)}</code></p>{alert}'
            '<form method="post" action="/sign-in">'
            f"{_hidden(fields)}"
            '<label for="idp-email">Email</label> '
            '<input type="email" id="idp-email" name="email" required autofocus> '
            '<button type="submit" id="idp-sign-in">Sign in</button>'
            "</form>",
        )

    def answer(self, form: Mapping[str, str]) -> bytes:
        """The auto-posting form that carries the signed response to the ACS."""
        email = form.get("email", "").strip()
        acs_url = form["acs"]
        request_id = form.get("request_id") or None
        relay_state = form.get("RelayState", "")
        first, last = self.people.get(email.lower()) or _names(email)
        saml_response = self.idp.response(
            sp=service_provider_for(acs_url),
            name_id=email,
            in_response_to=request_id,
            attributes={"email": [email], "firstName": [first], "lastName": [last]},
        )
        self.sign_ins.append(
            IdpSignIn(
                name_id=email,
                acs_url=acs_url,
                in_response_to=request_id,
                relay_state=relay_state,
            )
        )
        posted = {"SAMLResponse": saml_response}
        if relay_state:
            posted["RelayState"] = relay_state
        return _page(
            "Signing in",
            f'<form id="idp-post" method="post" action="{html.escape(acs_url)}">'
            f"{_hidden(posted)}"
            '<noscript><button type="submit">Continue</button></noscript></form>'
            "<script>document.getElementById('idp-post').submit()</script>",
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    idp_server: IdpServer


class _BadRequest(Exception):
    """What the browser sent cannot be answered; the message says why."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""

    def _send(
        self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise _BadRequest("the form is too large")
        raw = self.rfile.read(length).decode("latin-1")
        return dict(parse_qsl(raw, keep_blank_values=True))

    def _request_page(self, params: Mapping[str, str], binding: str) -> None:
        """The sign-in page for an AuthnRequest, its id and ACS kept in the form."""
        saml_request = params.get("SAMLRequest")
        if not saml_request:
            raise _BadRequest("no SAMLRequest")
        try:
            request = TestIdp.read_authn_request(saml_request, binding=binding)
        except Exception as error:  # any garbage: say so on the page, as an IdP does
            raise _BadRequest(f"unreadable SAMLRequest: {error}") from error
        if not request.acs_url:
            raise _BadRequest("the AuthnRequest names no AssertionConsumerServiceURL")
        fields = {
            "acs": request.acs_url,
            "request_id": request.id,
            "RelayState": params.get("RelayState", ""),
        }
        self._send(200, self.server.idp_server.sign_in_page(fields))

    def _answer(self, action: str) -> None:
        idp = self.server.idp_server
        try:
            if action == "metadata":
                self._send(200, idp.idp.metadata_xml(), "application/samlmetadata+xml")
            elif action == "sso-get":
                self._request_page(dict(parse_qsl(urlsplit(self.path).query)), "redirect")
            elif action == "sso-post":
                self._request_page(self._form(), "post")
            elif action == "start":
                query = dict(parse_qsl(urlsplit(self.path).query))
                if not query.get("acs", "").startswith(("http://", "https://")):
                    raise _BadRequest("start needs acs=<the app's ACS URL>")
                fields = {"acs": query["acs"], "RelayState": query.get("RelayState", "")}
                self._send(200, idp.sign_in_page(fields))
            elif action == "sign-in":
                form = self._form()
                if not form.get("acs", "").startswith(("http://", "https://")):
                    raise _BadRequest("the sign-in form lost its ACS URL")
                if "@" not in form.get("email", ""):
                    fields = {k: v for k, v in form.items() if k != "email"}
                    self._send(400, idp.sign_in_page(fields, error="Type an email address."))
                    return
                self._send(200, idp.answer(form))
            else:
                self._send(404, _page("Not found", "<p>Nothing here.</p>"))
        except _BadRequest as error:
            self._send(400, _page("Bad request", f"<p>{html.escape(str(error))}</p>"))

    def do_GET(self) -> None:
        """Metadata, the Redirect binding, or an IdP-initiated start."""
        path = urlsplit(self.path).path
        self._answer({"/metadata": "metadata", "/sso": "sso-get", "/start": "start"}.get(path, ""))

    def do_POST(self) -> None:
        """The POST binding, or the sign-in form."""
        path = urlsplit(self.path).path
        self._answer({"/sso": "sso-post", "/sign-in": "sign-in"}.get(path, ""))


@contextmanager
def running_idp(
    *, people: Mapping[str, tuple[str, str]] | None = None, host: str = "127.0.0.1"
) -> Iterator[IdpServer]:
    """A test IdP serving on 127.0.0.1 and a free port for the duration of the block.

    ``host`` is the name its URLs use: ``localhost`` puts it on another site
    than an app at 127.0.0.1, so that the browser treats the trip to the IdP
    and back as cross-site, as it is with a real IdP (SameSite cookies).
    """
    server = IdpServer(people=people, host=host)
    server.start()
    try:
        yield server
    finally:
        server.stop()
