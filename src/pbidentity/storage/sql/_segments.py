"""The tenant counters and the segment counts behind deep paging of members."""

from __future__ import annotations

import bisect
import collections
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Integer
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.sql import Select

from pbidentity.exceptions import StorageError
from pbidentity.storage.sql._schema import _TEXT
from pbidentity.storage.sql._schema import members
from pbidentity.storage.sql._schema import tenant_counts
from pbidentity.storage.sql._statements import _COUNT_CHANGE
from pbidentity.storage.sql._statements import _SELECT_MEMBERS
from pbidentity.storage.sql._statements import _T
from pbidentity.storage.sql._unit import _Unit

# Segments: a tenant's members in id order (the order of an unsorted listing)
# cut into runs of consecutive ids, each counted in a row of tenant_counts.
# The row of kind "members@" + X counts the members whose id is X or above and
# below the next segment's X; "members@" alone starts below every id, so each
# id falls in exactly one segment. The counts move in the transaction of
# every member insert and delete, right after the tenant's member counter,
# whose row lock puts those transactions in one order: they are exact in
# every snapshot. A page at offset k then reads, in its one statement (one
# snapshot, even under READ COMMITTED), where the segment holding position k
# starts and how many members precede it, and skips fewer than a segment's
# ids in the index instead of k. Nothing is cached in the process, so
# another instance's writes count as soon as they commit.
_SEGMENT = "members@"
# Every "members@..." kind sorts below this one (in code-point order "A"
# follows "@"), so the two bound a range scan of the primary key.
_PAST_SEGMENTS = "membersA"
# A segment grown past twice this many members is cut into segments of this
# size (the last keeps the rest): a page skips fewer than 2 x 2,000 ids, and
# a million members make about 500 segment rows for a page to add up. (On
# PostgreSQL, segments of 5,000 made the last page 2 ms slower, and 1,000
# gained nothing.)
_SEGMENT_SIZE = 2_000

_IN_SEGMENTS = and_(tenant_counts.c.kind >= _SEGMENT, tenant_counts.c.kind < _PAST_SEGMENTS)
# The segments add up to the member counter. Every pbidentity takes the
# counter's lock to insert or delete members, but one from before segments (an
# instance not yet upgraded, mid-rollout) moves the counter only: a page that
# finds the two apart skips the plain way, and the next write counts again.
_other_counts = tenant_counts.alias("other_counts")
_SEGMENTED = (
    select(func.sum(_other_counts.c.n))
    .where(
        _other_counts.c.tenant_id == _T,
        _other_counts.c.kind >= _SEGMENT,
        _other_counts.c.kind < _PAST_SEGMENTS,
    )
    .scalar_subquery()
)
_MEMBERS_COUNTED = (
    select(_other_counts.c.n)
    .where(_other_counts.c.tenant_id == _T, _other_counts.c.kind == "members")
    .scalar_subquery()
)
_SEGMENTS = (
    select(tenant_counts.c.kind, tenant_counts.c.n, _MEMBERS_COUNTED.label("counted"))
    .where(tenant_counts.c.tenant_id == _T, _IN_SEGMENTS)
    .order_by(tenant_counts.c.kind)
)
# The segment of one id: the last one that starts at or below it (b_kind is
# "members@" + the id). SQLite reads it, then moves it; PostgreSQL does both
# in one statement (_MOVE_SEGMENT).
_SEGMENT_OF = (
    select(
        tenant_counts.c.kind,
        tenant_counts.c.n,
        _SEGMENTED.label("segmented"),
        _MEMBERS_COUNTED.label("counted"),
    )
    .where(
        tenant_counts.c.tenant_id == _T,
        tenant_counts.c.kind >= _SEGMENT,
        tenant_counts.c.kind <= bindparam("b_kind"),
    )
    .order_by(tenant_counts.c.kind.desc())
    .limit(1)
)
# PostgreSQL moves the segment of one id in one round trip: the UPDATE finds
# it, and says what it holds now. It changes nothing (and returns no row) when
# the segments, before this change, do not add up to the counter, which has
# it already. Safe as one statement only because the member counter's lock is
# held: no other unit moves a segment meanwhile.
_DELTA = bindparam("b_delta", type_=Integer)
_containing = tenant_counts.alias("containing")
_MOVE_SEGMENT = (
    update(tenant_counts)
    .where(
        tenant_counts.c.tenant_id == _T,
        tenant_counts.c.kind
        == select(func.max(_containing.c.kind))
        .where(
            _containing.c.tenant_id == _T,
            _containing.c.kind >= _SEGMENT,
            _containing.c.kind <= bindparam("b_key"),
        )
        .scalar_subquery(),
        _SEGMENTED + _DELTA == _MEMBERS_COUNTED,
    )
    .values(n=tenant_counts.c.n + _DELTA)
    .returning(tenant_counts.c.kind, tenant_counts.c.n)
)
_SET_COUNT = (
    update(tenant_counts)
    .where(tenant_counts.c.tenant_id == _T, tenant_counts.c.kind == bindparam("b_kind"))
    .values(n=bindparam("b_n"))
)
_INSERT_COUNTS = insert(tenant_counts)
_DROP_COUNT = delete(tenant_counts).where(
    tenant_counts.c.tenant_id == _T, tenant_counts.c.kind == bindparam("b_kind")
)
_DROP_SEGMENTS = delete(tenant_counts).where(tenant_counts.c.tenant_id == _T, _IN_SEGMENTS)
_MEMBER_COUNT = select(func.count()).select_from(members).where(members.c.tenant_id == _T)
# The id b_skip places after b_from in id order (b_skip 0: b_from itself, if
# a member has it): where a segment is cut.
_MEMBER_AT = (
    select(members.c.id)
    .where(members.c.tenant_id == _T, members.c.id >= bindparam("b_from"))
    .order_by(members.c.id)
    .limit(1)
    .offset(bindparam("b_skip"))
)


