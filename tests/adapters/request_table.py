"""One table of requests, the core's answers to it, and real servers to send it to.

The table is data: each :class:`Row` is a request from the server root (so
the same row goes to the core, through a router-less lookup of its prefix,
and to every adapter over real HTTP). Rows run in order on a fresh database
per target; ``capture`` remembers a created resource's id and ETag, which
later rows name as ``{{alice}}`` and ``{{alice_etag}}`` (``{{token}}`` is the
workspace's API token). The service's clock and ids are fixed, so the
answers of two fresh databases are byte-identical.

The SAML rows go to a SAML service under ``/saml`` whose workspace trusts
one test IdP (made once, so every target gets the same signed response):
``{{saml_form}}`` is a signed, IdP-initiated sign-in form for a member,
``{{saml_euro_form}}`` another whose RelayState is ``/€``, and
``{{saml_sp_form}}``/``{{saml_sp_form_2}}`` answer sign-ins started before the
rows, in the browser whose cookie is ``{{saml_cookie_2}}`` for the second.
The service's ``on_result`` answers as a host app does: a sign-in is a 303
to its RelayState, so that the RelayState reaches a ``Location`` header.
"""

from __future__ import annotations

import http.client
import itertools
import re
import threading
import time
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import make_server

import attrs
import orjson

from pbidentity import PbIdentity
from pbidentity.domain import SamlConnection
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.http import Router
from pbidentity.saml import SamlConfig
from pbidentity.saml import SamlService
from pbidentity.saml import SignInFailure
from pbidentity.saml import SignInOutcome
from pbidentity.saml import default_result_page
from pbidentity.scim import ScimConfig
from tests.saml.idp import TestIdp
from tests.scim.helpers import GROUP
from tests.scim.helpers import patch
from tests.scim.helpers import user

#: Every request names this host, so every target builds the same base URL.
HOST = "app.example"
SCIM = "/scim/v2"
#: Small, so that the oversized row stays small enough for the socket buffers.
MAX_BODY = 4096
SAML = "/saml"
#: The SAML service's cap: a signed response fits, the oversized row does not.
SAML_MAX_BODY = 16 * 1024
ECHO = "/echo"
ECHO_MAX_BODY = 64
CLOCK = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
#: The response headers whose values must come through an adapter unchanged.
COMPARED_HEADERS = (
    "allow",
    "cache-control",
    "content-type",
    "etag",
    "location",
    "retry-after",
    "set-cookie",
    "www-authenticate",
)

_AUTH = ("Authorization", "Bearer {{token}}")
_JSON = ("Content-Type", "application/scim+json")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@attrs.frozen
class Row:
    """One request of the table and the status the core gives it."""

    name: str
    method: str
    #: From the server root, not percent-encoded: the client encodes it as UTF-8.
    path: str
    status: int
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = (_AUTH,)
    body: bytes = b""
    #: Remember the answer's ``id`` and ``ETag`` under this name.
    capture: str | None = None


@attrs.frozen
class Answer:
    """What came back: the status, the headers (names lower-cased) and the body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of a header, or ``None``; several values are joined as HTTP allows."""
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None


def _json(document: Any) -> bytes:
    return orjson.dumps(document)


def _write(name: str, method: str, path: str, status: int, document: Any, **extra: Any) -> Row:
    return Row(name, method, path, status, headers=(_AUTH, _JSON), body=_json(document), **extra)


_OVERSIZED = _json(user("big@example.com", displayName="x" * (2 * MAX_BODY)))

