"""Members in a SQL transaction: their rows, their multi-valued attributes, reads by id or query."""

from __future__ import annotations

import collections
from collections.abc import Collection
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pbidentity.domain import Member
from pbidentity.domain import fold
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.query import Page
from pbidentity.query import Query
from pbidentity.storage import _conflicts
from pbidentity.storage.sql._compile import _MEMBERS
from pbidentity.storage.sql._errors import _constraint
from pbidentity.storage.sql._errors import _is_foreign_key
from pbidentity.storage.sql._errors import _raise_missing_or_moved
from pbidentity.storage.sql._query import _Querying
from pbidentity.storage.sql._rows import _UNIQUE_MEMBER_COLUMNS
from pbidentity.storage.sql._rows import _changed_columns
from pbidentity.storage.sql._rows import _member
from pbidentity.storage.sql._rows import _member_row
from pbidentity.storage.sql._rows import _value_rows
from pbidentity.storage.sql._schema import _utc_text
from pbidentity.storage.sql._schema import members
from pbidentity.storage.sql._segments import _Counting
from pbidentity.storage.sql._statements import _DELETE_VALUES
from pbidentity.storage.sql._statements import _EXISTING_MEMBERS
from pbidentity.storage.sql._statements import _GET_MEMBER
from pbidentity.storage.sql._statements import _GET_MEMBERS
from pbidentity.storage.sql._statements import _INSERT_MEMBER
from pbidentity.storage.sql._statements import _INSERT_MEMBER_UNLESS_TAKEN
from pbidentity.storage.sql._statements import _INSERT_VALUES
from pbidentity.storage.sql._statements import _MATCHING
from pbidentity.storage.sql._statements import _MEMBER_VERSION
from pbidentity.storage.sql._statements import _REDECISION_COLUMNS
from pbidentity.storage.sql._statements import _SELECT_MEMBERS
from pbidentity.storage.sql._statements import _UPDATE_MEMBER
from pbidentity.storage.sql._statements import _UPDATE_MEMBER_SAME_VALUES
from pbidentity.storage.sql._statements import _chunks
from pbidentity.storage.sql._statements import _update_members_of_rows
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _writing


