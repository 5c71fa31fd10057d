"""Replay an Okta-like SCIM provisioning workload against pbidentity and scim2-server.

What is measured
----------------
The requests Okta sends when it provisions a directory of ``N`` users into an
app (Okta's published SCIM provisioning flow), one phase at a time, each timed on its
own with :func:`time.perf_counter`:

1. *lookup-then-POST*: ``GET /Users?filter=userName eq "<email>"`` (no match)
   then ``POST /Users``, for every user: how Okta pushes a new user.
2. *filter lookup*: the same ``userName eq`` lookup for users that exist.
3. *GET by id*: read each user, as Okta does before a profile update.
4. *PUT profile update*: the user just read, with a new ``givenName``, sent back
   whole (custom-app Okta integrations).
5. *PATCH deactivate*: path-less ``replace`` of ``{"active": false}`` (catalogue
   apps).
6. *groups*: ``N/100`` ``POST /Groups`` with ``members: []``, then one
   ``PATCH add members`` per user.
7. *paged listing*: ``GET /Users?startIndex=k&count=100`` until every user is
   read, as an Okta import does. It is also timed when only ``N/5`` users
   exist (inside phase 1, outside its timing), so that the cost per listed user
   at ``N/5`` and ``N`` shows whether listing is linear in ``N``.
8. *groups pushed in bulk*: ``N/100`` more groups, each ``POST /Groups`` with
   ``members: []`` then one ``PATCH add members`` naming 100 users at once, as
   Okta's Group Push sends a pushed group's existing members. On pbidentity
   every pushed group is mapped to a role by the tenant's policy, so each
   added member gets its role decided again (and a ``member.role_changed``
   event): the costliest shape of a group push.

The same payloads, in the same order, go to both servers: pbidentity on a
durable SQLite file in a fresh temporary directory, and scim2-server's
in-memory WSGI application built the way its own test server builds it. Every
response status is checked, and the JSON bodies are parsed and spot-checked:
a benchmark that silently measures error responses is worthless, so the first
unexpected answer stops the run with its body.

The two servers take turns phase by phase (scim2-server's phase 1, then
pbidentity's, then scim2-server's phase 2...), so that on a machine others
share, whose load drifts over minutes, both sides of a ratio are measured
under about the same load.

Why in-process
--------------
Both applications are called through the same minimal WSGI driver (a PEP 3333
environ dict, a ``start_response`` that records the status, the body joined),
with no socket, HTTP parser or thread pool. Transport costs are therefore
equal and close to zero, and the numbers compare what the two SCIM
implementations themselves do per request: parsing, validation, storage and
serialisation. Real deployments add their server's overhead on top of both.

The process exits with status 0 whatever the ratios are; a line per phase says
whether pbidentity reached the target of 3 times scim2-server's throughput.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode

import conditions
from scim2_models import ScimProvider
from scim2_server.applications.base import VERSION_PREFIX
from scim2_server.applications.wsgi import WSGIApplication
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.utils import load_default_resource_types
from scim2_server.utils import load_default_schemas
from scim2_server.utils import load_default_service_provider_config

from pbidentity import PbIdentity
from pbidentity.policy import TenantPolicy
from pbidentity.roles import GroupMapping
from pbidentity.roles import RolePolicy
from pbidentity.storage import open_storage
from pbidentity.wsgi import DEFAULT_PREFIX
from pbidentity.wsgi import make_app

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
TARGET_RATIO = 3.0
PAGE_SIZE = 100
USERS_PER_GROUP = 100
SEED = 20240611
WARM_UP_REQUESTS = 20
OKTA_PLACEHOLDER = "Placeholder-Passw0rd!"  # not a secret: Okta sends one on every POST

PBIDENTITY = "pbidentity"
SCIM2_SERVER = "scim2-server"
SERVERS = (PBIDENTITY, SCIM2_SERVER)

# A WSGI application, typed loosely on purpose: scim2-server ships no stubs.
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Json = dict[str, Any]


class BenchmarkError(Exception):
    """A server answered something the workload did not expect."""


# --------------------------------------------------------------------------- driver


@dataclass
class Driver:
    """Call a WSGI application in-process, as a SCIM client would over HTTP."""

    app: WsgiApp
    prefix: str
    token: str
    requests: int = 0

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        expect: Iterable[int] = (200,),
    ) -> Json | None:
        """Send one request; return the parsed JSON body (``None`` if empty).

        Raises :class:`BenchmarkError` with the response body if the status is
        not one of ``expect``.
        """
        payload = b"" if body is None else json.dumps(body).encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": self.prefix + path,
            # Okta sends spaces in filters as %20, which quote() produces.
            "QUERY_STRING": urlencode(query, quote_via=quote),
            "CONTENT_LENGTH": str(len(payload)) if payload else "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "localhost",
            "HTTP_AUTHORIZATION": f"Bearer {self.token}",
            "HTTP_ACCEPT": "application/scim+json",
            "HTTP_USER_AGENT": "Okta SCIM Client 1.0.0",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(payload),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if payload:
            environ["CONTENT_TYPE"] = "application/scim+json; charset=utf-8"
        status_line: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[..., Any]:
            status_line.append(status)
            return lambda _data: None

        result = self.app(environ, start_response)
        try:
            raw = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        self.requests += 1
        status = int(status_line[-1].split(" ", 1)[0]) if status_line else 0
        expected = tuple(expect)
        if status not in expected:
            raise BenchmarkError(
                f"{method} {path}?{environ['QUERY_STRING']} answered {status}, "
                f"expected {' or '.join(map(str, expected))}\n"
                f"request body: {payload.decode()[:2000]}\n"
                f"response body: {raw.decode(errors='replace')[:4000]}"
            )
        if not raw:
            return None
        parsed: Json = json.loads(raw)
        return parsed

    def get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Json:
        """A GET that must answer 200 with a JSON body."""
        return _body(self.call("GET", path, query=query), f"GET {path}")


def _body(value: Json | None, what: str) -> Json:
    if value is None:
        raise BenchmarkError(f"{what} answered with an empty body")
    return value


def _check(condition: bool, message: str, body: Any) -> None:
    if not condition:
        raise BenchmarkError(f"{message}\nresponse body: {json.dumps(body)[:4000]}")


# --------------------------------------------------------------------------- servers


def make_scim2_server() -> Driver:
    """scim2-server's in-memory WSGI application, as its test server builds it."""
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=load_default_service_provider_config(),
    )
    app = WSGIApplication(
        InMemoryStorage(), provider, service=ScimService(provider, secret="x" * 32)
    )
    # Without bearer tokens it accepts every request; the header is sent anyway.
    return Driver(app=app, prefix=str(VERSION_PREFIX), token="x" * 32)


