"""Groups and memberships in a SQL transaction."""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from pbidentity.domain import Group
from pbidentity.domain import MemberRef
from pbidentity.exceptions import NotFoundError
from pbidentity.query import Page
from pbidentity.query import Query
from pbidentity.storage import _conflicts
from pbidentity.storage.sql._compile import _GROUPS
from pbidentity.storage.sql._errors import _constraint
from pbidentity.storage.sql._errors import _is_foreign_key
from pbidentity.storage.sql._errors import _raise_missing_or_moved
from pbidentity.storage.sql._query import _Querying
from pbidentity.storage.sql._rows import _group
from pbidentity.storage.sql._rows import _group_row
from pbidentity.storage.sql._schema import groups
from pbidentity.storage.sql._schema import memberships
from pbidentity.storage.sql._segments import _Counting
from pbidentity.storage.sql._statements import _ADD_MEMBERSHIPS_OF_LIST_POSTGRESQL
from pbidentity.storage.sql._statements import _ADD_MEMBERSHIPS_OF_LIST_SQLITE
from pbidentity.storage.sql._statements import _GET_GROUP
from pbidentity.storage.sql._statements import _GROUP_MEMBERS
from pbidentity.storage.sql._statements import _GROUP_MEMBERS_OF_ONE
from pbidentity.storage.sql._statements import _GROUP_VERSION
from pbidentity.storage.sql._statements import _GROUPS_OF_ONE_MEMBER
from pbidentity.storage.sql._statements import _MEMBER_GROUPS
from pbidentity.storage.sql._statements import _MEMBERSHIPS_OF
from pbidentity.storage.sql._statements import _REMOVE_MEMBERSHIPS
from pbidentity.storage.sql._statements import _SELECT_GROUPS
from pbidentity.storage.sql._statements import _UPDATE_GROUP
from pbidentity.storage.sql._statements import _UPDATE_GROUP_SAME_NAME
from pbidentity.storage.sql._statements import _chunks
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _writing

# Built once: the hot path caches compiled statements by object.
_INSERT_GROUP = insert(groups)