class _Members(_Counting, _Querying):
    """Members and their multi-valued attributes."""

    @_writing
    def add_member(self, member: Member) -> None:
        """Insert a member; ``ConflictError(attribute="userName")`` if userName is taken."""
        values = _value_rows(member)
        row = _member_row(member, values)
        keys = {"tenant_id": member.tenant_id, "member_id": member.id}
        record = {"tenant_id": member.tenant_id, "id": member.id, **row}
        if self._dialect == "postgresql" and self._rows(
            _INSERT_MEMBER_UNLESS_TAKEN, {**record, "b_tenant_id": member.tenant_id}
        ):
            # Inserted, and counted; what follows cannot break a constraint:
            # the values rows are new keys under the new member, so they go
            # with the segment's statement in one round trip.
            if values:
                self._run_many_later(_INSERT_VALUES, [{**keys, **v} for v in values])
            self._move_segments(member.tenant_id, [member.id], 1)
            return
        try:
            with self._savepoint():
                # On PostgreSQL only after the insert above inserted nothing:
                # this one raises the error that says which constraint refused it.
                self._run(_INSERT_MEMBER, record, sorted(record))
                self._add_member_rows(member, [{**keys, **v} for v in values])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise _conflicts.missing("tenant", member.tenant_id) from error
            if "user_name" in _constraint(error):
                raise _conflicts.user_name_taken(member) from error
            if "external_id" in _constraint(error):
                raise _conflicts.external_id_taken(member) from error
            raise _conflicts.id_taken("member", member.id) from error

    def _add_member_rows(self, member: Member, values: list[dict[str, Any]]) -> None:
        """Write what follows a member's own row: its values, its tenant's counters."""
        if values:
            self._run_many(_INSERT_VALUES, values)
        self._count(member.tenant_id, "members", 1)
        self._move_segments(member.tenant_id, [member.id], 1)

    @_writing
    def add_members(self, members: Sequence[Member]) -> None:
        """Insert many members at once (all or none): two executemany statements."""
        if not members:
            return
        rows: list[dict[str, Any]] = []
        values: list[dict[str, Any]] = []
        for member in members:
            member_values_rows = _value_rows(member)
            row = _member_row(member, member_values_rows)
            rows.append({"tenant_id": member.tenant_id, "id": member.id, **row})
            keys = {"tenant_id": member.tenant_id, "member_id": member.id}
            values.extend({**keys, **v} for v in member_values_rows)
        try:
            with self._savepoint(fallible_statements=2):
                self._run_many(_INSERT_MEMBER, rows)
                if values:
                    self._run_many(_INSERT_VALUES, values)
                by_tenant: dict[str, list[str]] = collections.defaultdict(list)
                for member in members:
                    by_tenant[member.tenant_id].append(member.id)
                # Tenants in one order, so that two imports lock their counters alike.
                for tenant_id, ids in sorted(by_tenant.items()):
                    self._count(tenant_id, "members", len(ids))
                    self._move_segments(tenant_id, ids, 1)
        except IntegrityError as error:
            constraint = _constraint(error)
            if _is_foreign_key(error):
                raise NotFoundError("a member names a tenant that does not exist") from error
            if "user_name" in constraint:
                raise ConflictError(
                    "a userName of these members is already taken in the tenant",
                    attribute="userName",
                ) from error
            if "external_id" in constraint:
                raise ConflictError(
                    "an externalId of these members is already linked to another member",
                    attribute="externalId",
                ) from error
            raise ConflictError("a member id is given twice or exists", attribute="id") from error

    @_guarded
    def get_member(self, tenant_id: str, member_id: str) -> Member | None:
        """The member, or ``None``."""
        where = {"b_tenant_id": tenant_id, "b_id": member_id}
        rows = self._rows(_GET_MEMBER, where)
        if not rows:
            return None
        member = _member(tenant_id, rows[0])
        self._read[(tenant_id, member_id)] = member
        return member

    @_writing
    def replace_member(
        self, member: Member, *, expected_version: int, previous: Member | None = None
    ) -> None:
        """Overwrite a member whose stored version is ``expected_version``."""
        where = {"b_tenant_id": member.tenant_id, "b_id": member.id, "b_expected": expected_version}
        key = (member.tenant_id, member.id)
        read = self._read.pop(key, None)
        if previous is None or previous.version != expected_version:
            previous = read
        if previous is not None and previous.version == expected_version:
            # The row as this unit (or the caller) read it: if its version
            # still matches when the UPDATE runs, it is exactly what is stored
            # (every write bumps the version), so only the columns that differ
            # need computing and writing. An UPDATE of every column costs ten
            # times more on SQLite, because each indexed column's entry is
            # rewritten.
            self._update_changed(member, previous, where)
            self._read[key] = member
            return
        values = _value_rows(member)
        row = _member_row(member, values)
        try:
            with self._savepoint():
                same = {**row, **where, "b_digest": row["values_digest"]}
                if self._run(_UPDATE_MEMBER_SAME_VALUES, same, sorted(row)) == 1:
                    return
                if self._conn.execute(_UPDATE_MEMBER, {**row, **where}).rowcount == 0:
                    current = self._conn.execute(_MEMBER_VERSION, where).scalar()
                    _raise_missing_or_moved("member", member.id, current, expected_version)
                self._replace_values(member, where, values)
        except IntegrityError as error:
            conflict = _taken(error, member)
            if conflict is None:
                raise
            raise conflict from error

    def _update_changed(self, member: Member, previous: Member, where: dict[str, Any]) -> None:
        row, values = _changed_columns(previous, member)
        # The version check needs a SET clause even when nothing else moved.
        row.setdefault("version", member.version)
        changed = sorted(row)
        # A change of neither unique column nor values rows (a role decided
        # again, a deactivation) cannot break a constraint: no savepoint, which
        # is two round trips on PostgreSQL for every member a group change
        # re-decides.
        fallible = int(values is not None or not _UNIQUE_MEMBER_COLUMNS.isdisjoint(row))
        try:
            with self._savepoint(fallible_statements=fallible):
                if self._run(_UPDATE_MEMBER, {**row, **where}, changed) == 0:
                    current = self._conn.execute(_MEMBER_VERSION, where).scalar()
                    _raise_missing_or_moved("member", member.id, current, where["b_expected"])
                if values is not None:
                    self._replace_values(member, where, values)
        except IntegrityError as error:
            conflict = _taken(error, member)
            if conflict is None:
                raise
            raise conflict from error

    def _replace_values(
        self, member: Member, where: dict[str, Any], values: list[dict[str, Any]]
    ) -> None:
        """Replace the member's multi-valued attribute rows."""
        self._conn.execute(_DELETE_VALUES, where)
        if values:
            keys = {"tenant_id": member.tenant_id, "member_id": member.id}
            self._run_many(_INSERT_VALUES, [{**keys, **v} for v in values])

    @_writing
    def replace_members(self, updates: Sequence[tuple[Member, int]]) -> None:
        """Overwrite many members, each paired with the version it must still have stored.

        A member this unit read at that version, whose change touches neither
        a unique column nor its values rows (a role decided again, what a
        group change or a new policy does to thousands of members), is
        written by one UPDATE per set of changed columns, run for all of
        them at once (an ``executemany``: one round trip on PostgreSQL); if
        fewer rows matched than were sent, the members are checked one by
        one for the error to raise. Any other member goes through
        :meth:`replace_member`.
        """
        batches: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        written: list[Member] = []
        for member, expected_version in updates:
            previous = self._read.get((member.tenant_id, member.id))
            if previous is not None and previous.version == expected_version:
                row, values = _changed_columns(previous, member)
                if values is None and _UNIQUE_MEMBER_COLUMNS.isdisjoint(row):
                    row.setdefault("version", member.version)
                    where = {
                        "b_tenant_id": member.tenant_id,
                        "b_id": member.id,
                        "b_expected": expected_version,
                    }
                    batches.setdefault(tuple(sorted(row)), []).append({**row, **where})
                    written.append(member)
                    continue
            self.replace_member(member, expected_version=expected_version)
        for columns, rows in batches.items():
            if _REDECISION_COLUMNS.issuperset(columns):
                # One statement for them all, the rows bound as one JSON array.
                statement = _update_members_of_rows(self._dialect, columns)
                matched = self._run(statement, {"b_rows": _update_rows(columns, rows)})
            else:
                matched = self._run_many(_UPDATE_MEMBER, rows, columns)
            if matched != len(rows):
                self._raise_for_unwritten(rows)
        for member in written:
            self._read[(member.tenant_id, member.id)] = member

    def _raise_for_unwritten(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The error for a bulk UPDATE that matched fewer rows than it was sent.

        The rows it matched are at their new version now, which a concurrent
        writer may have given the others too, so only a missing member can
        be named; the unit fails either way, and its rollback undoes them all.
        """
        moved = rows[0]
        for row in rows:
            where = {"b_tenant_id": row["b_tenant_id"], "b_id": row["b_id"]}
            current = self._conn.execute(_MEMBER_VERSION, where).scalar()
            if current is None:
                raise _conflicts.missing("member", row["b_id"])
            if current != row["version"]:
                moved = row
        raise VersionMismatchError(
            f"member {moved['b_id']!r} (or another of the {len(rows)} written together) is "
            f"no longer at version {moved['b_expected']}"
        )

    @_writing
    def delete_member(self, tenant_id: str, member_id: str) -> bool:
        """Delete a member and its memberships; ``False`` if it did not exist."""
        statement = delete(members).where(
            members.c.tenant_id == tenant_id, members.c.id == member_id
        )
        deleted = bool(self._conn.execute(statement).rowcount)
        if deleted:
            self._count(tenant_id, "members", -1)
            self._move_segments(tenant_id, [member_id], -1)
        return deleted

    @_guarded
    def get_members(self, tenant_id: str, member_ids: Collection[str]) -> Sequence[Member]:
        """The members with those ids that exist, ordered by id."""
        found: list[Member] = []
        for chunk in _chunks(sorted(set(member_ids))):
            rows = self._rows(_GET_MEMBERS, {"b_tenant_id": tenant_id, "b_ids": chunk})
            found.extend(_member(tenant_id, row) for row in rows)
        for member in found:
            # As get_member: a replace of what this unit read writes only
            # the columns that changed.
            self._read[(tenant_id, member.id)] = member
        return found

    @_guarded
    def list_members(
        self, tenant_id: str, *, after: str | None = None, limit: int = 1000
    ) -> Sequence[Member]:
        """Up to ``limit`` members whose id sorts after ``after``, ordered by id."""
        statement = _SELECT_MEMBERS.where(members.c.tenant_id == tenant_id)
        if after is not None:
            statement = statement.where(members.c.id > after)
        rows = self._conn.execute(statement.order_by(members.c.id).limit(limit))
        return [_member(tenant_id, row) for row in rows]

    @_guarded
    def members_matching(
        self,
        tenant_id: str,
        *,
        user_name: str | None = None,
        external_id: str | None = None,
        email: str | None = None,
        limit: int = 20,
    ) -> Sequence[Member]:
        """Members whose userName, externalId or one of whose emails is the given one."""
        values = {
            "b_tenant_id": tenant_id,
            "b_user_name": None if user_name is None else fold(user_name),
            "b_external_id": external_id,
            "b_email": None if email is None else fold(email),
            "b_limit": limit,
        }
        return [_member(tenant_id, row) for row in self._rows(_MATCHING, values)]

    @_guarded
    def count_active_members(self, tenant_id: str, role: str) -> int:
        """How many active members have that role."""
        statement = select(func.count()).where(
            members.c.tenant_id == tenant_id,
            members.c.app_role == role,
            # A member without "active" is active (Member.active): NULL counts.
            or_(members.c.active.is_(None), members.c.active.is_(True)),
        )
        return int(self._conn.execute(statement).scalar_one())

    @_guarded
    def query_members(self, tenant_id: str, query: Query) -> Page[Member]:
        """A page of the tenant's members matching ``query``."""
        rows, total, last, more = self._query(_MEMBERS, _SELECT_MEMBERS, tenant_id, query)
        members = [_member(tenant_id, row) for row in rows]
        return Page(items=members, total=total, last=last, more=more)

    @_guarded
    def existing_member_ids(self, tenant_id: str, member_ids: Collection[str]) -> set[str]:
        """The subset of ``member_ids`` that are members of the tenant."""
        found: set[str] = set()
        for chunk in _chunks(member_ids):
            where = {"b_tenant_id": tenant_id, "b_ids": chunk}
            found.update(row[0] for row in self._rows(_EXISTING_MEMBERS, where))
        return found


def _update_rows(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of a bulk update as :func:`_update_members_of_rows` reads them."""
    return orjson.dumps(
        [
            [
                row["b_tenant_id"],
                row["b_id"],
                row["b_expected"],
                *(_column_value(row[column]) for column in columns),
            ]
            for row in rows
        ]
    ).decode()


def _column_value(value: Any) -> Any:
    # As _UtcText writes a datetime; text and numbers are JSON already.
    if isinstance(value, datetime):
        return _utc_text(value)
    return value


def _taken(error: IntegrityError, member: Member) -> ConflictError | None:
    """The conflict on a unique column that a replaced member met, if that is what failed."""
    if "user_name" in _constraint(error):
        return _conflicts.user_name_taken(member)
    if "external_id" in _constraint(error):
        return _conflicts.external_id_taken(member)
    return None
