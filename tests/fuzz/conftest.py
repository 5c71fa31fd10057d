"""The fuzzer's world: one seeded database, SCIM and SAML behind a router, a real WSGI server.

Every example starts from the same seeded state: tenants ``acme`` and
``globex`` with SCIM on, ``initech`` with SCIM off, a revoked token, users,
groups, an active SAML connection (acme), a pending one (globex), AuthnRequests
waiting for their responses and signed responses made by the test IdPs. After
an example that changed anything, every table is put back as it was, so each
example is independent and a failure shrinks to the request that causes it.

The checks every answer must pass are in :func:`check`: never a 5xx (a SCIM
``501`` for an endpoint pbidentity does not implement excepted), no traceback
or exception name in the body, a SCIM Error body for a SCIM 4xx, nothing
stored changed when the answer is a 4xx (a refused sign-in's bookkeeping
excepted, see :func:`_saml_bookkeeping`), and the answer within
:data:`TIME_BOUND` seconds, the best of three tries.

Profiles (the ``PBIDENTITY_FUZZ`` environment variable):

- ``ci`` (the default): :data:`CI_EXAMPLES` examples per property, the same
  ones on every run (derandomised, no example database), SQLite only, and the
  time bound multiplied by :data:`CI_TIME_FACTOR`, because a shared CI machine
  pauses processes for longer than a request takes.
- ``long`` (``nox -s fuzz``): ``PBIDENTITY_FUZZ_EXAMPLES`` (default 5,000)
  random examples per property, with Hypothesis' example database, the strict
  bound, on SQLite and PostgreSQL.

``PBIDENTITY_FUZZ_TIME_FACTOR`` overrides the factor of either profile,
``PBIDENTITY_FUZZ_BACKENDS`` (``sqlite,postgresql``) the databases, and
``PBIDENTITY_FUZZ_NO_SHRINK=1`` reports the first failing example as found
(quicker when a failure is slow to shrink, such as a time-bound one).
"""

from __future__ import annotations

import base64
import http.client
import itertools
import os
import re
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode

import attrs
import orjson
import pytest
import sqlalchemy
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import settings

from pbidentity.admin import Admin
from pbidentity.domain import SamlConnection
from pbidentity.http import Handler
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.http import Router
from pbidentity.members import Members
from pbidentity.saml import SamlConfig
from pbidentity.saml import SamlService
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimService
from pbidentity.storage import open_storage
from pbidentity.storage.sql import SqlStorage
from pbidentity.storage.sql import metadata
from pbidentity.wsgi import WsgiApp
from tests.adapters.request_table import wsgiref_server
from tests.conftest import wipe_database
from tests.saml.idp import TestIdp
from tests.scim.helpers import ENTERPRISE
from tests.scim.helpers import GROUP
from tests.scim.helpers import patch
from tests.scim.helpers import user
from tests.unit.test_filter_properties import ROLE_URN

PROFILE = os.environ.get("PBIDENTITY_FUZZ", "ci")
if PROFILE not in ("ci", "long"):
    raise pytest.UsageError(f"PBIDENTITY_FUZZ must be 'ci' or 'long', not {PROFILE!r}")
LONG = PROFILE == "long"

#: Examples per property in CI: enough to cover every strategy branch, fast enough for every push.
CI_EXAMPLES = 200
LONG_EXAMPLES = int(os.environ.get("PBIDENTITY_FUZZ_EXAMPLES", "5000"))
#: The longest a request may take with the default limits, in seconds.
TIME_BOUND = 0.250
#: CI machines are shared: a process can be paused for longer than a request
#: takes. The bound there is four times the real one, still far below what an
#: unbounded parse or query costs (seconds); ``nox -s fuzz`` holds the real one.
CI_TIME_FACTOR = 4.0
TIME_FACTOR = float(os.environ.get("PBIDENTITY_FUZZ_TIME_FACTOR", "1" if LONG else CI_TIME_FACTOR))
BACKENDS = os.environ.get("PBIDENTITY_FUZZ_BACKENDS", "sqlite,postgresql" if LONG else "sqlite")

