"""What reading ``member.profile`` costs the host app on a listing of members.

What is measured
----------------
A workspace on a SQLite file has ``N`` members (1,000 by default) that an
Entra-shaped push created: name, two emails, a phone number, the Enterprise
User extension (department, manager, employee number, cost center) and the
role extension. The run times, best of five:

1. *list*: ``Members.all()``, the listing itself;
2. *first read*: ``member.profile`` on every member of the listing, which
   validates each document into a typed scim2-models ``User``;
3. *second read*: ``member.profile`` again, which must be the kept object.

Every profile is checked (the department it holds), so that a run that skipped
work would not look fast.

Run: ``python bench/profiles.py [--members N]`` from the repository root.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from pathlib import Path

from pbidentity.admin import Admin
from pbidentity.domain import Member
from pbidentity.members import Members
from pbidentity.storage import open_storage

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def entra_member(tenant_id: str, index: int, now: datetime) -> Member:
    """A member as an Entra push leaves it."""
    return Member(
        tenant_id=tenant_id,
        id=f"m-{index:06d}",
        attributes={
            "userName": f"user{index}@contoso.com",
            "externalId": f"0a21f0f2-{index:06d}",
            "active": True,
            "displayName": f"User {index}",
            "name": {"givenName": "User", "familyName": str(index), "formatted": f"User {index}"},
            "emails": [
                {"value": f"user{index}@contoso.com", "type": "work", "primary": True},
                {"value": f"user{index}@corp.local", "type": "other"},
            ],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
            ENTERPRISE: {
                "department": f"Department {index % 7}",
                "manager": {"value": "m-000000"},
                "employeeNumber": str(index),
                "costCenter": "4130",
            },
        },
        role_attribute="maker",
        role="maker",
        role_source="attribute",
        scim_managed=True,
        created=now,
        last_modified=now,
    )


def best_of(runs: int, action: Callable[[], object]) -> float:
    """The shortest of ``runs`` timings of ``action``, in seconds."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Build the workspace, then time the listing and the two reads of every profile."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=1000)
    count = parser.parse_args().members
    with tempfile.TemporaryDirectory() as folder:
        storage = open_storage(f"sqlite:///{Path(folder) / 'profiles.db'}")
        try:
            tenant = Admin(storage).create_tenant("contoso", "Contoso")
            now = datetime.now(UTC)
            with storage.transaction() as tx:
                tx.add_members([entra_member(tenant.id, i, now) for i in range(count)])
            members = Members(storage)
            listing = best_of(5, lambda: members.all("contoso"))

            def first_read() -> None:
                fresh = members.all("contoso")
                start = time.perf_counter()
                departments = {
                    m.profile.enterprise.department for m in fresh if m.profile.enterprise
                }
                timings.append(time.perf_counter() - start)
                assert len(departments) == min(count, 7), departments

            timings: list[float] = []
            for _ in range(5):
                first_read()
            listed = members.all("contoso")
            kept = [m.profile for m in listed]
            second = best_of(5, lambda: [m.profile for m in listed])
            assert all(m.profile is p for m, p in zip(listed, kept, strict=True))
        finally:
            storage.close()
    first = min(timings)
    print(f"{count} members on SQLite, best of 5")
    print(f"  list (Members.all)       {listing * 1000:8.1f} ms")
    each = first / count * 1e6
    print(f"  first read of .profile   {first * 1000:8.1f} ms  ({each:.0f} µs a member)")
    print(f"  second read of .profile  {second * 1000:8.3f} ms  (kept)")


if __name__ == "__main__":
    main()