class _Groups(_Counting, _Querying):
    """Groups and their members."""

    if TYPE_CHECKING:
        # The members part of the transaction answers which members exist.
        def existing_member_ids(self, tenant_id: str, member_ids: Collection[str]) -> set[str]: ...

    # Groups ------------------------------------------------------------------
    @_writing
    def add_group(self, group: Group) -> None:
        """Insert a group; ``ConflictError(attribute="displayName")`` if the name is taken."""
        row = {"tenant_id": group.tenant_id, "id": group.id, **_group_row(group)}
        try:
            with self._savepoint():
                self._run(_INSERT_GROUP, row, sorted(row))
                self._count(group.tenant_id, "groups", 1)
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise _conflicts.missing("tenant", group.tenant_id) from error
            if "display_name" in _constraint(error):
                raise _conflicts.display_name_taken(group) from error
            raise _conflicts.id_taken("group", group.id) from error

    @_guarded
    def get_group(self, tenant_id: str, group_id: str) -> Group | None:
        """The group, or ``None``."""
        where = {"b_tenant_id": tenant_id, "b_id": group_id}
        rows = self._rows(_GET_GROUP, where)
        return _group(tenant_id, rows[0]) if rows else None

    @_writing
    def replace_group(self, group: Group, *, expected_version: int) -> None:
        """As :meth:`replace_member`, for groups (conflicts on ``displayName``)."""
        where = {"b_tenant_id": group.tenant_id, "b_id": group.id, "b_expected": expected_version}
        row = _group_row(group)
        if self._dialect == "postgresql" and row["display_name_folded"] is not None:
            # A savepoint costs PostgreSQL two round trips; SQLite takes none.
            same = {**row, **where, "b_display_name": row["display_name_folded"]}
            if self._run(_UPDATE_GROUP_SAME_NAME, same, sorted(row)) == 1:
                return
        try:
            with self._savepoint():
                changed = self._run(_UPDATE_GROUP, {**row, **where}, sorted(row))
        except IntegrityError as error:
            if "display_name" in _constraint(error):
                raise _conflicts.display_name_taken(group) from error
            raise
        if changed == 0:
            current = self._conn.execute(_GROUP_VERSION, where).scalar()
            _raise_missing_or_moved("group", group.id, current, expected_version)

    @_writing
    def delete_group(self, tenant_id: str, group_id: str) -> bool:
        """Delete a group and its memberships; ``False`` if it did not exist."""
        statement = delete(groups).where(groups.c.tenant_id == tenant_id, groups.c.id == group_id)
        deleted = bool(self._conn.execute(statement).rowcount)
        if deleted:
            self._count(tenant_id, "groups", -1)
        return deleted

    @_guarded
    def query_groups(self, tenant_id: str, query: Query) -> Page[Group]:
        """A page of the tenant's groups matching ``query``."""
        rows, total, last, more = self._query(_GROUPS, _SELECT_GROUPS, tenant_id, query)
        groups = [_group(tenant_id, row) for row in rows]
        return Page(items=groups, total=total, last=last, more=more)

    # Memberships -------------------------------------------------------------
    @_writing
    def add_memberships(
        self, tenant_id: str, group_id: str, member_ids: Iterable[str]
    ) -> list[str]:
        """Add members to a group; returns the ids that were not in it yet, sorted.

        ``NotFoundError`` if the group or one of the members is not the tenant's.
        """
        wanted = sorted(set(member_ids))
        if not wanted:
            return []
        added: list[str] = []
        chunks = list(_chunks(wanted))
        try:
            # A missing member in the last chunk must not leave the first
            # ones added: a savepoint around them all (one statement alone
            # needs none on SQLite, see _savepoint).
            with self._savepoint(fallible_statements=len(chunks)):
                for chunk in chunks:
                    where = {"b_tenant_id": tenant_id, "b_id": group_id, "b_ids": chunk}
                    if self._dialect == "postgresql":
                        # One round trip: the pairs already there are
                        # skipped, and only the new ones come back.
                        added.extend(
                            row[0] for row in self._rows(_ADD_MEMBERSHIPS_OF_LIST_POSTGRESQL, where)
                        )
                        continue
                    present = {row[0] for row in self._rows(_MEMBERSHIPS_OF, where)}
                    new = [member_id for member_id in chunk if member_id not in present]
                    if new:
                        self._run(_ADD_MEMBERSHIPS_OF_LIST_SQLITE, {**where, "b_ids": new})
                        added.extend(new)
        except IntegrityError as error:
            raise self._missing_memberships(tenant_id, group_id, wanted) from error
        return sorted(added)

    def _missing_memberships(
        self, tenant_id: str, group_id: str, member_ids: list[str]
    ) -> NotFoundError:
        if self.get_group(tenant_id, group_id) is None:
            return _conflicts.missing("group", group_id)
        unknown = sorted(set(member_ids) - self.existing_member_ids(tenant_id, member_ids))
        return _conflicts.no_such_members(unknown)

    @_writing
    def remove_memberships(
        self, tenant_id: str, group_id: str, member_ids: Iterable[str] | None
    ) -> int:
        """Remove those members from the group (``None``: every member); returns how many went."""
        ms = memberships
        if member_ids is None:
            base = delete(ms).where(ms.c.tenant_id == tenant_id, ms.c.group_id == group_id)
            return int(self._conn.execute(base).rowcount)
        removed = 0
        for chunk in _chunks(member_ids):
            where = {"b_tenant_id": tenant_id, "b_id": group_id, "b_ids": chunk}
            removed += self._run(_REMOVE_MEMBERSHIPS, where)
        return removed

    @_guarded
    def group_members(
        self, tenant_id: str, group_ids: Collection[str]
    ) -> Mapping[str, Sequence[MemberRef]]:
        """The members of each group, ordered by member id."""
        return self._related(tenant_id, group_ids, _GROUP_MEMBERS_OF_ONE, _GROUP_MEMBERS)

    @_guarded
    def member_groups(
        self, tenant_id: str, member_ids: Collection[str]
    ) -> Mapping[str, Sequence[MemberRef]]:
        """The groups of each member, ordered by group id."""
        return self._related(tenant_id, member_ids, _GROUPS_OF_ONE_MEMBER, _MEMBER_GROUPS)

    def _related(
        self, tenant_id: str, ids: Collection[str], of_one: Select[Any], of_many: Select[Any]
    ) -> dict[str, list[MemberRef]]:
        """The memberships of some groups or members, as references to the other side.

        One id (a GET, a write's response) takes a statement of its own; a
        page of ids one statement per chunk of ids, bound as one list.
        """
        result: dict[str, list[MemberRef]] = {key: [] for key in ids}
        if len(result) == 1:
            (key,) = result
            rows = self._rows(of_one, {"b_tenant_id": tenant_id, "b_id": key})
            result[key] = [MemberRef(id=other, display=display) for other, display in rows]
            return result
        for chunk in _chunks(ids):
            for key, other, display in self._rows(
                of_many, {"b_tenant_id": tenant_id, "b_ids": chunk}
            ):
                result[key].append(MemberRef(id=other, display=display))
        return result