#: The Hypothesis settings of every fuzz property (a settings object is a decorator).
fuzz_settings = (
    settings(max_examples=LONG_EXAMPLES, deadline=None)
    if LONG
    else settings(max_examples=CI_EXAMPLES, deadline=None, derandomize=True, database=None)
)
# Signed SAML responses and grammar-built filters are large draws: Hypothesis
# would otherwise stop a long run because generating them is "too slow".
fuzz_settings = settings(fuzz_settings, suppress_health_check=[HealthCheck.too_slow])
if os.environ.get("PBIDENTITY_FUZZ_NO_SHRINK"):  # see the module docstring
    fuzz_settings = settings(fuzz_settings, phases=[Phase.explicit, Phase.generate])

HOST = "app.example"
PUBLIC_URL = f"https://{HOST}"
SCIM = "/scim/v2"
SAML = "/saml"
CLOCK = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
#: The SCIM body cap the fuzzer runs with: the default (1 MiB) would make
#: every oversized example a megabyte; the checks are the same at any cap.
SCIM_MAX_BODY = 64 * 1024
SAML_MAX_BODY = 64 * 1024

ACME_IDP = TestIdp(entity_id="https://idp.acme.test/metadata", sso_url="https://idp.acme.test/sso")
GLOBEX_IDP = TestIdp(
    entity_id="https://idp.globex.test/metadata", sso_url="https://idp.globex.test/sso"
)
#: An IdP nobody trusts: its responses are well signed, by the wrong key.
STRANGER_IDP = TestIdp(entity_id="https://idp.acme.test/metadata", sso_url="https://x.test/sso")

Rows = dict[str, list[dict[str, Any]]]


#: The seeded ids, tokens and signed responses the strategies name.
ID_NAMES = ("alice", "bob", "carol", "dave", "eng", "design", "sales")
TOKEN_NAMES = ("acme", "globex", "initech", "revoked")
SAML_RESPONSES = (
    "alice",
    "jane",
    "bob",
    "nobody",
    "answer",
    "authorize",
    "expired",
    "stranger",
    "unsigned",
    "elsewhere",
)
_PLACEHOLDER = re.compile(r"\{\{(?:token:)?(\w+)\}\}")
_PLACEHOLDER_BYTES = re.compile(rb"\{\{(?:token:)?(\w+)\}\}")


def _flip(xml: bytes, where: int, bit: int) -> bytes:
    index = where % len(xml)
    return xml[:index] + bytes([xml[index] ^ (1 << bit)]) + xml[index + 1 :]


_SIGNATURE = re.compile(rb"<ds:Signature.*?</ds:Signature>", re.DOTALL)
#: What an attacker or a broken proxy does to a signed response.
MUTATIONS: dict[str, Callable[[bytes, int, int], bytes]] = {
    "as signed": lambda xml, _w, _b: xml,
    "a bit flipped": _flip,
    "signature dropped": lambda xml, _w, _b: _SIGNATURE.sub(b"", xml),
    "truncated": lambda xml, w, _b: xml[: w % len(xml)],
    "doctype": lambda xml, _w, _b: xml.replace(b"?>", b'?><!DOCTYPE r [<!ENTITY e "x">]>', 1),
    "name changed": lambda xml, _w, _b: xml.replace(b"alice@", b"carol@"),
    "assertion doubled": lambda xml, _w, _b: re.sub(
        rb"(<saml:Assertion.*</saml:Assertion>)", rb"\1\1", xml, flags=re.DOTALL
    ),
}


@attrs.frozen
class Signed:
    """One of the world's signed responses (by name), mutated, as a SAMLResponse value."""

    name: str
    mutation: str
    where: int
    bit: int


@attrs.frozen
class Form:
    """An HTML form body, encoded when sent; values may be signed responses."""

    pairs: tuple[tuple[str, str | Signed], ...]
    encoding: str = "utf-8"


@attrs.frozen
class Padded:
    """A large body, kept small until sent (so that a failing example prints short)."""

    head: bytes
    size: int
    tail: bytes = b""

    def bytes(self) -> bytes:
        """The body: ``head``, then ``size`` times ``x``, then ``tail``."""
        return self.head + b"x" * self.size + self.tail