ROWS: tuple[Row, ...] = (
    # -- discovery
    Row("service provider config", "GET", "/scim/v2/ServiceProviderConfig", 200),
    Row("resource types", "GET", "/scim/v2/ResourceTypes", 200),
    Row("one resource type", "GET", "/scim/v2/ResourceTypes/User", 200),
    Row("schemas", "GET", "/scim/v2/Schemas", 200),
    Row(
        "one schema, colons in the path",
        "GET",
        "/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
        200,
    ),
    Row("unknown schema", "GET", "/scim/v2/Schemas/urn:nope", 404),
    # -- authentication
    Row("no Authorization", "GET", "/scim/v2/Users", 401, headers=()),
    Row("unknown token", "GET", "/scim/v2/Users", 401, headers=(("Authorization", "Bearer no"),)),
    Row("not a bearer", "GET", "/scim/v2/Users", 401, headers=(("Authorization", "Basic YTpi"),)),
    # -- users
    _write("create", "POST", "/scim/v2/Users", 201, user("alice@example.com"), capture="alice"),
    _write("duplicate userName", "POST", "/scim/v2/Users", 409, user("ALICE@example.com")),
    Row(
        "create, JSON with a charset",
        "POST",
        "/scim/v2/Users",
        201,
        headers=(_AUTH, ("Content-Type", "application/json; charset=utf-8")),
        body=_json(user("jürgen.groß@example.com", externalId="ext-ü")),
        capture="jurgen",
    ),
    Row("get", "GET", "/scim/v2/Users/{{alice}}", 200),
    Row(
        "get, not modified",
        "GET",
        "/scim/v2/Users/{{alice}}",
        304,
        headers=(_AUTH, ("If-None-Match", "{{alice_etag}}")),
    ),
    Row(
        "get, some attributes",
        "GET",
        "/scim/v2/Users/{{alice}}",
        200,
        query=(("attributes", "userName"),),
    ),
    Row("list", "GET", "/scim/v2/Users", 200),
    Row(
        "filter",
        "GET",
        "/scim/v2/Users",
        200,
        query=(("filter", 'userName eq "alice@example.com"'),),
    ),
    Row(
        "filter on a UTF-8 value",
        "GET",
        "/scim/v2/Users",
        200,
        query=(("filter", 'userName eq "jürgen.groß@example.com"'),),
    ),
    Row("bad filter", "GET", "/scim/v2/Users", 400, query=(("filter", "userName eq"),)),
    Row(
        "repeated query keys: the first wins",
        "GET",
        "/scim/v2/Users",
        200,
        query=(("count", "1"), ("count", "5"), ("attributes", "userName"), ("attributes", "id")),
    ),
    Row("bad count", "GET", "/scim/v2/Users", 400, query=(("count", "many"),)),
    _write(
        "search",
        "POST",
        "/scim/v2/Users/.search",
        200,
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 1},
    ),
    _write(
        "patch",
        "PATCH",
        "/scim/v2/Users/{{alice}}",
        200,
        patch({"op": "replace", "path": "displayName", "value": "Alice A."}),
    ),
    Row(
        "patch, stale If-Match",
        "PATCH",
        "/scim/v2/Users/{{alice}}",
        412,
        headers=(_AUTH, _JSON, ("If-Match", "{{alice_etag}}")),
        body=_json(patch({"op": "replace", "path": "active", "value": False})),
    ),
    _write(
        "put",
        "PUT",
        "/scim/v2/Users/{{alice}}",
        200,
        user("alice@example.com", displayName="Alice"),
    ),
    Row(
        "invalid JSON",
        "POST",
        "/scim/v2/Users",
        400,
        headers=(_AUTH, _JSON),
        body=b'{"userName": ',
    ),
    Row(
        "wrong content type",
        "POST",
        "/scim/v2/Users",
        415,
        headers=(_AUTH, ("Content-Type", "text/plain")),
        body=b"userName=x",
    ),
    Row(
        "form-encoded",
        "POST",
        "/scim/v2/Users",
        415,
        headers=(_AUTH, ("Content-Type", "application/x-www-form-urlencoded")),
        body=b"userName=x",
    ),
    Row("oversized body", "POST", "/scim/v2/Users", 413, headers=(_AUTH, _JSON), body=_OVERSIZED),
    _write("no userName", "POST", "/scim/v2/Users", 400, {"schemas": user("x")["schemas"]}),
    Row("unknown id", "GET", "/scim/v2/Users/does-not-exist", 404),
    Row("UTF-8 id in the path", "GET", "/scim/v2/Users/ünïcødé-☃", 404),
    Row("get the UTF-8 user", "GET", "/scim/v2/Users/{{jurgen}}", 200),
    Row("delete", "DELETE", "/scim/v2/Users/{{jurgen}}", 204),
    Row("delete again", "DELETE", "/scim/v2/Users/{{jurgen}}", 404),
    # -- groups
    _write(
        "create group",
        "POST",
        "/scim/v2/Groups",
        201,
        {"schemas": [GROUP], "displayName": "Engineering", "members": [{"value": "{{alice}}"}]},
        capture="eng",
    ),
    _write(
        "duplicate group",
        "POST",
        "/scim/v2/Groups",
        409,
        {"schemas": [GROUP], "displayName": "Engineering"},
    ),
    Row("get group", "GET", "/scim/v2/Groups/{{eng}}", 200),
    Row(
        "filter groups",
        "GET",
        "/scim/v2/Groups",
        200,
        query=(("filter", 'displayName eq "Engineering"'), ("excludedAttributes", "members")),
    ),
    _write(
        "patch group",
        "PATCH",
        "/scim/v2/Groups/{{eng}}",
        204,
        patch({"op": "remove", "path": 'members[value eq "{{alice}}"]'}),
    ),
    _write(
        "put group",
        "PUT",
        "/scim/v2/Groups/{{eng}}",
        200,
        {"schemas": [GROUP], "displayName": "Engineers", "members": [{"value": "{{alice}}"}]},
    ),
    Row("delete group", "DELETE", "/scim/v2/Groups/{{eng}}", 204),
    Row("deleted group", "GET", "/scim/v2/Groups/{{eng}}", 404),
    # -- methods and paths the core refuses
    Row("HEAD", "HEAD", "/scim/v2/Users", 405),
    Row("OPTIONS", "OPTIONS", "/scim/v2/Users", 405),
    Row("DELETE on a collection", "DELETE", "/scim/v2/Users", 405),
    Row("bulk", "POST", "/scim/v2/Bulk", 501, headers=(_AUTH, _JSON), body=b"{}"),
    Row("the base URL itself", "GET", "/scim/v2", 404),
    Row("the base URL with a slash", "GET", "/scim/v2/", 404),
    Row("unknown endpoint", "GET", "/scim/v2/Nope", 404),
    # -- the request value each adapter builds, as a handler sees it
    Row(
        "echo: path below the prefix, repeated and blank query keys",
        "GET",
        "/echo/a/b",
        200,
        query=(("x", "1"), ("X", "2"), ("x", "3"), ("y", ""), ("é", "ü &=")),
        headers=(("X-Tenant-Hint", "Acme"), ("Accept", "text/html")),
    ),
    Row("echo: the prefix itself", "GET", "/echo", 200, headers=()),
    Row(
        "echo: a UTF-8 path",
        "PUT",
        "/echo/ü/☃ x",
        200,
        headers=(("Content-Type", "text/plain; charset=utf-8"),),
        body="ü".encode(),
    ),
    Row(
        "echo: a form, as a SAML ACS gets it",
        "POST",
        "/echo/acme/acs",
        200,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"SAMLResponse=PHNhbWw%2B&RelayState=%2Fhome%3Fa%3D1",
    ),
    Row(
        "echo: over its own cap",
        "POST",
        "/echo",
        413,
        headers=(("Content-Type", "text/plain"),),
        body=b"x" * (ECHO_MAX_BODY + 1),
    ),
    # -- SAML: SP metadata, the start of a sign-in, the ACS
    Row("saml: SP metadata", "GET", "/saml/acme/metadata", 200),
    Row("saml: SP metadata, HEAD", "HEAD", "/saml/acme/metadata", 200),
    Row("saml: SP metadata of an unknown workspace", "GET", "/saml/nobody/metadata", 404),
    Row("saml: metadata takes no POST", "POST", "/saml/acme/metadata", 405),
    Row(
        "saml: start a sign-in, redirect to the IdP",
        "GET",
        "/saml/acme/login",
        302,
        query=(("RelayState", "/projects/7"),),
    ),
    Row("saml: sign-in of a workspace without SSO", "GET", "/saml/globex/login", 404),
    Row("saml: the ACS takes only POST", "GET", "/saml/acme/acs", 405),
    Row(
        "saml: ACS without a SAMLResponse",
        "POST",
        "/saml/acme/acs",
        400,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"RelayState=%2F",
    ),
    Row(
        "saml: ACS with a SAMLResponse that is not base64",
        "POST",
        "/saml/acme/acs",
        400,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"SAMLResponse=%25%25%25",
    ),
    Row(
        "saml: start a sign-in with a RelayState of any bytes",
        "GET",
        "/saml/acme/login",
        302,
        query=(("RelayState", '/€ "<x>\u2028'),),
    ),
    Row(
        "saml: a signed sign-in, on to finish",
        "POST",
        "/saml/acme/acs",
        303,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"{{saml_form}}",
        capture="code_idp",
    ),
    Row(
        "saml: the same response again (a replay)",
        "POST",
        "/saml/acme/acs",
        403,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"{{saml_form}}",
    ),
    Row(
        "saml: finish an IdP-initiated sign-in, to its RelayState",
        "GET",
        "/saml/acme/finish",
        303,
        query=(("code", "{{code_idp}}"),),
        headers=(),
    ),
    Row(
        "saml: finish with a used code",
        "GET",
        "/saml/acme/finish",
        400,
        query=(("code", "{{code_idp}}"),),
        headers=(),
    ),
    Row("saml: finish without a code", "GET", "/saml/acme/finish", 400, headers=()),
    Row("saml: finish takes only GET", "POST", "/saml/acme/finish", 405, headers=()),
    Row(
        "saml: a RelayState of /€, on to finish",
        "POST",
        "/saml/acme/acs",
        303,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"{{saml_euro_form}}",
        capture="code_euro",
    ),
    Row(
        "saml: finish to a percent-encoded RelayState",
        "GET",
        "/saml/acme/finish",
        303,
        query=(("code", "{{code_euro}}"),),
        headers=(),
    ),
    Row(
        "saml: an SP-initiated sign-in, on to finish",
        "POST",
        "/saml/acme/acs",
        303,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"{{saml_sp_form}}",
        capture="code_sp",
    ),
    Row(
        "saml: finish in a browser that did not start it (login CSRF)",
        "GET",
        "/saml/acme/finish",
        403,
        query=(("code", "{{code_sp}}"),),
        headers=(),
    ),
    Row(
        "saml: another SP-initiated sign-in, on to finish",
        "POST",
        "/saml/acme/acs",
        303,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"{{saml_sp_form_2}}",
        capture="code_sp_2",
    ),
    Row(
        "saml: finish in the browser that started it",
        "GET",
        "/saml/acme/finish",
        303,
        query=(("code", "{{code_sp_2}}"),),
        headers=(("Cookie", "{{saml_cookie_2}}"),),
    ),
    Row(
        "saml: ACS with more than 10 form fields",
        "POST",
        "/saml/acme/acs",
        400,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"&".join(b"f%d=x" % i for i in range(11)) + b"&{{saml_form}}",
    ),
    Row(
        "saml: ACS with two SAMLResponse fields",
        "POST",
        "/saml/acme/acs",
        400,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"SAMLResponse=PHg%2B&SAMLResponse=PHk%2B",
    ),
    Row(
        "saml: ACS with a form that is not UTF-8",
        "POST",
        "/saml/acme/acs",
        400,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"SAMLResponse=PHg%2B&RelayState=%2F%FF",
    ),
    Row(
        "saml: ACS over its cap",
        "POST",
        "/saml/acme/acs",
        413,
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"SAMLResponse=" + b"A" * SAML_MAX_BODY,
    ),
    Row("saml: no endpoint", "GET", "/saml/acme", 404),
    # -- outside every prefix: the adapter's 404, or the host app's
    Row("outside", "GET", "/dashboard", 404),
    Row("a longer segment than the prefix", "GET", "/scim/v2x/Users", 404),
    Row("a parent of the prefix", "GET", "/scim", 404),
)


