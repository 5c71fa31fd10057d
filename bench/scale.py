"""A million members in one tenant: load them, then time what IdPs do, on SQLite and PostgreSQL.

What is measured
----------------
One tenant gets ``--members`` members (1,000,000 by default) and ``--groups``
groups (10,000) of up to 1,000 members each, loaded through the storage API
in batches (``add_members``, ``add_group``, ``add_memberships``); the load is
timed and reported in members per second. Then every request goes through the
whole SCIM service in-process (``ScimService.handle``: token check,
parsing, SQL, rendering), on a real SQLite file or a real PostgreSQL server,
and each is timed on its own to report the median and the 99th percentile:

* ``userName eq`` lookup, GET by id, PATCH deactivate (a path-less replace),
  each on ``--samples`` random members;
* a page of 100 members at the start, in the middle and at the end of the
  tenant, by index (``startIndex``) and by cursor (RFC 9865), each
  ``--page-samples`` times, and by index at ``--page-samples`` random
  positions (a jump that no earlier request prepared); every page is checked
  to start at the member its position names;
* a group member add (PATCH ``add members``) on random groups;
* a user create (POST) and the delete of that user, ``--samples`` of each.

After each load the planner's statistics are refreshed (``ANALYZE``, as
autovacuum soon would; ``--no-analyze`` measures the freshly loaded tables).
The same measurements run first when a tenth of the members are loaded, then
at full size, so the figures show how each cost grows with the table. The
anonymous memory of the process (``RssAnon``: heap, not the SQLite file pages
mapped in) is reported after each round: it must not grow with the table.

Then the set-up portal's members page (``Portal.handle``: access check,
the search, SQL, rendering the HTML page of 50), ``--page-samples`` times
each: the first page, a search by email, by a family name, by a first name,
by a prefix every member matches, one nothing matches, one a tenth of the
members' addresses start with (away from the first page), alone and with the
deactivated members only (one in fifty of its matches), each filter (role,
status, managed by SCIM), all of them with a search, and a page deep in the
listing (in the middle, at the end) by its cursor. The members are varied
for it: one in a thousand is an admin, one in ten a maker and one in ten a
contributor; one in fifty is deactivated; one in twenty is managed by the
app; first and family names come from lists of 60 (a family name is shared
by one member in sixty).

Targets on a 2-core machine, in-process: lookup and GET median <= 2 ms, any
page median <= 20 ms, writes median <= 5 ms, a members page of the portal
median <= 100 ms, on both backends. The run exits
with status 0 whatever the figures are; a line per measurement says whether
its target is met.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import conditions

from pbidentity import PbIdentity
from pbidentity.admin import Admin
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.http import Request
from pbidentity.portal import Portal
from pbidentity.portal import PortalAccess
from pbidentity.scim import ScimService
from pbidentity.scim.cursor import encode as encode_cursor
from pbidentity.scim.cursor import fingerprint
from pbidentity.storage import Storage
from pbidentity.storage import open_storage

BASE_URL = "https://app.example.com/scim/v2"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
TARGETS_MS = {"read": 2.0, "page": 20.0, "write": 5.0, "portal": 100.0}
PORTAL_URL = "https://app.example.com/portal"
GIVEN_NAMES = (  # noqa: SIM905 - a list of names reads better as words
    "Ada Alan Alice Amir Ana Arjun Beatriz Ben Carla Chen Chloe Dana David Diego Elena "
    "Emma Eric Fatima Felix Grace Hana Hugo Ines Ivan Jana Jonas Julia Kai Karim Lea Leo "
    "Lina Luca Maya Mei Mila Nadia Noah Nora Omar Oscar Paula Priya Rafael Rosa Sami "
    "Sara Sofia Tariq Theo Uma Vera Victor Wei Yara Yuki Zara Zoe Ravi Tomas"
).split()
FAMILY_NAMES = (  # noqa: SIM905 - a list of names reads better as words
    "Abe Adams Ali Bauer Becker Bianchi Brown Chen Costa Cruz Dubois Eriksen Evans "
    "Fischer Garcia Gomez Gupta Hansen Hoffmann Ito Jensen Johnson Kim Kowalski Kumar "
    "Larsen Lee Lopez Martin Meyer Moreau Muller Nakamura Nguyen Novak Okafor Olsen Park "
    "Patel Perez Petrov Rossi Santos Schmidt Silva Singh Smith Suzuki Tanaka Taylor "
    "Torres Van Wagner Walker Wang Weber Williams Wilson Yamamoto Zhang"
).split()


def _member_id(index: int) -> str:
    # Zero-padded, so id order is index order and a position in the listing
    # is known without reading it (the cursor of the middle page).
    return f"m{index:07d}"


def _group_size(index: int) -> int:
    """Up to 1,000 members: one group in a hundred is full, the others small."""
    return 1000 if index % 100 == 0 else 3 + index % 97


def load(storage: Storage, tenant_id: str, start: int, stop: int, batch: int = 5000) -> float:
    """Insert members ``start`` to ``stop``; returns the seconds it took."""
    now = datetime.now(UTC)
    began = time.perf_counter()
    for first in range(start, stop, batch):
        members = []
        for i in range(first, min(first + batch, stop)):
            email = f"user{i:07d}@example.com"
            given = GIVEN_NAMES[(i // 7) % len(GIVEN_NAMES)]
            family = FAMILY_NAMES[(i * 31) % len(FAMILY_NAMES)]
            role = _role(i)
            members.append(
                Member(
                    tenant_id=tenant_id,
                    id=_member_id(i),
                    attributes={
                        "userName": email,
                        "externalId": f"00u{i:012d}",
                        "active": i % 50 != 7,
                        "name": {"givenName": given, "familyName": family},
                        "displayName": f"{given} {family}",
                        "emails": [{"value": email, "primary": True, "type": "work"}],
                    },
                    role=role,
                    role_source="default",
                    role_rule=f"no role from the identity provider; the default role {role}",
                    scim_managed=i % 20 != 9,
                    created=now,
                    last_modified=now,
                )
            )
        with storage.transaction() as tx:
            tx.add_members(members)
    return time.perf_counter() - began


def _role(index: int) -> str:
    if index % 1000 == 0:
        return "admin"
    return {3: "maker", 5: "contributor"}.get(index % 10, "viewer")


def analyze(storage: Storage) -> None:
    """Refresh the planner's statistics after a bulk load, as autovacuum would soon do.

    A freshly loaded PostgreSQL table has none: the planner would then pick
    plans for an empty table. SQLite's ``ANALYZE`` feeds its planner too.
    """
    from sqlalchemy import text

    from pbidentity.storage.sql import SqlStorage

    if isinstance(storage, SqlStorage):
        with storage.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()


def load_groups(storage: Storage, tenant_id: str, count: int, members: int) -> tuple[float, int]:
    """Insert ``count`` groups with their members; returns (seconds, memberships)."""
    now = datetime.now(UTC)
    rng = random.Random(7)
    began = time.perf_counter()
    total = 0
    for first in range(0, count, 100):
        with storage.transaction() as tx:
            for g in range(first, min(first + 100, count)):
                group = Group(
                    tenant_id=tenant_id,
                    id=f"g{g:05d}",
                    attributes={"displayName": f"Group {g:05d}"},
                    created=now,
                    last_modified=now,
                )
                tx.add_group(group)
                chosen = {_member_id(rng.randrange(members)) for _ in range(_group_size(g))}
                tx.add_memberships(tenant_id, group.id, chosen)
                total += len(chosen)
    return time.perf_counter() - began, total


class Client:
    """Requests straight into the service, timed one by one."""

    def __init__(self, service: ScimService, token: str) -> None:
        self.service = service
        self.headers = (
            ("authorization", f"Bearer {token}"),
            ("content-type", "application/scim+json"),
        )

    def __call__(
        self, method: str, path: str, query: tuple[tuple[str, str], ...] = (), body: Any = None
    ) -> tuple[float, dict[str, Any] | None, int]:
        """Send one request; returns (seconds, JSON body, status). A failure ends the run."""
        request = Request(
            method=method,
            path=path,
            base_url=BASE_URL,
            headers=self.headers,
            query=query,
            body=b"" if body is None else json.dumps(body).encode(),
        )
        began = time.perf_counter()
        response = self.service.handle(request)
        elapsed = time.perf_counter() - began
        if response.status >= 300:
            raise SystemExit(f"{method} {path} {query}: {response.status} {response.body[:300]!r}")
        return elapsed, json.loads(response.body) if response.body else None, response.status


def measure(client: Client, members: int, groups: int, samples: int, pages: int) -> list[Any]:
    """Every measurement at the current size: (name, kind, samples in seconds)."""
    rng = random.Random(members)
    picks = [rng.randrange(members) for _ in range(samples)]
    results: list[Any] = []

    def timed(name: str, kind: str, call: Callable[[Any], float], inputs: list[Any]) -> None:
        results.append((name, kind, [call(value) for value in inputs]))

    def lookup(i: int) -> float:
        query = (("filter", f'userName eq "USER{i:07d}@example.com"'),)
        elapsed, body, _ = client("GET", "/Users", query)
        if not body or body["totalResults"] != 1:
            raise SystemExit(f"the lookup of user {i} found {body and body['totalResults']}")
        return elapsed

    def get(i: int) -> float:
        return client("GET", f"/Users/{_member_id(i)}")[0]

    deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}

    def patch(i: int) -> float:
        return client("PATCH", f"/Users/{_member_id(i)}", body=deactivate)[0]

    def page(request: tuple[tuple[tuple[str, str], ...], int]) -> float:
        query, position = request
        elapsed, body, _ = client("GET", "/Users", query)
        found = [resource["id"] for resource in body["Resources"]] if body else []
        if found != [_member_id(i) for i in range(position, position + 100)]:
            raise SystemExit(f"the page for {query} is not the 100 members from {position}")
        return elapsed

    def add(pair: tuple[str, str]) -> float:
        group, member = pair
        operation = {"op": "add", "path": "members", "value": [{"value": member}]}
        body = {"schemas": [PATCH], "Operations": [operation]}
        return client("PATCH", f"/Groups/{group}", body=body)[0]

    created: list[str] = []

    def create(i: int) -> float:
        body = {"schemas": [USER], "userName": f"new{i:07d}@example.com", "active": True}
        elapsed, user, _ = client("POST", "/Users", body=body)
        assert user is not None
        created.append(user["id"])
        return elapsed

    def remove(member_id: str) -> float:
        return client("DELETE", f"/Users/{member_id}")[0]

    timed("userName eq lookup", "read", lookup, picks)
    timed("GET by id", "read", get, picks)
    timed("PATCH deactivate", "write", patch, picks)
    for where, position in (("start", 0), ("middle", members // 2), ("end", members - 100)):
        index = (("startIndex", str(position + 1)), ("count", "100"))
        timed(f"page of 100 at the {where}, index", "page", page, [(index, position)] * pages)
        cursor = "" if position == 0 else _cursor_at(client, position, members)
        by_cursor = (("cursor", cursor), ("count", "100"))
        timed(f"page of 100 at the {where}, cursor", "page", page, [(by_cursor, position)] * pages)
    spots = [rng.randrange(members - 99) for _ in range(pages)]
    jumps = [((("startIndex", str(spot + 1)), ("count", "100")), spot) for spot in spots]
    timed("page of 100 at random, index", "page", page, jumps)
    pairs = [
        (f"g{rng.randrange(groups):05d}", _member_id(rng.randrange(members)))
        for _ in range(samples)
    ]
    timed("group member add", "write", add, pairs)
    timed("POST user", "write", create, list(range(samples)))
    # The same users again, so that the next round finds the members as loaded.
    timed("DELETE user", "write", remove, list(created))
    return results


def measure_portal(portal: Portal, tenant_id: str, members: int, pages: int) -> list[Any]:
    """The portal's members page at the current size: (name, kind, samples in seconds)."""
    results: list[Any] = []

    def page(query: tuple[tuple[str, str], ...], at_least: int, first: str | None) -> float:
        request = Request(method="GET", path="/w/acme/members", base_url=PORTAL_URL, query=query)
        began = time.perf_counter()
        response = portal.handle(request)
        elapsed = time.perf_counter() - began
        names = re.findall(r'data-user-name="([^"]+)"', response.body.decode())
        if response.status != 200 or len(names) < at_least or (first and names[0] != first):
            raise SystemExit(f"the members page for {query}: {response.status}, {names[:3]}")
        return elapsed

    def timed(name: str, query: tuple[tuple[str, str], ...], at_least: int = 1) -> None:
        first = page(query, at_least, None)  # the answer is checked, then timed again
        results.append(
            (
                "portal: " + name,
                "portal",
                [first] + [page(query, at_least, None) for _ in range(pages - 1)],
            )
        )

    middle, last = members // 2, members - 50
    target = f"user{middle:07d}@example.com"
    timed("first page", ())
    timed("search by email", (("q", target),))
    timed("search by family name", (("q", "wagner"),), 50)
    timed("search by first name", (("q", "Zoe"),), 50)
    timed("search every member matches", (("q", "user"),), 50)
    timed("search nothing matches", (("q", "nobody-here"),), 0)
    # A tenth of the addresses start with it, all far from the first page: the
    # emails' matches come in userName order from the values index, and with
    # a filter that one in fifty passes, are checked in runs against their
    # members (see pbidentity.storage.sql._directory).
    tenth = "user" + f"{members * 9 // 10:07d}".rstrip("0")  # user09 of a million
    timed("search a prefix of a tenth, far away", (("q", tenth),), 1)
    deactivated = (("q", tenth), ("status", "deactivated"))
    timed("search a prefix of a tenth, deactivated", deactivated, min(50, members // 2000))
    timed("filter role admin", (("role", "admin"),), min(50, members // 1000))
    timed("filter role maker", (("role", "maker"),), 50)
    timed("filter deactivated", (("status", "deactivated"),), 50)
    timed("filter active", (("status", "active"),), 50)
    timed("filter managed by the app", (("managed", "no"),), 50)
    timed("filter SCIM-managed", (("managed", "yes"),), 50)
    every = (("q", "tanaka"), ("role", "viewer"), ("status", "active"), ("managed", "yes"))
    timed("search with every filter", every, 50)
    for where, position in (("middle", middle), ("end", last)):
        cursor = _portal_cursor(tenant_id, position - 1)
        timed(f"page by cursor at the {where}", (("cursor", cursor),), min(50, members - position))
    return results


def _portal_cursor(tenant_id: str, position: int) -> str:
    """The next-page link's cursor after the member at ``position``, no search or filter.

    What the portal's members page puts in its link (pbidentity.portal._pages):
    bound to the tenant and the empty search, then the last member's userName and id.
    """
    bound_to = fingerprint(tenant_id, "portal-members", "", "", "", "")
    user_name = f"user{position:07d}@example.com"
    return encode_cursor(bound_to, (False, user_name, _member_id(position)), -1)


def _cursor_at(client: Client, position: int, members: int) -> str:
    """The nextCursor a client would hold after reading ``position`` members in id order."""
    _, first, _ = client("GET", "/Users", (("cursor", ""), ("count", "1")))
    assert first is not None
    # What a first page's cursor is bound to (tenant, resource, no filter, no
    # sort), then the position of the member before ``position``.
    bound_to = json.loads(base64.urlsafe_b64decode(first["nextCursor"] + "=="))[1]
    return encode_cursor(bound_to, (True, None, _member_id(position - 1)), members)


def _anonymous_memory_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return -1


def report(backend: str, size: int, results: list[Any], memory_kib: int) -> None:
    """One table per backend and size."""
    print(f"\n{backend}, {size:,} members: median / p99 in ms (target)")
    for name, kind, seconds in results:
        ms = sorted(s * 1000 for s in seconds)
        median = statistics.median(ms)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        target = TARGETS_MS[kind]
        verdict = "met" if median <= target else "NOT met"
        print(f"  {name:<44} {median:8.2f} / {p99:8.2f}   (<= {target:g}: {verdict})")
    print(f"  anonymous memory of the process: {memory_kib / 1024:.0f} MiB")


@contextmanager
def _postgres(url: str | None, *, durable: bool) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import postgres

    if not postgres.available():
        raise SystemExit(postgres.HOW_TO_GET_IT)
    with postgres.throwaway_cluster(durable=durable) as started:
        yield started


def run(
    url: str,
    backend: str,
    members: int,
    groups: int,
    samples: int,
    pages: int,
    *,
    analyzed: bool = True,
) -> None:
    """Load, measure at a tenth, load the rest, measure again."""
    storage = open_storage(url)
    print(f"\n{conditions.backend(storage)}")
    admin = Admin(storage)
    tenant = admin.create_tenant("acme")
    admin.set_scim_enabled("acme", True)
    token = admin.create_token("acme", "bench").secret
    client = Client(ScimService(storage), token)
    bench_admin = PortalAccess(admin_id="bench", admin_name="Bench", workspace="acme")
    portal = Portal(PbIdentity(storage), authorize=lambda _: bench_admin, secret="b" * 32)
    tenth = members // 10
    seconds = load(storage, tenant.id, 0, tenth)
    group_count = max(1, groups // 10)
    group_seconds, memberships = load_groups(storage, tenant.id, group_count, tenth)
    if analyzed:
        analyze(storage)
    print(
        f"{backend}: loaded {tenth:,} members in {seconds:.1f} s ({tenth / seconds:,.0f}/s), "
        f"{group_count:,} groups with {memberships:,} memberships in {group_seconds:.1f} s"
    )
    results = measure(client, tenth, group_count, samples, pages)
    results += measure_portal(portal, tenant.id, tenth, pages)
    report(backend, tenth, results, _anonymous_memory_kib())
    more = load(storage, tenant.id, tenth, members)
    with storage.transaction() as tx:
        for g in range(group_count):
            tx.delete_group(tenant.id, f"g{g:05d}")
    group_seconds, memberships = load_groups(storage, tenant.id, groups, members)
    if analyzed:
        analyze(storage)
    total = seconds + more
    print(
        f"\n{backend}: loaded {members:,} members in {total:.1f} s "
        f"({members / total:,.0f} members/s), {groups:,} groups with {memberships:,} "
        f"memberships in {group_seconds:.1f} s"
    )
    results = measure(client, members, groups, samples, pages)
    results += measure_portal(portal, tenant.id, members, pages)
    report(backend, members, results, _anonymous_memory_kib())
    storage.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on the chosen backends."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--page-samples", type=int, default=30)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", help="an empty database (default: a throwaway cluster)")
    parser.add_argument(
        "--postgres-fsync",
        choices=("on", "off"),
        default="on",
        help="the throwaway cluster's durability: on, the server's defaults (fsync and "
        "synchronous_commit on); off, fsync=off as the test suite runs it",
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyzed",
        action="store_false",
        help="measure right after each load, before the planner has statistics",
    )
    args = parser.parse_args(argv)
    sizes = (args.members, args.groups, args.samples, args.page_samples)
    print(conditions.machine())
    print(f"N={args.members:,} members, {args.groups:,} groups, {args.samples} samples a line")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'scale.db'}"
            run(url, "SQLite", *sizes, analyzed=args.analyzed)
    if args.backend in ("postgresql", "both"):
        with _postgres(args.postgres_url, durable=args.postgres_fsync == "on") as url:
            run(url, "PostgreSQL", *sizes, analyzed=args.analyzed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