@attrs.frozen
class Sent:
    """One fuzzed request, from the server root (the path is not percent-encoded)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | Form | Padded = b""

    def text(self) -> str:
        """Everything the request says, to tell an echo of it from a leak."""
        body = self.body if isinstance(self.body, bytes) else b""
        return " ".join(
            [
                self.method,
                self.path,
                *(f"{k}={v}" for k, v in self.query),
                *(f"{k}: {v}" for k, v in self.headers),
                body.decode("utf-8", "replace"),
            ]
        )


@attrs.frozen
class Answer:
    """What came back, and how long it took."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    seconds: float

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class World:
    """The seeded services, how to reach them, and the state every example starts from.

    A plain class, not attrs: Hypothesis prints attrs values field by field,
    and a failing example would print every seeded row.
    """

    def __init__(
        self,
        *,
        storage: SqlStorage,
        router: Router,
        port: int,
        tokens: Mapping[str, str],
        ids: Mapping[str, str],
        responses: Mapping[str, str],
    ) -> None:
        self.storage = storage
        self.router = router
        self.port = port
        #: API tokens by who holds them: acme, globex, initech (SCIM off), revoked.
        self.tokens = tokens
        #: Seeded resource ids by name (:data:`ID_NAMES`).
        self.ids = ids
        #: Base64 SAMLResponse values by name (:data:`SAML_RESPONSES`).
        self.responses = responses
        self.seed = _rows(storage.engine)
        self.seed_print = fingerprint(storage.engine)
        self.dirty = False

    def __repr__(self) -> str:
        # Hypothesis prints the fixtures of a failing example: keep it one line.
        return f"World({self.storage.engine.url.get_backend_name()}, port {self.port})"

    def fill(self, sent: Sent) -> Sent:
        """The request with the world's ids, tokens and signed responses in place of their names."""

        def text(value: str) -> str:
            return _PLACEHOLDER.sub(lambda m: self.values.get(m.group(1), m.group()), value)

        def signed(value: str | Signed) -> str:
            if isinstance(value, str):
                return value
            xml = base64.b64decode(self.responses[value.name])
            return base64.b64encode(MUTATIONS[value.mutation](xml, value.where, value.bit)).decode()

        if isinstance(sent.body, Padded):
            body = sent.body.bytes()
        elif isinstance(sent.body, Form):
            pairs = [(name, signed(value)) for name, value in sent.body.pairs]
            body = urlencode(pairs, encoding=sent.body.encoding, errors="replace").encode()
        else:
            body = _PLACEHOLDER_BYTES.sub(
                lambda m: self.values.get(m.group(1).decode(), m.group().decode()).encode(),
                sent.body,
            )
        return Sent(
            method=sent.method,
            path=text(sent.path),
            query=tuple((k, text(v)) for k, v in sent.query),
            headers=tuple((k, text(v)) for k, v in sent.headers),
            body=body,
        )

    @property
    def values(self) -> dict[str, str]:
        """What the placeholders stand for: ids by name, and tokens by tenant."""
        return {**self.ids, **self.tokens}

    def send(self, sent: Sent, via: str) -> Answer:
        """Send a filled request through the core (``core``) or over HTTP to the WSGI adapter."""
        if self.dirty:
            restore(self.storage.engine, self.seed)
            self.dirty = False
        if via == "core":
            return core_answer(self.router, sent)
        return http_answer(self.port, sent)

    def changed(self) -> dict[str, tuple[set[str], set[str]]]:
        """What the last request changed: table -> (rows removed, rows added), as text."""
        now = dict(fingerprint(self.storage.engine))
        before = dict(self.seed_print)
        changes = {}
        for table, rows in before.items():
            old, new = set(rows), set(now[table])
            if old != new:
                changes[table] = (old - new, new - old)
        self.dirty = bool(changes)
        return changes


def _body(sent: Sent) -> bytes:
    assert isinstance(sent.body, bytes), "World.fill() makes the body bytes before sending"
    return sent.body


def core_answer(router: Router, sent: Sent) -> Answer:
    """The core's answer, with no adapter between (the router finds the handler)."""
    body = _body(sent)
    headers = (("Host", HOST), *sent.headers)
    if body:
        headers = (*headers, ("Content-Length", str(len(body))))
    request = Request(
        method=sent.method,
        path=sent.path,
        base_url=PUBLIC_URL,
        query=sent.query,
        headers=headers,
        body=body,
    )
    start = time.perf_counter()
    response: Response = router.handle(request)
    seconds = time.perf_counter() - start
    return Answer(response.status, response.headers, response.body, seconds)