def pushed_group_name(g: int) -> str:
    """The displayName of the ``g``-th group of phase 8."""
    return f"push-{g:04d}"


def make_pbidentity(directory: Path, users: int) -> Driver:
    """Serve pbidentity from a fresh SQLite file, with one tenant, SCIM on and an API token.

    The tenant's policy maps every group phase 8 pushes to a role, so that
    the push re-decides the role of each member it adds.
    """
    identity = PbIdentity(f"sqlite:///{directory / 'bench.db'}")
    admin = identity.admin
    admin.create_tenant("bench")
    admin.set_scim_enabled("bench", True)
    pushed = max(1, math.ceil(users / USERS_PER_GROUP))
    mappings = [
        GroupMapping(role="maker", group_name=pushed_group_name(g), priority=g % 3)
        for g in range(pushed)
    ]
    admin.set_policy("bench", TenantPolicy(roles=RolePolicy(mappings=tuple(mappings))))
    secret = admin.create_token("bench", "okta").secret
    return Driver(app=make_app(identity), prefix=DEFAULT_PREFIX, token=secret)


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Person:
    """One user of the simulated Okta directory."""

    external_id: str
    email: str
    given_name: str
    family_name: str


def make_people(n: int) -> list[Person]:
    """``n`` deterministic users, with Okta-shaped ids (``00u`` plus 17 characters)."""
    rng = random.Random(SEED)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    people = []
    for i in range(n):
        given = rng.choice(("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances"))
        family = rng.choice(("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Allen"))
        people.append(
            Person(
                external_id="00u" + "".join(rng.choice(alphabet) for _ in range(17)),
                email=f"{given.lower()}.{family.lower()}.{i:06d}@example.com",
                given_name=given,
                family_name=family,
            )
        )
    return people


