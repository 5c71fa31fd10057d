"""Time phase 8 of ``okta_workload.py`` alone: groups pushed with 100 members each.

The directory is built as the Okta workload leaves it before phase 8 (``N``
users created, deactivated, each in one unmapped group of 100), then ``N/100``
groups, each mapped to a role by the tenant's policy, are pushed as Okta's
Group Push sends them: ``POST /Groups`` with no members, then one
``PATCH add members`` naming 100 users. Each added member's role is decided
again (a ``member.role_changed`` event each). Only the pushes are timed,
``--rounds`` times, each on a fresh copy of the directory, and the best round
is reported, in wall-clock time and in the process's CPU time (which other
work on a shared machine moves less); ``--profile`` also prints a cProfile of
every round.

``--sql-only`` also times, each round, the rows a push writes done by
``sqlite3`` alone (the floor under any code on this disk), and ``--peer``
scim2-server (in memory) pushing the same groups onto the same directory:
one run then says how far from the peer pbidentity is, and how far its
storage alone would be.

    python bench/group_push.py --users 5000 --rounds 3 --sql-only --peer
    python bench/group_push.py --profile | head -60
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import os
import pstats
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import conditions
from okta_workload import GROUP_SCHEMA
from okta_workload import PATCH_SCHEMA
from okta_workload import SEED
from okta_workload import USERS_PER_GROUP
from okta_workload import Driver
from okta_workload import make_pbidentity
from okta_workload import make_people
from okta_workload import make_scim2_server
from okta_workload import okta_user
from okta_workload import pushed_group_name
from okta_workload import scim2_server_accepts_password

from pbidentity import PbIdentity
from pbidentity.storage import open_storage
from pbidentity.wsgi import make_app


def prepare(driver: Driver, users: int, *, with_password: bool = True) -> list[str]:
    """Create, group and deactivate ``users`` users as phases 1 to 6 do; their ids, shuffled."""
    ids = []
    for person in make_people(users):
        created = driver.call(
            "POST", "/Users", body=okta_user(person, with_password=with_password), expect=(201,)
        )
        assert created is not None
        ids.append(created["id"])
    groups = max(1, math.ceil(users / USERS_PER_GROUP))
    for g in range(groups):
        group = driver.call(
            "POST",
            "/Groups",
            body={"schemas": [GROUP_SCHEMA], "displayName": f"bench-{g:04d}", "members": []},
            expect=(201,),
        )
        assert group is not None
        members = ids[g::groups]
        add = {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": i} for i in members]}
            ],
        }
        driver.call("PATCH", f"/Groups/{group['id']}", body=add, expect=(200, 204))
    deactivate = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    for member_id in ids:
        driver.call("PATCH", f"/Users/{member_id}", body=deactivate, expect=(200, 204))
    random.Random(SEED + 1).shuffle(ids)
    return ids


def push(driver: Driver, ids: Sequence[str], first: int, groups: int) -> float:
    """Push ``groups`` groups of 100 of ``ids``, named from the ``first``-th; seconds taken."""
    began = time.perf_counter()
    for g in range(groups):
        created = driver.call(
            "POST",
            "/Groups",
            body={
                "schemas": [GROUP_SCHEMA],
                "displayName": pushed_group_name(first + g),
                "members": [],
            },
            expect=(201,),
        )
        assert created is not None
        members = ids[g * USERS_PER_GROUP : (g + 1) * USERS_PER_GROUP]
        add = {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": i} for i in members]}
            ],
        }
        driver.call("PATCH", f"/Groups/{created['id']}", body=add, expect=(200, 204))
    return time.perf_counter() - began


def push_on_peer(users: int, groups: int, with_password: bool) -> float:
    """scim2-server's push of the same groups onto a directory prepared alike; seconds."""
    peer = make_scim2_server()
    ids = prepare(peer, users, with_password=with_password)
    gc.collect()
    return push(peer, ids, 0, groups)