def http_answer(port: int, sent: Sent) -> Answer:
    """Send a request over a new HTTP connection to the WSGI server."""
    body = _body(sent)
    target = quote(sent.path, safe="/")
    if sent.query:
        target += "?" + urlencode(sent.query)
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(sent.method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", HOST)
        for name, value in sent.headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        body = response.read()
        seconds = time.perf_counter() - start
        return Answer(response.status, tuple(response.getheaders()), body, seconds)
    finally:
        connection.close()


# -- state: every table, as it was ------------------------------------------------


def _rows(engine: sqlalchemy.Engine) -> Rows:
    rows: Rows = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            rows[table.name] = [dict(r._mapping) for r in connection.execute(table.select())]
    return rows


def fingerprint(engine: sqlalchemy.Engine) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every row of every pbidentity table, as sorted text: cheap, complete, comparable."""
    return tuple(
        (name, tuple(sorted(repr(sorted(row.items())) for row in rows)))
        for name, rows in _rows(engine).items()
    )


def restore(engine: sqlalchemy.Engine, seed: Rows) -> None:
    """Put every table back as ``seed`` has it (children emptied first, parents filled first)."""
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
        for table in metadata.sorted_tables:
            stored = [c.name for c in table.columns if c.computed is None]
            rows = [{name: row[name] for name in stored} for row in seed[table.name]]
            if rows:
                connection.execute(table.insert(), rows)


# -- the checks ---------------------------------------------------------------------

#: What only a leaked traceback or exception would put in a body.
_LEAKS = re.compile(
    r"Traceback|File \"|\b[A-Z]\w*(?:Error|Exception)\b|sqlalchemy|psycopg|sqlite3|"
    r"pydantic|orjson|lxml|xmlsec|onelogin|pbidentity\.|site-packages"
)


def _scim_error(answer: Answer) -> str | None:
    """Why a SCIM 4xx answer is not an RFC 7644 Error, or ``None`` if it is one."""
    if not (answer.header("content-type") or "").startswith("application/scim+json"):
        return f"content type {answer.header('content-type')!r}"
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(body, dict) or body.get("status") != str(answer.status):
        return f"status {body.get('status') if isinstance(body, dict) else body!r}"
    if not str(body.get("detail", "")).strip():
        return "no detail"
    return None


def _saml_bookkeeping(table: str, removed: set[str], added: set[str]) -> bool:
    """Whether a change is what a refused sign-in records on purpose.

    A response's AuthnRequest is used up even when the response fails (one
    response per request), an assertion is remembered once its signature
    checked out (a replay of a refused one stays refused), and a failed test
    sign-in is kept on the pending connection with an event for the admin.
    """
    if table == "saml_requests":
        return not added
    if table == "saml_outcomes":
        # A finish step refused in another browser still uses the outcome up.
        return not added
    if table == "saml_assertions":
        return not removed
    if table == "events":
        return not removed and all("'saml.activation_failed'" in row for row in added)
    if table == "saml_connections":
        return len(removed) == len(added) == 1 and all("'pending'" in r for r in removed | added)
    return False


def check(world: World, sent: Sent, answer: Answer, via: str) -> None:
    """The properties every answer has, whatever the request (sent ``via`` core or wsgi)."""
    where = f"{sent.method} {sent.path!r} -> {answer.status}: {answer.body[:300]!r}"
    scim_501 = answer.status == 501 and sent.path.startswith(SCIM + "/")
    assert answer.status < 500 or scim_501, where
    body = answer.body.decode("utf-8", "replace")
    echoed = sent.text()
    leaks = [m.group() for m in _LEAKS.finditer(body) if m.group() not in echoed]
    assert not leaks, f"{where}: {leaks}"
    changes = world.changed()
    if 400 <= answer.status < 500:
        saml = sent.path.startswith(SAML + "/")
        kept = {
            table: change
            for table, change in changes.items()
            if not (saml and _saml_bookkeeping(table, *change))
            # The provisioning activity records requests, refused ones too
            # (this one, and those buffered before it): added rows only.
            and not (table == "scim_activity" and not change[0])
        }
        assert not kept, f"{where}: a refused request changed {kept}"
    in_scim = sent.path == SCIM or sent.path.startswith(SCIM + "/")
    # Over HTTP a HEAD answer has no body, whatever the core wrote.
    bodiless = sent.method.upper() == "HEAD" and not answer.body
    if in_scim and answer.status >= 400 and not bodiless:
        problem = _scim_error(answer)
        assert problem is None, f"{where}: not a SCIM Error ({problem})"
    limit = TIME_BOUND * TIME_FACTOR
    seconds = answer.seconds
    for _ in range(2):
        if seconds <= limit:
            break
        # A machine that pauses the process makes one answer late, not three:
        # the same request from the same state is timed again, and the fastest counts.
        world.dirty = True
        retry = world.send(sent, via)
        world.changed()
        seconds = min(seconds, retry.seconds)
    assert seconds <= limit, f"{where}: took {seconds:.3f} s > {limit:.3f} s (best of three)"


# -- the world ------------------------------------------------------------------------


def _ids() -> Iterator[str]:
    for n in itertools.count(1):
        yield f"00000000-0000-4000-8000-{n:012d}"


def _saml_responses(saml: SamlService, seeded: Mapping[str, str]) -> dict[str, str]:
    """Signed responses to the seeded requests and connections, made once for the session."""
    acme, globex = saml.service_provider("acme"), saml.service_provider("globex")
    return {
        # IdP-initiated sign-in of a SCIM user of acme: 200, a sign-in.
        "alice": ACME_IDP.response(sp=acme, name_id="alice@acme.test", now=CLOCK),
        # An app-managed member: 200.
        "jane": ACME_IDP.response(sp=acme, name_id="jane@acme.test", now=CLOCK),
        # A deactivated member and a stranger: 403.
        "bob": ACME_IDP.response(sp=acme, name_id="bob@acme.test", now=CLOCK),
        "nobody": ACME_IDP.response(sp=acme, name_id="nobody@acme.test", now=CLOCK),
        # The answer to the seeded SP-initiated request: 200.
        "answer": ACME_IDP.response(
            sp=acme, name_id="alice@acme.test", in_response_to=seeded["request:acme"], now=CLOCK
        ),
        # The admin's test sign-in of globex's pending connection: 200, it activates.
        "authorize": GLOBEX_IDP.response(
            sp=globex,
            name_id="dave@globex.test",
            in_response_to=seeded["request:globex"],
            now=CLOCK,
        ),
        # Refused: expired, signed by the wrong key, unsigned, for another tenant.
        "expired": ACME_IDP.response(
            sp=acme, name_id="alice@acme.test", now=CLOCK - timedelta(hours=1)
        ),
        "stranger": STRANGER_IDP.response(sp=acme, name_id="alice@acme.test", now=CLOCK),
        "unsigned": ACME_IDP.response(
            sp=acme, name_id="alice@acme.test", now=CLOCK, sign_assertion=False
        ),
        "elsewhere": ACME_IDP.response(sp=globex, name_id="alice@acme.test", now=CLOCK),
    }


def _seed(
    storage: SqlStorage, scim: ScimService, saml: SamlService
) -> tuple[dict[str, str], dict[str, str]]:
    """Tenants, tokens, users, groups, SAML connections and requests; returns (tokens, ids)."""
    admin = Admin(storage, clock=scim.clock, new_id=scim.new_id)
    tokens: dict[str, str] = {}
    for slug in ("acme", "globex", "initech"):
        admin.create_tenant(slug, slug.title())
        tokens[slug] = admin.create_token(slug, "okta").secret
    admin.set_scim_enabled("acme", True)
    admin.set_scim_enabled("globex", True)
    tokens["revoked"] = admin.create_token("acme", "old").secret
    admin.revoke_token("acme", "old")

    def post(slug: str, path: str, body: Any) -> str:
        sent = Sent(
            "POST",
            f"{SCIM}{path}",
            headers=(
                ("Authorization", f"Bearer {tokens[slug]}"),
                ("Content-Type", "application/scim+json"),
            ),
            body=orjson.dumps(body),
        )
        answer = core_answer(Router({SCIM: scim}), sent)
        assert answer.status == 201, answer.body
        return str(orjson.loads(answer.body)["id"])

    ids = {
        "alice": post(
            "acme",
            "/Users",
            user(
                "alice@acme.test",
                externalId="00u-alice",
                **{ENTERPRISE: {"department": "R&D", "employeeNumber": "7"}},
                **{ROLE_URN: {"role": "maker"}},
            ),
        ),
        "bob": post("acme", "/Users", user("bob@acme.test", active=False)),
        "carol": post("acme", "/Users", user("carol.ß@acme.test", displayName="Carol ☃")),
        "dave": post("globex", "/Users", user("dave@globex.test")),
    }
    ids["eng"] = post(
        "acme",
        "/Groups",
        {"schemas": [GROUP], "displayName": "Engineering", "members": [{"value": ids["alice"]}]},
    )
    ids["design"] = post(
        "acme",
        "/Groups",
        {"schemas": [GROUP], "displayName": "Design", "members": [{"value": ids["carol"]}]},
    )
    ids["sales"] = post(
        "globex",
        "/Groups",
        {"schemas": [GROUP], "displayName": "Sales", "members": [{"value": ids["dave"]}]},
    )
    Members(storage, clock=scim.clock, new_id=scim.new_id).add(
        "acme", "jane@acme.test", email="jane@acme.test"
    )
    with storage.transaction() as tx:
        acme = tx.find_tenant("acme")
        globex = tx.find_tenant("globex")
        assert acme is not None
        assert globex is not None
        tx.add_saml_connection(
            SamlConnection(
                id="saml-acme",
                tenant_id=acme.id,
                state="active",
                idp=ACME_IDP.identity_provider(sso_binding="redirect"),
                allow_idp_initiated=True,
                created=CLOCK,
                activated=CLOCK,
            )
        )
        tx.add_saml_connection(
            SamlConnection(
                id="saml-globex",
                tenant_id=globex.id,
                state="pending",
                idp=GLOBEX_IDP.identity_provider(),
                created=CLOCK,
            )
        )
    # A member's sign-in request is signed, not stored; the admin's test
    # sign-in request is stored. Both are started as the app would.
    ids["request:acme"] = saml.begin_sign_in("acme", relay_state="/projects/7").request_id
    ids["request:globex"] = saml.begin_authorize("globex").request_id
    return tokens, ids


@pytest.fixture(scope="session", params=BACKENDS.split(","))
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The seeded world on a SQLite file (and, in the long profile, on PostgreSQL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'pbidentity.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sqlalchemy.create_engine(url)
        wipe_database(engine)
        engine.dispose()
    storage = open_storage(url)
    assert isinstance(storage, SqlStorage)
    ids = _ids()
    scim = ScimService(
        storage,
        ScimConfig(role_urn=ROLE_URN, max_body_bytes=SCIM_MAX_BODY),
        clock=lambda: CLOCK,
        new_id=lambda: next(ids),
    )
    requests = itertools.count(1)
    saml = SamlService(
        storage,
        SamlConfig(public_url=PUBLIC_URL, prefix=SAML, max_body_bytes=SAML_MAX_BODY),
        clock=lambda: CLOCK,
        new_id=lambda: next(ids),
        # Binding nonces and one-time codes, deterministic for the seed.
        new_secret=lambda: f"fuzz-secret-{next(requests):020d}",
    )
    tokens, seeded = _seed(storage, scim, saml)
    handlers: dict[str, Handler] = {SCIM: scim, SAML: saml}
    router = Router(handlers)
    responses = _saml_responses(saml, seeded)
    assert tuple(responses) == SAML_RESPONSES
    with wsgiref_server(WsgiApp(router)) as port:
        found = World(
            storage=storage,
            router=router,
            port=port,
            tokens=tokens,
            ids=seeded,
            responses=responses,
        )
        _warm_up(found)
        yield found
    storage.close()


def _warm_up(world: World) -> None:
    """Load what the first request of each kind loads once (schemas, models), outside the clock."""
    auth = ("Authorization", f"Bearer {world.tokens['acme']}")
    json = ("Content-Type", "application/scim+json")
    form = ("Content-Type", "application/x-www-form-urlencoded")
    alice = world.ids["alice"]
    for via in ("core", "wsgi"):
        for sent in (
            Sent("GET", f"{SCIM}/Users", (("filter", 'userName eq "x"'),), (auth,)),
            Sent("GET", f"{SCIM}/Schemas", headers=(auth,)),
            Sent(
                "PATCH",
                f"{SCIM}/Users/{alice}",
                headers=(auth, json),
                body=orjson.dumps(patch({"op": "replace", "path": "title", "value": "x"})),
            ),
            Sent("POST", f"{SCIM}/Users", headers=(auth, json), body=orjson.dumps(user("w@x.y"))),
            Sent("GET", f"{SAML}/acme/login"),
            Sent(
                "POST",
                f"{SAML}/acme/acs",
                headers=(form,),
                body=urlencode({"SAMLResponse": world.responses["alice"]}).encode(),
            ),
        ):
            world.send(sent, via)
            world.changed()