def _segmented_page() -> Select[Any]:
    """The unsorted, unfiltered page of ``b_limit`` members at offset ``b_offset``."""
    offset = bindparam("b_offset", type_=BigInteger)
    limit = bindparam("b_limit", type_=BigInteger)
    ranked = (
        select(
            tenant_counts.c.kind,
            (
                func.sum(tenant_counts.c.n).over(order_by=tenant_counts.c.kind) - tenant_counts.c.n
            ).label("before"),
        )
        .where(tenant_counts.c.tenant_id == _T, _IN_SEGMENTS, _SEGMENTED == _MEMBERS_COUNTED)
        .cte("ranked")
    )
    # The last segment with at most b_offset members before it: the one that
    # holds the offset (or an empty one right before it, which holds nothing).
    held = (
        select(ranked.c.kind, ranked.c.before)
        .where(ranked.c.before <= offset)
        .order_by(ranked.c.kind.desc())
        .limit(1)
        .cte("held")
    )
    start = len(_SEGMENT) + 1
    # A tenant without segments (no member written since they were
    # introduced), or whose segments do not add up, is read from its first
    # id, skipping the whole offset.
    first = func.coalesce(
        select(func.substr(held.c.kind, start)).scalar_subquery(), literal("", _TEXT)
    )
    before = func.coalesce(select(held.c.before).scalar_subquery(), 0)
    # The page ends below the first segment that starts past it, else at the
    # tenant's last id. Bounding the range keeps a plan made without
    # statistics (a fresh bulk load: a bitmap scan and a sort of the whole
    # range) to a few segments instead of every member from the offset on.
    past = select(func.min(ranked.c.kind)).where(ranked.c.before >= offset + limit)
    # (Not correlated: the tenant's last id, not the row's.)
    last_id = select(func.max(members.c.id)).where(members.c.tenant_id == _T).correlate(None)
    last = func.coalesce(func.substr(past.scalar_subquery(), start), last_id.scalar_subquery())
    page_ids = (
        select(members.c.id)
        .where(members.c.tenant_id == _T, members.c.id >= first, members.c.id <= last)
        .order_by(members.c.id)
        .limit(limit)
        .offset(offset - before)
    )
    return _SELECT_MEMBERS.where(members.c.tenant_id == _T, members.c.id.in_(page_ids)).order_by(
        members.c.id
    )


_SEGMENTED_PAGE = _segmented_page()