def okta_user(person: Person, *, with_password: bool) -> Json:
    """The body of Okta's ``POST /Users``."""
    body: Json = {
        "schemas": [USER_SCHEMA],
        "userName": person.email,
        "name": {"givenName": person.given_name, "familyName": person.family_name},
        "emails": [{"primary": True, "value": person.email, "type": "work"}],
        "displayName": f"{person.given_name} {person.family_name}",
        "locale": "en-US",
        "externalId": person.external_id,
        "groups": [],
        "active": True,
    }
    if with_password:
        # Okta sends a placeholder password even without password sync.
        body["password"] = OKTA_PLACEHOLDER
    return body


def user_filter(email: str) -> list[tuple[str, str]]:
    """The query of Okta's lookup before a push."""
    return [("filter", f'userName eq "{email}"'), ("startIndex", "1"), ("count", "100")]


def scim2_server_accepts_password() -> bool:
    """Whether scim2-server takes Okta's POST with its placeholder ``password``.

    The payloads must be identical for both servers, so the password is sent to
    both or to neither.
    """
    driver = make_scim2_server()
    person = make_people(1)[0]
    try:
        driver.call("POST", "/Users", body=okta_user(person, with_password=True), expect=(201,))
    except BenchmarkError:
        return False
    return True


# --------------------------------------------------------------------------- phases


@dataclass
class Phase:
    """The timing of one phase on one server."""

    name: str
    unit: str
    ops: int
    seconds: float

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.ops / self.seconds if self.seconds > 0 else math.inf


@dataclass
class Listing:
    """The timing of one full paged listing."""

    users: int
    seconds: float

    @property
    def us_per_user(self) -> float:
        """Microseconds per listed user."""
        return self.seconds * 1e6 / self.users if self.users else math.nan


@dataclass
class ServerRun:
    """Everything measured on one server."""

    server: str
    phases: list[Phase] = field(default_factory=list)
    listings: dict[str, Listing] = field(default_factory=dict)
    total_seconds: float = 0.0
    requests: int = 0


def list_all(driver: Driver, expected: int) -> Listing:
    """Read every user with ``startIndex``/``count`` paging; check nothing is missed."""
    seen: set[str] = set()
    start = 1
    began = time.perf_counter()
    while True:
        page = driver.get("/Users", [("startIndex", str(start)), ("count", str(PAGE_SIZE))])
        resources = page.get("Resources", [])
        _check(page.get("totalResults") == expected, f"expected {expected} users", page)
        seen.update(user["id"] for user in resources)
        start += len(resources)
        if not resources or start > expected:
            break
    elapsed = time.perf_counter() - began
    _check(len(seen) == expected, f"listing read {len(seen)} distinct users", page)
    return Listing(users=expected, seconds=elapsed)


def warm_up(driver: Driver) -> None:
    """Pay first-request costs (imports, caches, connection pool) outside every timing.

    It only reads: Okta's Test Connector Configuration request and lookups of
    a user that never exists.
    """
    page = driver.get("/Users", [("startIndex", "1"), ("count", "2")])
    _check(page.get("totalResults") == 0, "the directory should start empty", page)
    for _ in range(WARM_UP_REQUESTS):
        found = driver.get("/Users", user_filter("warm-up@example.invalid"))
        _check(found.get("totalResults") == 0, "the warm-up user should not exist", found)
    driver.requests = 0