# -- what the requests are sent to -------------------------------------------


#: The IdP of the SAML rows: made once, so that every target gets the same signed bytes.
TABLE_IDP = TestIdp(entity_id="https://idp.test/metadata", sso_url="https://idp.test/sso")


@contextmanager
def fresh_identity(directory: Path) -> Iterator[tuple[PbIdentity, dict[str, str]]]:
    """The front door on a new database in ``directory``, and the table's first values.

    Everything the adapters serve comes from it: SCIM, SAML and the rows'
    seed data (tenants, a token, a member) through its admin and members.
    """
    directory.mkdir(parents=True, exist_ok=True)
    counter = itertools.count(1)

    def new_id() -> str:
        return f"00000000-0000-4000-8000-{next(counter):012d}"

    secrets = itertools.count(1)
    # Fixed ids and secrets: the signed sign-in request ids cover the tenant's.
    identity = PbIdentity(
        f"sqlite:///{directory / 'pbidentity.db'}",
        scim=ScimConfig(max_body_bytes=MAX_BODY),
        saml=SamlConfig(
            public_url=f"https://{HOST}",
            max_body_bytes=SAML_MAX_BODY,
            secret_key="the request table's secret",
        ),
        on_result=_host_app_result,
        clock=lambda: CLOCK,
        new_id=new_id,
        new_secret=lambda: f"secret{next(secrets):040d}",
    )
    storage, admin, saml = identity.storage, identity.admin, identity.saml
    admin.create_tenant("acme", "Acme")
    admin.set_scim_enabled("acme", True)
    token = admin.create_token("acme", "okta").secret
    admin.create_tenant("globex", "Globex")
    identity.members.add("acme", "jane@acme.test")
    acme = admin.get_tenant("acme")
    with storage.transaction() as tx:
        tx.add_saml_connection(
            SamlConnection(
                id="saml-1",
                tenant_id=acme.id,
                state="active",
                idp=TABLE_IDP.identity_provider(sso_binding="redirect"),
                allow_idp_initiated=True,
                created=CLOCK,
                activated=CLOCK,
            )
        )
    response = TABLE_IDP.response(
        sp=saml.service_provider("acme"),
        name_id="jane@acme.test",
        now=CLOCK,
        assertion_id="assertion-1",
        response_id="response-1",
    )
    values = {
        "token": token,
        "saml_form": urlencode({"SAMLResponse": response, "RelayState": "/projects/7"}),
        "saml_euro_form": _idp_form(saml, "/€", "euro", None),
    }
    started = [saml.begin_sign_in("acme") for _ in range(2)]
    for suffix, redirect in zip(("", "_2"), started, strict=True):
        values[f"saml_sp_form{suffix}"] = _idp_form(saml, "/", f"sp{suffix}", redirect.request_id)
        values[f"saml_cookie{suffix}"] = (redirect.cookie or "").split(";")[0]
    with identity:
        yield identity, values