class _Counting(_Unit):
    """The tenant counters and member segments, moved in every insert and delete."""

    def _count(self, tenant_id: str, kind: str, delta: int) -> None:
        self._run(_COUNT_CHANGE, {"b_tenant_id": tenant_id, "b_kind": kind, "b_delta": delta})

    def _move_segments(self, tenant_id: str, member_ids: Sequence[str], delta: int) -> None:
        """Count members just added (``delta`` 1) or deleted (-1) in their segments.

        Called right after the tenant's member counter moved in this unit:
        that row stays locked until the unit ends, so no other unit moves a
        segment of the tenant meanwhile, and on PostgreSQL the statements
        below already see every segment change committed before.
        """
        if len(member_ids) == 1 and self._dialect == "postgresql":
            key = {"b_tenant_id": tenant_id, "b_key": _SEGMENT + member_ids[0], "b_delta": delta}
            moved_one = self._rows(_MOVE_SEGMENT, key)
            if not moved_one:
                self._build_segments(tenant_id)
                return
            self._settle_segment(tenant_id, moved_one[0].kind, moved_one[0].n)
            return
        if len(member_ids) == 1:
            key = {"b_tenant_id": tenant_id, "b_kind": _SEGMENT + member_ids[0]}
            rows = self._rows(_SEGMENT_OF, key)
            segmented = rows[0].segmented if rows else 0
        else:
            rows = self._rows(_SEGMENTS, {"b_tenant_id": tenant_id})
            segmented = sum(row.n for row in rows)
        # The counter has this unit's change already; the segments not yet.
        apart = not rows or segmented + delta * len(member_ids) != rows[0].counted
        if apart or (len(member_ids) > 1 and rows[0].kind != _SEGMENT):
            # A tenant written before segments existed has none, and one
            # written by such a pbidentity since does not add up.
            self._build_segments(tenant_id)
            return
        kinds = [row.kind for row in rows]
        counts = {row.kind: row.n for row in rows}
        moved: collections.Counter[str] = collections.Counter()
        for member_id in member_ids:
            # Code-point order, as both databases compare these columns.
            moved[kinds[bisect.bisect_right(kinds, _SEGMENT + member_id) - 1]] += delta
        for kind, change in sorted(moved.items()):
            self._count(tenant_id, kind, change)
            if not self._settle_segment(tenant_id, kind, counts[kind] + change):
                return

    def _settle_segment(self, tenant_id: str, kind: str, n: int) -> bool:
        """Cut a segment that grew too long, drop one left empty; ``n`` is its new count.

        ``False`` when the count cannot be right and the segments were counted again.
        """
        if n < 0 or (n > 2 * _SEGMENT_SIZE and not self._cut_segment(tenant_id, kind, n)):
            # Only rows written behind pbidentity's back lead here; a recount
            # from the members themselves is exact again.
            self._build_segments(tenant_id)
            return False
        if n == 0 and kind != _SEGMENT:
            # Its ids now belong to the segment before it, which gains no
            # member: fewer rows for every page to add up.
            self._run(_DROP_COUNT, {"b_tenant_id": tenant_id, "b_kind": kind})
        return True

    def _cut_segment(self, tenant_id: str, kind: str, n: int) -> bool:
        """Cut a segment of ``n`` members into ``_SEGMENT_SIZE`` ones; the last keeps the rest.

        One skip of ``_SEGMENT_SIZE`` ids in the index per cut. ``False``
        (nothing written) if the members are fewer than ``n`` says.
        """
        size = _SEGMENT_SIZE
        cuts: list[str] = []
        lower = kind[len(_SEGMENT) :]
        while n - size * len(cuts) > 2 * size:
            found = self._rows(
                _MEMBER_AT, {"b_tenant_id": tenant_id, "b_from": lower, "b_skip": size}
            )
            if not found:
                return False
            lower = found[0].id
            cuts.append(lower)
        self._run(_SET_COUNT, {"b_tenant_id": tenant_id, "b_kind": kind, "b_n": size})
        sizes = [size] * (len(cuts) - 1) + [n - size * len(cuts)]
        self._run_many(
            _INSERT_COUNTS,
            [
                {"tenant_id": tenant_id, "kind": _SEGMENT + cut, "n": count}
                for cut, count in zip(cuts, sizes, strict=True)
            ],
        )
        return True

    def _build_segments(self, tenant_id: str) -> None:
        """Count the tenant's members into segments from scratch: one walk of its ids.

        The member counter is set to the same count: the two add up again
        even if rows were written behind pbidentity's back.
        """
        self._run(_DROP_SEGMENTS, {"b_tenant_id": tenant_id})
        n = int(self._rows(_MEMBER_COUNT, {"b_tenant_id": tenant_id})[0][0])
        self._run(_SET_COUNT, {"b_tenant_id": tenant_id, "b_kind": "members", "b_n": n})
        self._run_many(_INSERT_COUNTS, [{"tenant_id": tenant_id, "kind": _SEGMENT, "n": n}])
        # The count and the walk see the same members: their inserts and
        # deletes wait for this unit's lock on the member counter.
        if n > 2 * _SEGMENT_SIZE and not self._cut_segment(tenant_id, _SEGMENT, n):
            raise StorageError(f"the members of tenant {tenant_id!r} changed while counted")
