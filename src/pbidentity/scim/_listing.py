"""Listing and searching users and groups: GET on a collection and POST .search.

Index paging (startIndex, count) and cursor paging (RFC 9865), filters and
sorting turned into a storage :class:`~pbidentity.query.Query`, and the
ListResponse.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import attrs
from scim2_models import InvalidFilterException
from scim2_models import InvalidSyntaxException
from scim2_models import InvalidValueException

from pbidentity.domain import MemberRef
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import Field
from pbidentity.query import Page
from pbidentity.query import Query
from pbidentity.query import Sort
from pbidentity.query import gather_element_tests
from pbidentity.scim import _filter
from pbidentity.scim import cursor as _cursor
from pbidentity.scim._calls import _Call
from pbidentity.scim._calls import _check_attribute_names
from pbidentity.scim._calls import _Endpoints
from pbidentity.scim._calls import _json_response
from pbidentity.scim._calls import _shown
from pbidentity.scim._limits import too_large
from pbidentity.scim._render import GROUP_URN
from pbidentity.scim._render import LIST_RESPONSE_URN
from pbidentity.scim._render import USER_URN
from pbidentity.scim._render import parse_attribute_list
from pbidentity.scim._render import project
from pbidentity.scim._render import render_group
from pbidentity.scim._render import render_member
from pbidentity.scim._render import wants
from pbidentity.scim.cursor import InvalidCountException
from pbidentity.scim.cursor import InvalidCursorException

if TYPE_CHECKING:
    pass


class _Listing(_Endpoints):
    """The listings of :class:`~pbidentity.scim.ScimService`: users and groups, index or cursor."""

    def _list_users(self, call: _Call) -> Response:
        params = _list_params(call.request, self._search_body(call))
        query, cursor = self._paged(call, params, USER_FIELDS, USER_URN)
        attributes = parse_attribute_list(params.attributes, self._extension_urns)
        excluded = parse_attribute_list(params.excluded, self._extension_urns)
        page = call.tx.query_members(call.tenant.id, query)
        groups: Mapping[str, Sequence[MemberRef]] = (
            call.tx.member_groups(call.tenant.id, [m.id for m in page.items])
            if page.items and wants("groups", attributes, excluded)
            else {}
        )
        base = call.request.base_url
        resources = [
            project(
                render_member(m, base, self.config.role_urn, groups.get(m.id)),
                attributes,
                excluded,
            )
            for m in page.items
        ]
        return _json_response(200, _page_response(resources, page, query, cursor))

    def _list_groups(self, call: _Call) -> Response:
        params = _list_params(call.request, self._search_body(call))
        query, cursor = self._paged(call, params, GROUP_FIELDS, GROUP_URN)
        attributes = parse_attribute_list(params.attributes, ())
        excluded = parse_attribute_list(params.excluded, ())
        page = call.tx.query_groups(call.tenant.id, query)
        members: Mapping[str, Sequence[MemberRef]] | None = (
            call.tx.group_members(call.tenant.id, [g.id for g in page.items])
            if page.items and wants("members", attributes, excluded)
            else None
        )
        base = call.request.base_url
        resources = [
            project(
                render_group(g, base, members.get(g.id) if members is not None else None),
                attributes,
                excluded,
            )
            for g in page.items
        ]
        return _json_response(200, _page_response(resources, page, query, cursor))

    def _query(self, params: _ListParams, fields: Mapping[str, Field], resource_urn: str) -> Query:
        role_urn = self.config.role_urn
        limits = self.limits
        _check_attribute_names("attributes", params.attributes, limits)
        _check_attribute_names("excludedAttributes", params.excluded, limits)
        if params.cursor is not None and len(params.cursor) > limits.cursor_length:
            raise too_large(
                "The cursor",
                len(params.cursor),
                "characters long",
                "cursor_length",
                limits.cursor_length,
            )
        try:
            filter_ = (
                _filter.parse_filter(
                    params.filter,
                    fields,
                    role_urn=role_urn,
                    resource_urn=resource_urn,
                    limits=limits,
                )
                if params.filter is not None and params.filter.strip()
                else None
            )
            sort = (
                Sort(
                    _filter.resolve_sort(
                        params.sort_by,
                        fields,
                        role_urn=role_urn,
                        resource_urn=resource_urn,
                        limits=limits,
                    ),
                    descending=params.descending,
                )
                if params.sort_by
                else None
            )
        except _filter.FilterError as error:
            raise InvalidFilterException(detail=error.detail) from None
        # RFC 7644 §3.4.2.4: a count below 0 is 0 and a startIndex below 1 is
        # 1; a count above the maximum page is that page. A startIndex past
        # max_start_index is lowered to it: no tenant has that many
        # resources, so the page is empty either way, and no integer too
        # large for the database (or for the JSON of the response) goes on.
        count = (
            self.config.max_results
            if params.count is None
            else max(0, min(params.count, self.config.max_results))
        )
        start_index = min(max(1, params.start_index), limits.max_start_index)
        if filter_ is not None:
            filter_ = gather_element_tests(filter_)
        return Query(filter=filter_, sort=sort, start_index=start_index, count=count)

    def _paged(
        self, call: _Call, params: _ListParams, fields: Mapping[str, Field], resource_urn: str
    ) -> tuple[Query, _CursorPage | None]:
        """The storage query of a list, by index or, with a cursor, by keyset (RFC 9865)."""
        query = self._query(params, fields, resource_urn)
        if params.cursor is None:
            return query, None
        if params.index_asked:
            raise InvalidValueException(
                detail="Use either startIndex (index paging) or cursor (cursor paging), not both."
            )
        if params.count is not None and params.count < 1:
            raise InvalidCountException(
                detail=f"count must be between 1 and {self.config.max_results} with cursor "
                "pagination."
            )
        bound_to = _cursor.fingerprint(
            call.tenant.id,
            resource_urn,
            params.filter,
            params.sort_by,
            "descending" if params.descending else "ascending",
        )
        if params.cursor == "":
            return attrs.evolve(query, keyset=True, start_index=1), _CursorPage(bound_to)
        after, total = _cursor.decode(params.cursor, bound_to)
        # The total counted when the listing began travels in the cursor:
        # counting again on every page would make deep pages cost more.
        return (
            attrs.evolve(query, keyset=True, start_index=1, after=after, with_total=False),
            _CursorPage(bound_to, total),
        )


#: Digits kept of an integer parameter: any longer one is far past every
#: bound it is clamped to (a startIndex of 10**40 and one of 10**4000 page the
#: same), and int() of a huge text is quadratic.
_LONGEST_INT = 40


_HUGE_INT: int = int("1" + "0" * _LONGEST_INT)


@attrs.frozen
class _ListParams:
    filter: str | None = None
    sort_by: str | None = None
    descending: bool = False
    start_index: int = 1
    count: int | None = None
    attributes: str | list[str] | None = None
    excluded: str | list[str] | None = None
    #: RFC 9865: ``None`` for index paging, ``""`` for the first cursor page.
    cursor: str | None = None
    index_asked: bool = False


def _cursor_param(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidCursorException(detail="cursor must be a string.")


def _int_param(name: str, value: Any) -> int | None:
    """An integer parameter, any size (the caller clamps it); 400 if it is no integer."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = value.strip() if isinstance(value, str) else ""
    sign = -1 if text[:1] == "-" else 1
    digits = text[1:] if text[:1] in ("+", "-") else text
    if digits.isascii() and digits.isdigit():
        # Any run of digits is an integer, however long: it is clamped, never
        # refused for its size (int() refuses more than 4300 digits, slowly).
        digits = digits.lstrip("0") or "0"
        if len(digits) > _LONGEST_INT:
            return sign * _HUGE_INT
        return sign * int(digits)
    raise InvalidValueException(detail=f"{name} must be an integer, not {_shown(value)}.")