def push_sql_only(path: Path, ids: Sequence[str], groups: int) -> float:
    """The rows a push writes, written by ``sqlite3`` alone with no work around them; seconds.

    Per group: the group inserted and committed, then its 100 memberships, the
    100 members' role columns and version, and 100 events, committed. The
    floor under what any code can make of a push on this machine's disk.
    """
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        connection.execute(f"PRAGMA {pragma}")
    (tenant,) = connection.execute("SELECT id FROM tenants").fetchone()
    now = "2026-01-01T00:00:00.000000+00:00"
    began = time.perf_counter()
    for g in range(groups):
        group_id = f"sql-only-{g}"
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT INTO groups (tenant_id, id, document, version, created, last_modified, "
            "display_name, display_name_folded) VALUES (?, ?, '{}', 1, ?, ?, ?, ?)",
            (tenant, group_id, now, now, group_id, group_id),
        )
        connection.execute("COMMIT")
        members = ids[g * USERS_PER_GROUP : (g + 1) * USERS_PER_GROUP]
        rule = f"group {group_id!r} (priority 1) maps to maker"
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO memberships (tenant_id, group_id, member_id) VALUES (?, ?, ?)",
            [(tenant, group_id, member_id) for member_id in members],
        )
        connection.executemany(
            "UPDATE members SET app_role = 'maker', role_source = 'group', role_rule = ?, "
            "version = version + 1, last_modified = ? WHERE tenant_id = ? AND id = ?",
            [(rule, now, tenant, member_id) for member_id in members],
        )
        connection.executemany(
            "INSERT INTO events (id, tenant_id, type, subject_id, actor, occurred, data) "
            "VALUES (?, ?, 'member.role_changed', ?, 'token:okta', ?, ?)",
            [
                (
                    f"{group_id}-{member_id}",
                    tenant,
                    member_id,
                    now,
                    json.dumps({"old": "viewer", "new": "maker", "source": "group", "rule": rule}),
                )
                for member_id in members
            ],
        )
        connection.execute("COMMIT")
    seconds = time.perf_counter() - began
    connection.close()
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Build the directory, push the groups, print groups per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the pushes")
    parser.add_argument(
        "--sql-only",
        action="store_true",
        help="also time each round's rows written by sqlite3 alone (the floor)",
    )
    parser.add_argument(
        "--peer",
        action="store_true",
        help="also time scim2-server (in memory) pushing the same groups, each round",
    )
    args = parser.parse_args(argv)
    groups = max(1, math.ceil(args.users / USERS_PER_GROUP))
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        print(conditions.machine())
        probe = open_storage(f"sqlite:///{base / 'probe.db'}")
        print(conditions.backend(probe))
        probe.close()
        prepared = make_pbidentity(base, args.users)
        # The same payloads for both servers: the password goes to both or neither.
        with_password = scim2_server_accepts_password() if args.peer else True
        ids = prepare(prepared, args.users, with_password=with_password)
        print(f"{args.users} users; load average before the pushes: {os.getloadavg()}")
        profiler = cProfile.Profile() if args.profile else None
        timings: list[tuple[float, float]] = []
        for r in range(args.rounds):
            # Each round pushes the same groups onto the directory as prepared.
            copy = base / f"round{r}.db"
            with sqlite3.connect(base / "bench.db") as source, sqlite3.connect(copy) as target:
                source.backup(target)
            app = make_app(PbIdentity(f"sqlite:///{copy}"))
            driver = Driver(app=app, prefix=prepared.prefix, token=prepared.token)
            driver.get("/Users", [("startIndex", "1"), ("count", "2")])  # opens the pool
            gc.collect()
            if profiler is not None:
                profiler.enable()
            cpu = time.process_time()
            seconds = push(driver, ids, 0, groups)
            cpu = time.process_time() - cpu
            if profiler is not None:
                profiler.disable()
            timings.append((seconds, cpu))
            print(
                f"round {r + 1}: {groups} groups in {seconds:.3f} s: "
                f"{groups / seconds:,.0f} groups/s, {seconds / groups * 1e3:.2f} ms per group "
                f"({cpu / groups * 1e3:.2f} ms of CPU)"
            )
            alone = None
            if args.sql_only:
                floor_db = base / f"floor{r}.db"
                prepared_db = base / "bench.db"
                with sqlite3.connect(prepared_db) as source, sqlite3.connect(floor_db) as target:
                    source.backup(target)
                alone = push_sql_only(floor_db, ids, groups)
                print(
                    f"round {r + 1}, the same rows by sqlite3 alone: "
                    f"{alone / groups * 1e3:.2f} ms per group"
                )
            if args.peer:
                peer_seconds = push_on_peer(args.users, groups, with_password)
                floor = (
                    ""
                    if alone is None
                    else f"; its rows by sqlite3 alone: {peer_seconds / alone:.2f}x"
                )
                print(
                    f"round {r + 1}, scim2-server: {groups / peer_seconds:,.0f} groups/s, "
                    f"{peer_seconds / groups * 1e3:.2f} ms per group "
                    f"(pbidentity / scim2-server: {peer_seconds / seconds:.2f}x{floor})"
                )
        best = min(seconds for seconds, _ in timings)
        least = min(cpu for _, cpu in timings)
        print(
            f"best: {groups / best:,.0f} groups/s ({best / groups * 1e3:.2f} ms per group; "
            f"least CPU {least / groups * 1e3:.2f} ms per group)"
        )
        if profiler is not None:
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(45)
    return 0


if __name__ == "__main__":
    sys.exit(main())