def run_workload(
    run: ServerRun,
    driver: Driver,
    people: Sequence[Person],
    *,
    with_password: bool,
    progress: Callable[[str], None],
) -> Iterator[None]:
    """Run the eight phases on one server, in order, pausing after each; fill ``run``.

    The caller alternates the two servers phase by phase (see :func:`main`),
    so that the load of a shared machine, which drifts over minutes, weighs
    alike on both sides of each ratio.
    """
    n = len(people)
    server = run.server
    order = list(range(n))
    random.Random(SEED + 1).shuffle(order)

    def timed(name: str, unit: str, ops: int, seconds: float) -> None:
        run.phases.append(Phase(name, unit, ops, seconds))
        progress(f"{server}: {name}: {ops} {unit} in {seconds:.2f} s ({ops / seconds:,.0f}/s)")

    warm_up(driver)

    # 1. lookup-then-POST, with the listing at N/5 outside the timing.
    ids: list[str] = []
    excluded = 0.0
    fifth = max(1, n // 5)
    gc.collect()
    t0 = time.perf_counter()
    for i, person in enumerate(people):
        found = driver.get("/Users", user_filter(person.email))
        _check(found.get("totalResults") == 0, f"{person.email} should not exist yet", found)
        created = _body(
            driver.call(
                "POST", "/Users", body=okta_user(person, with_password=with_password), expect=(201,)
            ),
            "POST /Users",
        )
        _check(
            bool(created.get("id")) and created.get("userName") == person.email,
            "201 must return the full user with its id",
            created,
        )
        ids.append(created["id"])
        if i + 1 == fifth:
            pause = time.perf_counter()
            run.listings["fifth"] = list_all(driver, fifth)
            excluded += time.perf_counter() - pause
    elapsed = time.perf_counter() - t0 - excluded
    timed("1 lookup-then-POST (requests)", "requests", 2 * n, elapsed)
    timed("1 lookup-then-POST (users)", "users", n, elapsed)
    yield
    # Untimed reference: the full listing in the same state as the one at N/5
    # (every user active, in no group), so that N/5 against N isolates the
    # effect of the directory's size from that of groups and deactivation.
    run.listings["created"] = list_all(driver, n)

    # 2. filter lookup of existing users.
    gc.collect()
    t0 = time.perf_counter()
    for i in order:
        found = driver.get("/Users", user_filter(people[i].email))
        _check(
            found.get("totalResults") == 1
            and len(found.get("Resources", [])) == 1
            and found["Resources"][0]["id"] == ids[i],
            f"{people[i].email} should be found exactly once",
            found,
        )
    timed("2 filter lookup by userName", "requests", n, time.perf_counter() - t0)
    yield

    # 3. GET by id; keep what was read, Okta PUTs it back.
    read: list[Json] = [{} for _ in range(n)]
    gc.collect()
    t0 = time.perf_counter()
    for i in order:
        user = driver.get(f"/Users/{ids[i]}")
        _check(user.get("id") == ids[i], "GET returned another user", user)
        read[i] = user
    timed("3 GET by id", "requests", n, time.perf_counter() - t0)
    yield

    # 4. PUT the user read in phase 3, with a new givenName.
    bodies = []
    for i in order:
        body = json.loads(json.dumps(read[i]))
        body.setdefault("name", {})["givenName"] = f"Renamed{i}"
        bodies.append((i, body))
    gc.collect()
    t0 = time.perf_counter()
    for i, body in bodies:
        updated = _body(driver.call("PUT", f"/Users/{ids[i]}", body=body), "PUT /Users")
        _check(
            updated.get("name", {}).get("givenName") == f"Renamed{i}"
            and updated.get("active") is True,
            "PUT must apply the new givenName and keep active",
            updated,
        )
    timed("4 PUT profile update", "requests", n, time.perf_counter() - t0)
    yield

    # 5. PATCH deactivate, path-less as Okta's catalogue apps send it.
    deactivate = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    gc.collect()
    t0 = time.perf_counter()
    for i in order:
        patched = driver.call("PATCH", f"/Users/{ids[i]}", body=deactivate, expect=(200, 204))
        if patched is not None:
            _check(patched.get("active") is False, "PATCH must deactivate", patched)
    timed("5 PATCH deactivate", "requests", n, time.perf_counter() - t0)
    yield

    # 6. N/100 groups created empty, then one member add per user.
    groups = max(1, math.ceil(n / USERS_PER_GROUP))
    group_ids: list[str] = []
    gc.collect()
    t0 = time.perf_counter()
    for g in range(groups):
        created = _body(
            driver.call(
                "POST",
                "/Groups",
                body={"schemas": [GROUP_SCHEMA], "displayName": f"bench-{g:04d}", "members": []},
                expect=(201,),
            ),
            "POST /Groups",
        )
        _check(bool(created.get("id")), "201 must return the group with its id", created)
        group_ids.append(created["id"])
    for i in order:
        add = {
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[i]}]}],
        }
        driver.call("PATCH", f"/Groups/{group_ids[i % groups]}", body=add, expect=(200, 204))
    timed("6 group create + member add", "ops", groups + n, time.perf_counter() - t0)
    yield
    sample = driver.get(f"/Groups/{group_ids[0]}")
    expected_members = len(range(0, n, groups))
    _check(
        len(sample.get("members", [])) == expected_members,
        f"group 0 should have {expected_members} members",
        sample,
    )

    # 7. paged listing of every user.
    gc.collect()
    listing = list_all(driver, n)
    run.listings["full"] = listing
    timed("7 paged listing", "users", n, listing.seconds)
    yield

    # 8. N/100 groups pushed whole: created empty, then one PATCH adding 100 members.
    pushed_ids: list[str] = []
    gc.collect()
    t0 = time.perf_counter()
    for g in range(groups):
        created = _body(
            driver.call(
                "POST",
                "/Groups",
                body={
                    "schemas": [GROUP_SCHEMA],
                    "displayName": pushed_group_name(g),
                    "members": [],
                },
                expect=(201,),
            ),
            "POST /Groups",
        )
        pushed_ids.append(created["id"])
        members = order[g * USERS_PER_GROUP : (g + 1) * USERS_PER_GROUP]
        add = {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": ids[i]} for i in members]}
            ],
        }
        driver.call("PATCH", f"/Groups/{created['id']}", body=add, expect=(200, 204))
    timed("8 groups pushed (100 members each)", "groups", groups, time.perf_counter() - t0)
    sample = driver.get(f"/Groups/{pushed_ids[-1]}")
    expected_members = len(order[(groups - 1) * USERS_PER_GROUP : groups * USERS_PER_GROUP])
    _check(
        len(sample.get("members", [])) == expected_members,
        f"the last pushed group should have {expected_members} members",
        sample,
    )

    run.requests = driver.requests