def table_router(identity: PbIdentity) -> Router:
    """What every adapter serves: the identity's SCIM and SAML, and the echo handler."""
    return identity.router(mounts={ECHO: Echo()})


def _idp_form(saml: SamlService, relay_state: str, name: str, answering: str | None) -> str:
    """A signed sign-in form of jane's (ids named after ``name``), answering a request or none."""
    response = TABLE_IDP.response(
        sp=saml.service_provider("acme"),
        name_id="jane@acme.test",
        now=CLOCK,
        in_response_to=answering,
        assertion_id=f"assertion-{name}",
        response_id=f"response-{name}",
    )
    return urlencode({"SAMLResponse": response, "RelayState": relay_state})


def _host_app_result(_request: Request, outcome: SignInOutcome) -> Response:
    """What a host app does: a session (left out here) and a 303 to the RelayState."""
    if isinstance(outcome, SignInFailure):
        return default_result_page(outcome)
    return Response(status=303, headers=(("Location", outcome.relay_state or "/"),))


class Echo:
    """A handler that answers with the request value it was given, to compare what adapters build.

    ``content-length`` is left out (whether a client sends ``0`` differs),
    and so is ``content-type`` without a body: wsgiref invents
    ``text/plain`` for requests that have none. Over its cap it answers 413,
    as the core does.
    """

    max_body_bytes = ECHO_MAX_BODY

    def handle(self, request: Request) -> Response:
        """The request as JSON."""
        if request.body_truncated or len(request.body) > self.max_body_bytes:
            return Response(status=413, headers=(("Content-Type", "text/plain"),), body=b"big\n")
        document = {
            "method": request.method,
            "path": request.path,
            "base_url": request.base_url,
            "query": request.query,
            "headers": sorted(
                (name, value)
                for name, value in request.headers
                if name != "content-length" and (request.body or name != "content-type")
            ),
            "body": request.body.decode("latin-1"),
        }
        return Response(
            status=200,
            headers=(("Content-Type", "application/json"), ("Cache-Control", "no-store")),
            body=orjson.dumps(document),
        )


