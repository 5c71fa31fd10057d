"""Cursors for RFC 9865 cursor-based pagination: opaque to clients, keysets to pbidentity.

A cursor carries the position of the last resource of a page (its keyset:
whether its sort value is missing, the value, its id), the ``totalResults``
counted when the listing began, and a fingerprint of the query (tenant,
resource type, filter, sort) so that a cursor replayed with other parameters
is refused rather than silently wrong. It is base64url, so it only holds
URL-unreserved characters, as the RFC requires.

Keyset cursors never expire and survive any number of writes: the next page
is "the resources after this position", which is also why a deep page costs
what the first one does. Nothing about them is secret: a forged cursor can
only move the position inside listings the token may read anyway.

The module is public for tools that need a cursor without paging to it (the
scale benchmark starts deep listings this way); the service is its only
other user. The format is versioned: a cursor of another version is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from typing import Any

import orjson
from scim2_models import SCIMException

from pbidentity.query import Keyset

__all__ = ["InvalidCountException", "InvalidCursorException", "decode", "encode", "fingerprint"]

_VERSION = 1


class InvalidCursorException(SCIMException):
    """The cursor is not one this service gave for this query (RFC 9865 ``invalidCursor``)."""

    status = 400
    scim_type = "invalidCursor"
    _default_detail = (
        "The cursor is invalid: send an empty cursor for the first page, then the nextCursor "
        "of the previous page, with the same filter and sort."
    )


class InvalidCountException(SCIMException):
    """A cursor page needs a positive count (RFC 9865 ``invalidCount``)."""

    status = 400
    scim_type = "invalidCount"
    _default_detail = "count must be a positive number with cursor pagination."


def fingerprint(*parts: str | None) -> str:
    """What a cursor is bound to: the tenant, the resource type, the filter and the sort."""
    text = "\x1f".join("" if part is None else part for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(bound_to: str, last: Keyset, total: int) -> str:
    """The nextCursor after a page ending at ``last``."""
    missing, value, resource_id = last
    document = [_VERSION, bound_to, missing, _plain(value), resource_id, total]
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=")


def decode(cursor: str, bound_to: str) -> tuple[Keyset, int]:
    """The keyset and the total a cursor carries; ``InvalidCursorException`` if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, bound, missing, value, resource_id, total = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidCursorException from None
    if (
        version != _VERSION
        or bound != bound_to
        or not isinstance(missing, bool)
        or not isinstance(resource_id, str)
        or not isinstance(total, int)
    ):
        raise InvalidCursorException
    return (missing, _typed(value), resource_id), total


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        try:
            return datetime.fromisoformat(value["t"])
        except (KeyError, TypeError, ValueError):
            raise InvalidCursorException from None
    if isinstance(value, list):
        raise InvalidCursorException
    return value