# --------------------------------------------------------------------------- report


def versions(n: int, with_password: bool) -> Json:
    """What the numbers depend on besides the code."""

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    with tempfile.TemporaryDirectory() as tmp:
        # The settings pbidentity gives its own SQLite files.
        probe = open_storage(f"sqlite:///{Path(tmp) / 'probe.db'}")
        durability = conditions.backend(probe)
        probe.close()
    return {
        "users": n,
        "machine": conditions.machine(),
        "durability": durability,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "pbidentity": version("pbidentity"),
        "scim2-server": version("scim2-server"),
        "platform": platform.platform(),
        "password_sent": with_password,
    }


def ratio(runs: Mapping[str, ServerRun], index: int) -> float | None:
    """Divide pbidentity's throughput by scim2-server's for one phase, if both ran."""
    if PBIDENTITY not in runs or SCIM2_SERVER not in runs:
        return None
    return runs[PBIDENTITY].phases[index].rate / runs[SCIM2_SERVER].phases[index].rate


def report(runs: Mapping[str, ServerRun], info: Json) -> Json:
    """Print the table and return the same numbers as a JSON-able dict."""
    first = next(iter(runs.values()))
    names = [phase.name for phase in first.phases]

    def rate(server: str, index: int) -> str:
        return f"{runs[server].phases[index].rate:,.0f}" if server in runs else "-"

    rows = []
    for index, name in enumerate(names):
        r = ratio(runs, index)
        rows.append(
            (
                name,
                first.phases[index].unit + "/s",
                rate(PBIDENTITY, index),
                rate(SCIM2_SERVER, index),
                "-" if r is None else f"{r:.2f}x",
            )
        )
    header = ("phase", "unit", "pbidentity ops/s", "scim2-server ops/s", "ratio pbid/scim2")
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    line = " | ".join(f"{{:<{w}}}" if c < 2 else f"{{:>{w}}}" for c, w in enumerate(widths))
    print()
    print(
        f"N={info['users']}  Python {info['python']} ({info['implementation']})  "
        f"SQLite {info['sqlite']}  pbidentity {info['pbidentity']}  "
        f"scim2-server {info['scim2-server']}  password sent: {info['password_sent']}"
    )
    print(info["machine"])
    print(f"pbidentity on {info['durability']}")
    print(line.format(*header))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))
    print()
    print("paged listing, microseconds per listed user:")
    for server, run in runs.items():
        fifth, created, full = (run.listings[k] for k in ("fifth", "created", "full"))
        print(
            f"  {server:<13} N/5={fifth.users}: {fifth.us_per_user:7.1f} us   "
            f"N={full.users}: {created.us_per_user:7.1f} us after phase 1 "
            f"(x{created.us_per_user / fifth.us_per_user:.2f}; 1.0 is linear), "
            f"{full.us_per_user:7.1f} us in phase 7 (x{full.us_per_user / fifth.us_per_user:.2f})"
        )
    print(
        "  (phase 7 lists deactivated users who are group members; N/5 and 'after phase 1' "
        "list active users in no group)"
    )
    print()
    for index, name in enumerate(names):
        r = ratio(runs, index)
        if r is not None:
            verdict = "met" if r >= TARGET_RATIO else "NOT met"
            print(f"{name}: target {TARGET_RATIO:g}x: {verdict} ({r:.2f}x)")
    for server, run in runs.items():
        print(f"{server}: {run.requests} requests, {run.total_seconds:.1f} s for all phases")

    return {
        **info,
        "target_ratio": TARGET_RATIO,
        "servers": {
            server: {
                "total_seconds": run.total_seconds,
                "requests": run.requests,
                "phases": {
                    p.name: {
                        "unit": p.unit,
                        "ops": p.ops,
                        "seconds": p.seconds,
                        "ops_per_s": p.rate,
                    }
                    for p in run.phases
                },
                "listing_us_per_user": {
                    "n_fifth": run.listings["fifth"].users,
                    "at_n_fifth": run.listings["fifth"].us_per_user,
                    "n": run.listings["full"].users,
                    "at_n_after_phase_1": run.listings["created"].us_per_user,
                    "at_n": run.listings["full"].us_per_user,
                },
            }
            for server, run in runs.items()
        },
        "ratios": {
            name: {"ratio": r, "target_met": r >= TARGET_RATIO}
            for index, name in enumerate(names)
            if (r := ratio(runs, index)) is not None
        },
    }


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(
        prog="okta_workload.py",
        description="Replay an Okta-like provisioning workload against pbidentity and "
        "scim2-server, in-process, and compare their throughput.",
    )
    parser.add_argument("--users", type=int, default=5000, metavar="N", help="default 5000")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers here")
    parser.add_argument(
        "--only", choices=SERVERS, help="run one server only (for profiling); no ratios"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 unless a server answered something unexpected."""
    args = build_parser().parse_args(argv)
    if args.users < 5:
        build_parser().error("--users must be at least 5")
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    with_password = scim2_server_accepts_password()
    if not with_password:
        progress("scim2-server refuses Okta's placeholder password: sent to neither server")
    people = make_people(args.users)
    servers = [args.only] if args.only else [SCIM2_SERVER, PBIDENTITY]
    runs = {server: ServerRun(server=server) for server in servers}
    try:
        with tempfile.TemporaryDirectory(prefix="pbidentity-bench-") as tmp:
            workloads = {
                server: run_workload(
                    runs[server],
                    make_scim2_server()
                    if server == SCIM2_SERVER
                    else make_pbidentity(Path(tmp), args.users),
                    people,
                    with_password=with_password,
                    progress=progress,
                )
                for server in servers
            }
            # Phase by phase, each server in turn.
            while workloads:
                for server, workload in list(workloads.items()):
                    resumed = time.perf_counter()
                    finished = next(workload, StopIteration) is StopIteration
                    runs[server].total_seconds += time.perf_counter() - resumed
                    if finished:
                        del workloads[server]
            gc.collect()
    except BenchmarkError as error:
        print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
        return 1
    results = report(runs, versions(args.users, with_password))
    total = time.perf_counter() - started
    results["wall_seconds"] = total
    print(f"total run time: {total:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
