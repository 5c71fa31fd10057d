"""Members.audit_trail filters as the portal's audit page does: type, actor, time, newest first."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from pbidentity.admin import Admin
from pbidentity.exceptions import InputError
from pbidentity.members import Members
from pbidentity.storage import Storage

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        """The time the test set."""
        return self.now


def test_the_trail_filters_by_type_actor_and_time_and_walks_backwards(storage: Storage) -> None:
    """Each filter alone and together, on both backends; newest first pages by ``before``."""
    clock = Clock()
    Admin(storage).create_tenant("acme")
    Admin(storage).create_tenant("beta")
    members = Members(storage, clock=clock)
    ids = []
    for day in range(4):
        clock.now = START + timedelta(days=day)
        member = members.add("acme", f"user{day}@acme.test", actor="app" if day % 2 else "portal:1")
        ids.append(member.id)
    clock.now = START + timedelta(days=4)
    members.edit("acme", ids[0], active=False, actor="portal:1")
    members.add("beta", "user0@beta.test", actor="portal:1")

    def trail(**filters: object) -> list[tuple[str, str, int]]:
        return [
            (e.type, e.actor, (e.occurred - START).days)
            for e in members.audit_trail("acme", **filters)  # type: ignore[arg-type]
        ]

    assert len(trail()) == 5
    assert trail(types=["member.deactivated"]) == [("member.deactivated", "portal:1", 4)]
    assert [day for _, _, day in trail(actor="portal:1")] == [0, 2, 4]
    assert [day for _, _, day in trail(actor="app", types=["member.created"])] == [1, 3]
    middle = trail(since=START + timedelta(days=1), until=START + timedelta(days=3))
    assert [day for _, _, day in middle] == [1, 2]
    newest = members.audit_trail("acme", newest_first=True, limit=2)
    assert [(e.occurred - START).days for e in newest] == [4, 3]
    older = members.audit_trail("acme", newest_first=True, limit=2, before=newest[-1].seq)
    assert [(e.occurred - START).days for e in older] == [2, 1]
    with pytest.raises(InputError, match=r"no event type 'member\.nope'"):
        members.audit_trail("acme", types=["member.nope"])
    with pytest.raises(InputError, match="since needs a timezone"):
        members.audit_trail("acme", since=datetime(2026, 3, 1))
