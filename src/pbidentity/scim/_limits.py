"""What one SCIM request may cost: per-request bounds and per-tenant rate limiting.

:class:`ScimLimits` bounds every request before any storage work: how many
PATCH operations, elements of a multi-valued attribute, group members,
filter terms, characters of a string, levels of JSON nesting. A request over
a bound is refused with a 400 SCIM Error (:class:`LimitExceeded`) whose
detail names the bound and the value sent, so the admin of the IdP (or the
host app, which may raise a bound) knows exactly what to change.

Per-tenant rate limiting is a token bucket per tenant, in this process. Okta
and Entra ID both honour ``429 Too Many Requests`` with an integer
``Retry-After`` (Okta pauses and retries after that many seconds, doubling up
to ten times). A bucket holds ``burst`` requests and refills at ``rate`` per
second; a request that finds it empty is refused with the number of whole
seconds after which one request fits again. Each app instance keeps its own
buckets, so with N instances behind a load balancer a tenant gets up to N
times the rate: set it per instance.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import attrs
from scim2_models import SCIMException

__all__ = ["LimitExceeded", "RateLimit", "RateLimiter", "ScimLimits", "too_large", "too_many"]


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ScimLimits.{attribute.name} must be a positive integer, not {value!r}")


@attrs.frozen(kw_only=True)
class ScimLimits:
    """The bounds every SCIM request is checked against before any work is done.

    Each default is large enough for what Okta, Entra ID, OneLogin and
    JumpCloud send, and small enough that the costliest request the defaults
    allow is answered in a fraction of a second (``nox -s bench -- abuse``
    measures it). Raise one only together with a run of that benchmark.
    """

    #: Operations in one PATCH request, each attribute of an object value
    #: counting as one (a path-less value applies each of its keys as an
    #: operation of its own, and case variants of one name are distinct
    #: keys). IdPs send one operation per changed attribute, or one
    #: path-less value with them all: a few dozen at most.
    patch_operations: int = attrs.field(default=100, validator=_positive)
    #: Elements of one multi-valued attribute (emails, phoneNumbers, roles,
    #: entitlements, ...) in a request body, in one PATCH value, and in the
    #: profile a PATCH results in: a profile grown by many small PATCHes
    #: would otherwise make every later request on it costlier.
    multi_valued_elements: int = attrs.field(default=100, validator=_positive)
    #: Group members named in one request: a POST or PUT ``members`` list, or
    #: every member value of a PATCH counted together. Okta's custom app
    #: integrations PUT the whole group with all its members on every
    #: membership update, and "Push Now" replaces the members with the whole
    #: list, so this bounds the size of a group such an IdP can manage, not
    #: the cost of a change: naming members costs parsing and one read of
    #: the group's members (tens of milliseconds for ten thousand).
    group_members: int = attrs.field(default=10_000, validator=_positive)
    #: Memberships one request changes: the members a POST creates the group
    #: with, or that a PUT, a PATCH ``add``/``remove``/``replace`` of
    #: ``members`` adds and removes. In a group the role policy maps, each
    #: change is a role decision, a write and an event (about 0.3 ms on
    #: SQLite, whose write lock every workspace shares, and up to 1 ms on
    #: PostgreSQL), so 100 keep such a write well within a quarter of a
    #: second. IdPs push large groups in chunks (AWS IAM Identity Center
    #: takes 100 changes a request), and a PUT of a whole group changes only the
    #: members that differ, so a group of any size is built in several
    #: requests. A first PUT of a whole group of more new members than this
    #: is refused with this limit named: raise it for such groups.
    membership_changes: int = attrs.field(default=100, validator=_positive)
    #: Comparisons (``attr op value`` or ``attr pr``) in the filters of one
    #: request: the ``filter`` of a list or ``.search``, or every PATCH path
    #: filter of one PATCH together. IdPs send one or two.
    filter_terms: int = attrs.field(default=50, validator=_positive)
    #: Terms of a list or ``.search`` filter that no index answers: ``co``,
    #: ``sw``, ``ew``, ``ne``, ``gt``/``ge``/``lt``/``le``, ``pr``, ``eq null``
    #: and anything under ``not``. Each is a pass over the tenant's rows (or
    #: over the elements of one attribute, however many terms name it), so
    #: its cost grows with the tenant: IdPs send ``eq`` only.
    filter_scan_terms: int = attrs.field(default=4, validator=_positive)
    #: Nesting of parentheses, ``not`` and ``[...]`` in one filter or path.
    filter_nesting: int = attrs.field(default=8, validator=_positive)
    #: Characters of a ``filter``, ``sortBy`` or PATCH ``path``.
    filter_length: int = attrs.field(default=8192, validator=_positive)
    #: Bytes (UTF-8) of one attribute value, as sent and once folded for
    #: case-insensitive comparison, whichever is longer. Long enough for a
    #: base64 certificate; short enough that every searchable value fits a
    #: database index entry (PostgreSQL's hold 2,704 bytes).
    string_length: int = attrs.field(default=2048, validator=_positive)
    #: Bytes of a user's whole profile as stored (JSON), after a POST, a PUT
    #: or a PATCH: every read, page and later write of the user costs it.
    #: Real profiles are one or two KiB; a page of ``max_results`` users
    #: renders at most that many times this.
    profile_bytes: int = attrs.field(default=8 * 1024, validator=_positive)
    #: Levels of nested JSON objects and lists in a body. A User with its
    #: extensions is five deep; recursion over a deeper document costs
    #: stack, not just time.
    json_depth: int = attrs.field(default=16, validator=_positive)
    #: Names in ``attributes`` or ``excludedAttributes``.
    attribute_names: int = attrs.field(default=100, validator=_positive)
    #: Characters of a ``cursor`` (RFC 9865); the cursors this service
    #: hands out are far shorter.
    cursor_length: int = attrs.field(default=1024, validator=_positive)
    #: The largest ``startIndex`` passed on to the storage: a larger one is
    #: lowered to it (the page is empty either way, as for any index past
    #: the last result), so no integer too large for the database reaches it.
    max_start_index: int = attrs.field(default=2**31 - 1, validator=_positive)


class LimitExceeded(SCIMException):
    """A request over one of the :class:`ScimLimits`: a 400 SCIM Error.

    ``scim_type`` is ``tooMany`` for a count and ``invalidValue`` for a size
    or an integer; the detail names the limit and the value sent.
    """

    status = 400

    def __init__(self, scim_type: str, detail: str) -> None:
        super().__init__(detail=detail)
        self.scim_type = scim_type


def too_many(subject: str, sent: int, noun: str, limit: str, allowed: int) -> LimitExceeded:
    """``subject`` has ``sent`` ``noun``, more than ``ScimLimits.<limit>`` (``allowed``)."""
    return LimitExceeded(
        "tooMany",
        f"{subject} has {sent} {noun}; at most {allowed} are allowed (ScimLimits.{limit}).",
    )


def too_large(subject: str, sent: int, unit: str, limit: str, allowed: int) -> LimitExceeded:
    """``subject`` is ``sent`` ``unit``, over ``ScimLimits.<limit>`` (``allowed``)."""
    return LimitExceeded(
        "invalidValue",
        f"{subject} is {sent} {unit}; at most {allowed} are allowed (ScimLimits.{limit}).",
    )


@attrs.frozen
class RateLimit:
    """``rate`` requests per second per tenant, with bursts of up to ``burst``."""

    rate: float = attrs.field(validator=attrs.validators.gt(0))
    burst: float | None = None

    @property
    def capacity(self) -> float:
        """The bucket size: ``burst``, else one second's worth (at least one request)."""
        return self.burst if self.burst is not None else max(1.0, self.rate)


class RateLimiter:
    """Token buckets keyed by tenant id; thread-safe."""

    def __init__(self, limit: RateLimit, *, now: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._now = now
        self._lock = threading.Lock()
        # tenant id -> (tokens left, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, tenant_id: str) -> int:
        """Take one request from the tenant's bucket: 0 if allowed, else seconds to wait."""
        capacity, rate = self.limit.capacity, self.limit.rate
        with self._lock:
            now = self._now()
            tokens, then = self._buckets.get(tenant_id, (capacity, now))
            tokens = min(capacity, tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[tenant_id] = (tokens - 1.0, now)
                return 0
            self._buckets[tenant_id] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))