@attrs.define
class Recorder:
    """A handler that keeps the requests it gets; optionally slow, like a core waiting on I/O."""

    max_body_bytes: int
    delay: float = 0.0
    requests: list[Request] = attrs.field(factory=list)

    def handle(self, request: Request) -> Response:
        """Record, wait, answer 200."""
        self.requests.append(request)
        time.sleep(self.delay)
        return Response(status=200, headers=(("Content-Type", "text/plain"),), body=b"ok")


def _fill(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


@attrs.frozen
class Sent:
    """A row with its placeholders filled in."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def of(cls, row: Row, values: Mapping[str, str]) -> Sent:
        """The request of ``row`` with the values captured so far."""
        return cls(
            method=row.method,
            path=_fill(row.path, values),
            query=tuple((key, _fill(value, values)) for key, value in row.query),
            headers=(("Host", HOST), *((key, _fill(value, values)) for key, value in row.headers)),
            body=_fill(row.body.decode(), values).encode(),
        )


def capture(row: Row, answer: Answer, values: dict[str, str]) -> None:
    """Remember the id and ETag of a created resource (or the code of a 303) for the later rows."""
    if row.capture is None:
        return
    assert answer.status == row.status, (row.name, answer.status, answer.body)
    if answer.status == 303:
        query = urlsplit(answer.header("location") or "").query
        values[row.capture] = dict(parse_qsl(query))["code"]
        return
    values[row.capture] = orjson.loads(answer.body)["id"]
    values[f"{row.capture}_etag"] = answer.header("etag") or ""


def core_answer(router: Router, sent: Sent) -> Answer:
    """The core's own answer, with no adapter: the router finds the handler."""
    found = router.route(sent.path)
    if found is None:
        return _answer(Router.not_found)
    mount, path = found
    headers = sent.headers
    if sent.body:
        headers = (*headers, ("Content-Length", str(len(sent.body))))
    request = Request(
        method=sent.method,
        path=path,
        base_url=f"http://{HOST}{mount.prefix}",
        query=sent.query,
        headers=headers,
        body=sent.body,
    )
    return _answer(mount.handler.handle(request))


def _answer(response: Response) -> Answer:
    headers = tuple((name.lower(), value) for name, value in response.headers)
    return Answer(response.status, headers, response.body)


def http_answer(port: int, sent: Sent) -> Answer:
    """Send a request over a new HTTP connection to 127.0.0.1:``port``."""
    target = quote(sent.path, safe="/:@!$&'()*+,;=-._~")
    if sent.query:
        target += "?" + urlencode(sent.query)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(sent.method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in sent.headers:
            connection.putheader(name, value)
        if sent.body:
            connection.putheader("Content-Length", str(len(sent.body)))
        connection.endheaders(sent.body or None)
        response = connection.getresponse()
        body = response.read()
        headers = tuple((name.lower(), value) for name, value in response.getheaders())
        return Answer(response.status, headers, body)
    finally:
        connection.close()


def differences(row: Row, sent: Sent, expected: Answer, got: Answer, *, outside: bool) -> list[str]:
    """How an adapter's answer differs from the core's: empty if it does not.

    Outside every prefix only the status is compared when the host
    framework (not pbidentity) answered.
    """
    found: list[str] = []
    if got.status != expected.status:
        found.append(f"status {got.status} != {expected.status}")
    if outside:
        return found
    for name in COMPARED_HEADERS:
        if got.header(name) != expected.header(name):
            found.append(f"{name}: {got.header(name)!r} != {expected.header(name)!r}")
    # A HEAD answer carries the length of the body it does not send.
    body = b"" if sent.method == "HEAD" else expected.body
    if got.body != body:
        found.append(f"body {got.body[:200]!r} != {body[:200]!r}")
    length = got.header("content-length")
    if length is not None and int(length) != len(expected.body):
        found.append(f"content-length {length} != {len(expected.body)}")
    if length is None and expected.status not in (204, 304) and sent.method != "HEAD":
        found.append("no content-length")
    return [f"{row.name}: {difference}" for difference in found]


# -- real servers in threads ---------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@contextmanager
def wsgiref_server(app: Any) -> Iterator[int]:
    """Serve a WSGI app with the standard library's server; yields the port."""
    server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def werkzeug_server(app: Any) -> Iterator[int]:
    """Serve a WSGI app (Flask) with Werkzeug's development server; yields the port."""
    from werkzeug.serving import make_server as make_werkzeug_server

    server = make_werkzeug_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def uvicorn_server(app: Any, **options: Any) -> Iterator[int]:
    """Serve an ASGI app with uvicorn in a thread; yields the port."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