def _sort_order(value: Any) -> bool:
    if value is None or value == "":
        return False
    order = str(value).lower()
    if order not in ("ascending", "descending"):
        raise InvalidValueException(
            detail=f"sortOrder must be 'ascending' or 'descending', not {value!r}."
        )
    return order == "descending"


def _list_params(request: Request, body: Any) -> _ListParams:
    """The query of a list (from the URL) or of a ``.search`` (from its body)."""
    if body is None:
        return _ListParams(
            filter=request.query_value("filter"),
            sort_by=request.query_value("sortBy"),
            descending=_sort_order(request.query_value("sortOrder")),
            start_index=_int_param("startIndex", request.query_value("startIndex")) or 1,
            count=_int_param("count", request.query_value("count")),
            attributes=request.query_value("attributes"),
            excluded=request.query_value("excludedAttributes"),
            cursor=request.query_value("cursor"),
            index_asked=request.query_value("startIndex") is not None,
        )
    if not isinstance(body, dict):
        raise InvalidSyntaxException(
            detail="A search body must be a JSON object (a SearchRequest message)."
        )
    fields = {key.lower(): value for key, value in body.items()}
    for name in ("filter", "sortby", "sortorder"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise InvalidValueException(detail=f"{name} must be a string.")
    for name in ("attributes", "excludedattributes"):
        value = fields.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise InvalidValueException(detail=f"{name} must be a list of attribute names.")
    return _ListParams(
        filter=fields.get("filter"),
        sort_by=fields.get("sortby"),
        descending=_sort_order(fields.get("sortorder")),
        start_index=_int_param("startIndex", fields.get("startindex")) or 1,
        count=_int_param("count", fields.get("count")),
        attributes=fields.get("attributes"),
        excluded=fields.get("excludedattributes"),
        cursor=_cursor_param(fields.get("cursor")),
        index_asked=fields.get("startindex") is not None,
    )


@attrs.frozen
class _CursorPage:
    """A cursor-paged listing: what its cursors are bound to, and the total they carry."""

    bound_to: str
    total: int | None = None


def _page_response(
    resources: Sequence[Any], page: Page[Any], query: Query, cursor: _CursorPage | None
) -> dict[str, Any]:
    """A ListResponse: by index (``startIndex``), or by cursor (``nextCursor``, RFC 9865)."""
    if cursor is None:
        return _list_response(resources, page.total, query.start_index)
    total = page.total if cursor.total is None else cursor.total
    document: dict[str, Any] = {
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": total,
        "itemsPerPage": len(resources),
    }
    if page.more and page.last is not None:
        document["nextCursor"] = _cursor.encode(cursor.bound_to, page.last, total)
    document["Resources"] = list(resources)
    return document


def _list_response(resources: Sequence[Any], total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": total,
        "itemsPerPage": len(resources),
        "startIndex": start_index,
        "Resources": list(resources),
    }
