"""The members list of an admin page in a SQL transaction: searched, filtered, paged by userName.

Every page is ordered by the folded userName (unique in a tenant) and starts
after the previous page's last one, so the filters' indexes (tenant, filter,
userName) give a page at any depth by reading just that page.

A search is a prefix (see :class:`~pbidentity.storage.MemberSearch`), so
that each searched column answers it from an index. Its matches come in
another order than the listing's, though, so a page of them is found one of
two ways: when they are common, walking the listing's order finds a page
within a thousand members (:data:`_WINDOW`); when they are rare, each
searched column gives its first matches after the cursor, and the page is
the first of those. A name's index holds the userName beside the name, so
its matches are read from the index alone when no filter is set, and each
is checked against its member's row when one is (the name indexes leave the
filtered columns out on purpose: a role or status change would otherwise
move an entry in each of them); the userName's come in order; an email row
carries its member's userName, so the emails' matches are read in that order
from the values index alone. What still grows with the number of matches is
a filter few of them pass: its candidates are checked against their members
in runs four times longer each time.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from contextlib import suppress
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import case
from sqlalchemy import exists
from sqlalchemy import false
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from pbidentity.domain import Member
from pbidentity.domain import fold
from pbidentity.storage import MemberSearch
from pbidentity.storage.sql._rows import _member
from pbidentity.storage.sql._schema import member_values
from pbidentity.storage.sql._schema import members
from pbidentity.storage.sql._statements import _SELECT_MEMBERS
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _Unit

#: How many members of the listing's order a search reads before it asks the
#: searched columns' indexes instead: a page of matches is found in the
#: window when at least one member in twenty matches.
_WINDOW = 1000

#: The members columns a search compares with its prefix (besides the emails).
_SEARCHED = (
    members.c.user_name_folded,
    members.c.display_name_folded,
    members.c.name_given_name_folded,
    members.c.name_family_name_folded,
)


def _successor(prefix: str) -> str | None:
    """The least string after every string that starts with ``prefix`` (``None``: no bound).

    Code point order is the order of both databases here (SQLite compares
    UTF-8 bytes, PostgreSQL's columns use the C collation).
    """
    following = ord(prefix[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000  # surrogates are no characters: the next one is U+E000
    if following > 0x10FFFF:
        return _successor(prefix[:-1]) if len(prefix) > 1 else None
    return prefix[:-1] + chr(following)


def _starts(column: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, as a range an index answers."""
    low = column >= prefix
    high = _successor(prefix)
    return low if high is None else and_(low, column < high)


class _Directory(_Unit):
    """The members list: filters and a prefix search over the folded columns, by userName."""

    @_guarded
    def search_members(self, tenant_id: str, search: MemberSearch) -> Sequence[Member]:
        """Up to ``search.limit`` members matching ``search``, ordered by folded userName."""
        limit = max(search.limit, 0)
        if limit == 0:
            return []
        m = members
        where: list[ColumnElement[bool]] = [m.c.tenant_id == tenant_id]
        if search.role is not None:
            where.append(m.c.app_role == search.role)
        if search.active is False:
            where.append(m.c.active == false())
        elif search.active is True:
            # A member without "active" is active (Member.active).
            where.append(or_(m.c.active.is_(None), m.c.active != false()))
        if search.scim_managed is not None:
            where.append(m.c.scim_managed == literal(search.scim_managed))
        filtered = (
            search.role is not None or search.active is not None or search.scim_managed is not None
        )
        after = None if search.after is None else fold(search.after)
        if after is not None:
            where.append(m.c.user_name_folded > after)
        prefix = fold(search.prefix)
        if not prefix:
            statement = _SELECT_MEMBERS.where(*where).order_by(m.c.user_name_folded).limit(limit)
            return [_member(tenant_id, row) for row in self._conn.execute(statement)]
        with self._planned_for_values():
            found = self._in_window(tenant_id, where, prefix, limit)
            if found is None:
                found = self._by_indexes(tenant_id, where, filtered, after, prefix, limit)
        return found

    @contextmanager
    def _planned_for_values(self) -> Iterator[None]:
        """On PostgreSQL, plan a search's statements for the values they are run with, without JIT.

        psycopg prepares a statement run five times, and PostgreSQL may then
        plan it once for any values: a generic plan cannot tell a prefix
        range that holds ten addresses from one that holds a hundred thousand
        (the window's email probe went from 4 ms to 160 ms at the sixth
        page). And a range of many addresses is costed high enough for
        PostgreSQL to compile the statement first, which took longer than
        running it (a tenth of a million addresses: 160 ms, 770 ms with a
        filter). The pooled connection gets its settings back afterwards, so
        the SCIM hot path keeps its own.
        """
        if self._dialect != "postgresql":
            yield
            return
        # One round trip each way: no parameters, so several statements go as one.
        self._conn.exec_driver_sql("SET plan_cache_mode = force_custom_plan; SET jit = off")
        try:
            yield
        finally:
            # In a transaction a failed statement aborted, RESET fails too,
            # and the rollback then undoes the SET: the first error is the one
            # to raise.
            with suppress(DBAPIError):
                self._conn.exec_driver_sql("RESET plan_cache_mode; RESET jit")

    def _in_window(
        self, tenant_id: str, where: list[ColumnElement[bool]], prefix: str, limit: int
    ) -> list[Member] | None:
        """The page from the next :data:`_WINDOW` members in order; ``None`` if it is not there."""
        m, mv = members, member_values
        named = or_(*(_starts(column, prefix) for column in _SEARCHED))
        sqlite = self._dialect == "sqlite"
        if sqlite:
            # Each member's own email rows, probed as the window is read.
            named = or_(
                named,
                exists().where(
                    mv.c.tenant_id == m.c.tenant_id,
                    mv.c.member_id == m.c.id,
                    mv.c.attribute == "emails",
                    _starts(mv.c.value_folded, prefix),
                ),
            )
        window = (
            select(m.c.id, case((named, 1), else_=0).label("hit"))
            .where(*where)
            .order_by(m.c.user_name_folded)
            .limit(_WINDOW)
        )
        if sqlite:
            # SQLite reads the window as the rows are fetched: stop at a page.
            hits: list[str] = []
            read = 0
            result = self._conn.execute(window)
            for row in result:
                read += 1
                if row.hit:
                    hits.append(row.id)
                    if len(hits) == limit:
                        break
            result.close()
            if len(hits) < limit and read == _WINDOW:
                return None  # rare matches: the searched columns' indexes list them
            return self._members_in_order(tenant_id, hits)
        rows = self._conn.execute(window).all()
        emailed: set[str] = set()
        if rows:
            # PostgreSQL may answer a subquery per row by reading every email
            # once (a hashed subplan): the window's ids, probed in one statement.
            ids = select(mv.c.member_id).where(
                mv.c.tenant_id == tenant_id,
                mv.c.attribute == "emails",
                mv.c.member_id.in_([row.id for row in rows]),
                _starts(mv.c.value_folded, prefix),
            )
            emailed = {row[0] for row in self._conn.execute(ids)}
        found = [row.id for row in rows if row.hit or row.id in emailed]
        if len(found) < limit and len(rows) == _WINDOW:
            return None
        return self._members_in_order(tenant_id, found[:limit])

    def _by_indexes(
        self,
        tenant_id: str,
        where: list[ColumnElement[bool]],
        filtered: bool,
        after: str | None,
        prefix: str,
        limit: int,
    ) -> list[Member]:
        """The page from each searched column's own first matches, merged.

        Each name column's index holds the userName beside the name, so its
        matches are read in one range, however many there are (each checked
        against its member's row when a filter is set); the userName's matches come in
        order from the filters' indexes (or its own); the emails' in
        userName order from the values index (:meth:`_by_email`).
        """
        m = members
        found: set[str] = set()
        for column in _SEARCHED:
            statement = (
                select(m.c.user_name_folded)
                .where(*where, _starts(column, prefix))
                .order_by(m.c.user_name_folded)
                .limit(limit)
            )
            found.update(row[0] for row in self._conn.execute(statement))
        page = sorted(found)[:limit]
        # Emails after the last of a full page cannot be on it.
        bound = page[-1] if len(page) == limit else None
        found.update(self._by_email(tenant_id, where, filtered, after, bound, prefix, limit))
        page = sorted(found)[:limit]
        if not page:
            return []
        statement = _SELECT_MEMBERS.add_columns(m.c.user_name_folded.label("listed")).where(
            m.c.tenant_id == tenant_id, m.c.user_name_folded.in_(page)
        )
        rows = {row.listed: row for row in self._conn.execute(statement)}
        return [_member(tenant_id, rows[name]) for name in page if name in rows]

    def _by_email(
        self,
        tenant_id: str,
        where: list[ColumnElement[bool]],
        filtered: bool,
        after: str | None,
        bound: str | None,
        prefix: str,
        limit: int,
    ) -> list[str]:
        """Up to ``limit`` folded userNames after ``after`` with an email starting with ``prefix``.

        None is past ``bound`` (the last of a page found already). An email
        row carries its member's userName, so they are read in that order
        from ix_member_values_value alone, however many match (a tenth of a
        million: 8 ms); a row that carries none (a userName over
        CARRIED_USER_NAME_BYTES) has it looked up in its member's row, and
        only such a row (COALESCE evaluates its second value only when the
        first is NULL, on both databases). With a filter set, each run of
        candidates is joined to its members' rows in the same statement;
        each run is four times longer than the last, so a filter that few of
        them pass costs a handful of statements, and the lookups of at most
        every match.
        """
        mv, m = member_values, members
        own = m.alias("own")
        name = func.coalesce(
            mv.c.user_name_folded,
            select(own.c.user_name_folded)
            .where(own.c.tenant_id == mv.c.tenant_id, own.c.id == mv.c.member_id)
            .scalar_subquery(),
        ).label("user_name_folded")
        size = limit * 4 if filtered else limit
        found: list[str] = []
        while True:
            conditions = [
                mv.c.tenant_id == tenant_id,
                mv.c.attribute == "emails",
                _starts(mv.c.value_folded, prefix),
            ]
            if after is not None:
                conditions.append(name > after)
            if bound is not None:
                conditions.append(name <= bound)
            run = (
                select(name, mv.c.member_id)
                .where(*conditions)
                .distinct()
                .order_by(name)
                .limit(size)
            )
            if not filtered:
                return [row.user_name_folded for row in self._conn.execute(run)]
            candidates = run.subquery("candidates")
            checked = (
                select(
                    candidates.c.user_name_folded,
                    m.c.id.is_not(None).label("passes"),
                )
                .select_from(
                    candidates.outerjoin(
                        m,
                        and_(m.c.tenant_id == tenant_id, m.c.id == candidates.c.member_id, *where),
                    )
                )
                .order_by(candidates.c.user_name_folded)
            )
            rows = self._conn.execute(checked).all()
            found.extend(row.user_name_folded for row in rows if row.passes)
            if len(found) >= limit or len(rows) < size:
                return found
            after = rows[-1].user_name_folded
            size *= 4

    def _members_in_order(self, tenant_id: str, ids: list[str]) -> list[Member]:
        if not ids:
            return []
        statement = _SELECT_MEMBERS.where(members.c.tenant_id == tenant_id, members.c.id.in_(ids))
        found = {row.id: _member(tenant_id, row) for row in self._conn.execute(statement)}
        return [found[i] for i in ids if i in found]
