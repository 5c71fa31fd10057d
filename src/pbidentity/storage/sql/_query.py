"""Pages of members or groups: offsets, segments, keysets and totals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.sql import Select

from pbidentity.query import Keyset
from pbidentity.query import Query
from pbidentity.storage.sql._compile import _MEMBERS
from pbidentity.storage.sql._compile import _after
from pbidentity.storage.sql._compile import _compile
from pbidentity.storage.sql._compile import _lookup
from pbidentity.storage.sql._compile import _order_by
from pbidentity.storage.sql._compile import _Resource
from pbidentity.storage.sql._compile import _sort_key
from pbidentity.storage.sql._segments import _SEGMENTED_PAGE
from pbidentity.storage.sql._statements import _COUNT_OF
from pbidentity.storage.sql._unit import _Unit


class _Querying(_Unit):
    """Reads a page of a resource matching a query."""

    def _total(self, resource: _Resource, tenant_id: str, where: list[Any], query: Query) -> int:
        """The number of matches: the tenant's counter when nothing filters, else a COUNT."""
        if query.filter is None:
            rows = self._rows(_COUNT_OF, {"b_tenant_id": tenant_id, "b_kind": resource.table.name})
            if rows:
                return int(rows[0][0])
        table = resource.table
        counted = select(func.count()).select_from(table).where(*where)
        return int(self._conn.execute(counted).scalar() or 0)

    def _query(
        self,
        resource: _Resource,
        base: Select[Any],
        tenant_id: str,
        query: Query,
    ) -> tuple[Sequence[Any], int, Keyset | None, bool]:
        if query.keyset:
            return self._keyset_query(resource, base, tenant_id, query)
        table = resource.table
        offset = max(query.start_index, 1) - 1
        count = query.count
        rows: Sequence[Any] = []
        lookup = _lookup(resource, base, query)
        if lookup is not None and (count is None or count > 0):
            statement, params = lookup
            params.update(b_tenant_id=tenant_id, b_offset=offset, b_limit=count)
            rows = self._rows(statement, params)
            if (count is None or len(rows) < count) and (rows or offset == 0):
                return rows, offset + len(rows), None, False
        where = [table.c.tenant_id == tenant_id]
        if query.filter is not None:
            where.append(_compile(query.filter, resource, tenant_id))
        if lookup is None and (count is None or count > 0):
            unordered = query.filter is None and query.sort is None
            if offset and count is not None and unordered and resource is _MEMBERS:
                # The listing IdP imports walk page by page: skip to the
                # segment that holds the offset, then within it (see _SEGMENT).
                values = {"b_tenant_id": tenant_id, "b_offset": offset, "b_limit": count}
                rows = self._rows(_SEGMENTED_PAGE, values)
            else:
                order = _order_by(resource, query.sort)
                if offset:
                    # Skip by ids only (an index scan), then read just the page's
                    # rows: skipping whole rows reads every skipped document.
                    page_ids = select(table.c.id).where(*where).order_by(*order).offset(offset)
                    if count is not None:
                        page_ids = page_ids.limit(count)
                    statement = base.where(
                        table.c.tenant_id == tenant_id, table.c.id.in_(page_ids)
                    ).order_by(*order)
                else:
                    statement = base.where(*where).order_by(*order)
                    if count is not None:
                        statement = statement.limit(count)
                rows = self._conn.execute(statement).all()
            # A short page tells the total without a COUNT, which makes the
            # IdPs' favourite query (userName eq ...) a single statement.
            if (count is None or len(rows) < count) and (rows or offset == 0):
                return rows, offset + len(rows), None, False
        if not query.with_total:
            return rows, -1, None, False
        return rows, self._total(resource, tenant_id, where, query), None, False

    def _keyset_query(
        self, resource: _Resource, base: Select[Any], tenant_id: str, query: Query
    ) -> tuple[Sequence[Any], int, Keyset | None, bool]:
        """A page that starts after a keyset: the same cost at any depth (RFC 9865 cursors)."""
        table = resource.table
        where = [table.c.tenant_id == tenant_id]
        if query.filter is not None:
            where.append(_compile(query.filter, resource, tenant_id))
        total = self._total(resource, tenant_id, where, query) if query.with_total else -1
        if query.after is not None:
            where.append(_after(resource, query.sort, query.after))
        statement = base.where(*where).order_by(*_order_by(resource, query.sort))
        if query.sort is not None:
            missing, key = _sort_key(resource, query.sort)
            statement = statement.add_columns(missing.label("sort_missing"), key.label("sort_key"))
        if query.count is not None:
            # One more than asked: whether it exists says if another page follows.
            statement = statement.limit(max(query.count, 0) + 1)
        rows = self._conn.execute(statement).all()
        more = query.count is not None and len(rows) > query.count
        rows = rows[: query.count] if query.count is not None else rows
        last: Keyset | None = None
        if rows:
            row = rows[-1]
            last = (
                (True, None, row.id)
                if query.sort is None
                else (bool(row.sort_missing), row.sort_key, row.id)
            )
        return rows, total, last, more
