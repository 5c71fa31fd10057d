"""The SCIM 2.0 service: one request value in, one response value out.

This is the framework-agnostic core: it authenticates the bearer token,
finds the tenant, parses the request, runs it against the storage and renders
the response. A read is one read-only transaction. A write is computed in a
read-only transaction and written in a short write transaction with the
version it read, so that no tenant's computation ever holds the write lock
(see ``ScimService._write``). It never touches a socket or a framework
object, and it never lets an exception out: a client mistake is an RFC 7644
Error response, a database outage a 503, and anything unexpected a 500 whose
body carries only an error id (the traceback goes to the log).
"""

from __future__ import annotations

import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
from scim2_models import ConflictException
from scim2_models import ForbiddenException
from scim2_models import InvalidValueException
from scim2_models import NotFoundException
from scim2_models import NotImplementedException
from scim2_models import PreconditionFailedException
from scim2_models import SCIMException
from scim2_models import UnauthorizedException
from scim2_models import UniquenessException

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._clock import new_id
from pbidentity._clock import utc_now
from pbidentity._lifecycle import LifecycleWork
from pbidentity.domain import ApiToken
from pbidentity.domain import Tenant
from pbidentity.exceptions import InputError
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import LinkConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.roles import RoleSet
from pbidentity.scim import _schema
from pbidentity.scim._activity import ActivityConfig
from pbidentity.scim._activity import ActivityRecorder
from pbidentity.scim._activity import Trace
from pbidentity.scim._activity import activity_entry
from pbidentity.scim._calls import _NUL_DETAIL
from pbidentity.scim._calls import _Call
from pbidentity.scim._calls import _Handler
from pbidentity.scim._calls import _json_response
from pbidentity.scim._calls import _WriteHandler
from pbidentity.scim._errors import SCIM_JSON
from pbidentity.scim._errors import MethodNotAllowedException
from pbidentity.scim._errors import ServiceUnavailableException
from pbidentity.scim._errors import TooManyRequestsException
from pbidentity.scim._errors import error_body
from pbidentity.scim._errors import error_response
from pbidentity.scim._groups import _GroupEndpoints
from pbidentity.scim._limits import RateLimit
from pbidentity.scim._limits import RateLimiter
from pbidentity.scim._limits import ScimLimits
from pbidentity.scim._listing import _list_response
from pbidentity.scim._listing import _Listing
from pbidentity.scim._schema import DEFAULT_ROLE_URN
from pbidentity.scim._users import _UserEndpoints
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from pbidentity.tokens import token_digest
from pbidentity.tokens import token_matches

__all__ = ["DEFAULT_ROLE_URN", "ScimConfig", "ScimService"]

log = logging.getLogger("pbidentity.scim")


_VERSION_RETRIES = 5


# Before retry n, a random pause of up to this many seconds times 2**n:
# PATCHes racing on one group would otherwise collide again at once.
_RETRY_PAUSE = 0.002


@attrs.frozen(kw_only=True)
class ScimConfig:
    """What the host app decides about its SCIM service.

    The role extension (``role_urn``) accepts exactly the values of the
    service's :class:`~pbidentity.roles.RoleSet`, case-insensitively; the
    role set is given to the service (or to :class:`~pbidentity.PbIdentity`),
    not here, so that SCIM, the admin and SAML share one.
    """

    role_urn: str = DEFAULT_ROLE_URN
    #: Largest request body accepted; larger ones get 413.
    max_body_bytes: int = 1024 * 1024
    #: Most resources in one page, whatever ``count`` asks for.
    max_results: int = 1000
    #: ``last_used`` of a token is written at most this often, so that reads
    #: stay reads.
    token_touch_interval: timedelta = timedelta(minutes=1)
    #: Seconds a client should wait after a 503.
    retry_after_seconds: int = 5
    #: A group PATCH answers 204 No Content (RFC 7644 §3.5.2), unless the
    #: request asks for ``attributes``/``excludedAttributes`` or this is set:
    #: then 200 with the group and all its members.
    group_patch_returns_resource: bool = False
    #: Requests per second each tenant may send to this app instance (a
    #: burst may go higher); over it, 429 with an integer Retry-After. Off
    #: (``None``) by default.
    rate_limit: RateLimit | None = None
    #: What one request may ask for (operations, elements, members, filter
    #: terms, sizes); over a limit, 400 with a detail naming it.
    limits: ScimLimits = attrs.Factory(ScimLimits)
    #: The provisioning activity each workspace's admin sees (bounds,
    #: bodies, batching); ``None`` records nothing.
    activity: ActivityConfig | None = attrs.Factory(ActivityConfig)


class ScimService(_UserEndpoints, _GroupEndpoints, _Listing):
    """Serve SCIM 2.0 for every tenant of a storage; the bearer token picks the tenant.

    ``roles`` is the app's :class:`~pbidentity.roles.RoleSet` (admin, maker,
    contributor, viewer by default); :class:`~pbidentity.PbIdentity` gives
    the same one to the SCIM service, the admin, the members and SAML.

    This class holds the request's way in (routing, authentication, the two
    steps of a write, errors) and discovery; the endpoints come from its
    bases, one module each: ``_users``, ``_groups`` and ``_listing``, on the
    request machinery of ``_calls``.
    """

    def __init__(
        self,
        storage: Storage,
        config: ScimConfig | None = None,
        *,
        roles: RoleSet | None = None,
        clock: Clock = utc_now,
        new_id: IdFactory = new_id,
    ) -> None:
        self.storage = storage
        self.config = config or ScimConfig()
        #: The app's roles, most privileged first: the role extension's values
        #: and what role decisions choose from.
        self.roles = roles or RoleSet()
        self.clock = clock
        self.new_id = new_id
        self.limits = self.config.limits
        self.users = _schema.user_resource(
            self.config.role_urn, self.roles.names, limits=self.limits
        )
        self.groups = _schema.group_resource(limits=self.limits)
        #: Called after each committed write that recorded events (e.g. an
        #: :class:`~pbidentity.events.EventDispatcher`'s ``deliver_pending``).
        self.after_commit: Callable[[], object] | None = None
        self._extension_urns = tuple(self.users.extensions_urns())
        self._limiter = (
            RateLimiter(self.config.rate_limit) if self.config.rate_limit is not None else None
        )
        #: Records each workspace's SCIM requests (``None`` when
        #: ``config.activity`` is): :meth:`~ActivityRecorder.flush` writes
        #: what this instance still buffers.
        self.activity: ActivityRecorder | None = (
            None
            if self.config.activity is None
            else ActivityRecorder(storage, self.config.activity, clock=clock)
        )

    @property
    def max_body_bytes(self) -> int:
        """The body size cap adapters read up to (``config.max_body_bytes``)."""
        return self.config.max_body_bytes

    def handle(self, request: Request) -> Response:
        """Answer one request, with its ``X-Request-Id``, and record it. Never raises."""
        started = time.perf_counter()
        trace = Trace(request_id=_request_id())
        answered = self._answer(request, trace)
        response = Response(
            status=answered.status,
            headers=(*answered.headers, ("X-Request-Id", trace.request_id)),
            body=answered.body,
        )
        if self.activity is not None and trace.tenant_id is None and response.status != 401:
            # Answered before authentication (a wrong path, a method, the
            # discovery documents): whose it was is worth one lookup, since
            # a base URL typed wrong in the IdP shows exactly so.
            self._identify(request, trace)
        if self.activity is not None and trace.tenant_id is not None:
            try:
                entry = activity_entry(
                    self.activity.config,
                    request,
                    response,
                    trace,
                    at=self.clock(),
                    duration=time.perf_counter() - started,
                    target=_target_of(request.path),
                )
                if entry is not None:
                    self.activity.record(entry)
            except Exception:
                log.exception("recording SCIM request %s failed", trace.request_id)
        return response

    def _identify(self, request: Request, trace: Trace) -> None:
        """Find the workspace (and token) of a request answered without authentication."""
        try:
            secret = _bearer(request)
            with self.storage.transaction(write=False) as tx:
                self._authenticate(tx, secret, trace)
        except Exception:  # noqa: S110 - no token, or not a valid one: nobody to show it to
            pass

    def _answer(self, request: Request, trace: Trace) -> Response:
        try:
            return self._dispatch(request, trace)
        except SCIMException as error:
            return error_response(error)
        except InputError as error:
            # A value the domain refuses (a blank externalId): the client's to fix.
            return error_response(InvalidValueException(detail=f"{error}."))
        except StorageUnavailableError as error:
            log.warning("storage unavailable: %s", error)
            return error_response(
                ServiceUnavailableException(
                    retry_after=self.config.retry_after_seconds,
                    detail="The identity database is unavailable right now; retry later.",
                )
            )
        except Exception:
            error_id = trace.request_id
            log.exception("unexpected error %s in %s %s", error_id, request.method, request.path)
            return Response(
                status=500,
                headers=(("Content-Type", SCIM_JSON),),
                body=error_body(
                    500,
                    f"An unexpected error occurred (error id {error_id}); the details are in "
                    "the server log.",
                ),
            )

    # -- routing -------------------------------------------------------------

    def _dispatch(self, request: Request, trace: Trace) -> Response:
        if "\x00" in request.path or any("\x00" in value for _, value in request.query):
            raise InvalidValueException(detail=_NUL_DETAIL)
        segments = [part for part in request.path.split("/") if part]
        if not segments:
            raise NotFoundException(detail="This is the SCIM base URL; use /Users or /Groups.")
        head = segments[0].lower()
        method = request.method.upper()
        if head in ("serviceproviderconfig", "resourcetypes", "schemas"):
            _allow(method, ("GET",))
            return self._discovery(request, head, segments[1:])
        if head in _ROUTES and len(segments) <= 2:
            tail = segments[1] if len(segments) == 2 else None
            kind = "search" if tail == ".search" else "item" if tail else "collection"
            handlers = _ROUTES[head][kind]
            _allow(method, tuple(handlers))
            handler = handlers[method]
            target = tail if kind == "item" else None
            if isinstance(handler, _WriteHandler):
                kind_name = "user" if head == "users" else "group"
                return self._write(request, handler, target, kind_name, trace)
            return self._read(request, handler, target, trace)
        if head in ("bulk", "me", ".search") and len(segments) == 1:
            return self._read(request, _not_implemented, None, trace)
        raise NotFoundException(detail=f"No endpoint {request.path}; use /Users or /Groups.")

    def _read(
        self, request: Request, handler: _Handler, target: str | None, trace: Trace
    ) -> Response:
        """Serve a read in one read-only transaction, authentication included."""
        secret = _bearer(request)
        with self.storage.transaction(write=False) as tx:
            tenant, token = self._authenticate(tx, secret, trace)
            self._throttle(tenant)
            response = handler(self, _Call(request, tenant, tx, target))
        if self._stale(token):
            # A read never takes the write lock for bookkeeping; last use is
            # written in its own short transaction, at most once a minute, and
            # only if it can be: the read succeeded whatever happens to it.
            try:
                with self.storage.transaction() as tx:
                    tx.touch_token(token.id, self.clock())
            except StorageUnavailableError as error:
                log.info("could not record the use of token %s now: %s", token.name, error)
        return response

    def _write(
        self,
        request: Request,
        handler: _WriteHandler[Any],
        target: str | None,
        kind: str,
        trace: Trace,
    ) -> Response:
        """Serve a write: compute it in a read-only unit, then write it in a short transaction.

        Computation never holds the write lock (on SQLite one lock for the
        whole database, so for every tenant and every SAML sign-in): the
        request is authenticated and throttled, and the resource read and the
        change computed, in a read-only unit, which waits for no writer and
        makes none wait. The write transaction then authenticates again (a
        token revoked or SCIM switched off meanwhile stops the write, and the
        tenant's policy is the current one: one indexed lookup), checks that
        the resource is still at the version the change was computed from,
        writes it with the member lifecycle, and commits. The response is
        rendered after the commit.

        A concurrent writer makes the version check fail; without If-Match the
        request is simply redone, computation included, on fresh data (the
        client asked for the change, not for a particular base version); with
        If-Match it is a 412.
        """
        secret = _bearer(request)
        for attempt in range(_VERSION_RETRIES):
            if attempt:
                time.sleep(random.uniform(0, _RETRY_PAUSE * 2**attempt))  # noqa: S311 - jitter
            try:
                with self.storage.transaction(write=False) as tx:
                    tenant, _ = self._authenticate(tx, secret, trace)
                    if attempt == 0:
                        self._throttle(tenant)
                    prepared = handler.prepare(self, _Call(request, tenant, tx, target))
                with self.storage.transaction() as tx:
                    tenant, token = self._authenticate(tx, secret, trace)
                    if self._stale(token):
                        tx.touch_token(token.id, self.clock())
                    lifecycle = LifecycleWork.open(
                        tx,
                        tenant,
                        roles=self.roles,
                        actor=f"token:{token.name}",
                        clock=self.clock,
                        new_id=self.new_id,
                    )
                    render = handler.commit(
                        self, _Call(request, tenant, tx, target, lifecycle), prepared
                    )
                    events = lifecycle.finish()
            except LinkConflictError as error:
                # Raised inside the unit, so nothing of the request was kept.
                raise UniquenessException(detail=f"{error}.") from None
            except LastAdminError as error:
                raise ConflictException(detail=str(error)) from None
            except VersionMismatchError:
                if request.header("if-match") is not None:
                    raise PreconditionFailedException(
                        detail=f"The {kind} was changed by another request; "
                        "read it again and retry."
                    ) from None
                log.info(
                    "version conflict on %s %s, attempt %d",
                    request.method,
                    request.path,
                    attempt + 1,
                )
            except NotFoundError:
                # A concurrent request deleted a row this unit had read (the
                # resource, or a user a group change names) before it wrote:
                # nothing was kept. Redone on fresh data, the request answers
                # as it would a moment later (404 for a resource that is gone,
                # 400 for a user that is gone), never "the group no longer
                # exists" for a group that does; out of attempts, a 409.
                log.info(
                    "a row was deleted under %s %s, attempt %d",
                    request.method,
                    request.path,
                    attempt + 1,
                )
            else:
                if events and self.after_commit is not None:
                    self._after_commit()
                return render()
        raise ConflictException(
            detail=f"The {kind} is being changed by other requests at the same time; retry."
        )

    def _after_commit(self) -> None:
        assert self.after_commit is not None  # noqa: S101 - checked by the caller
        try:
            self.after_commit()
        except Exception:
            # The change is committed and its events are in the outbox: a
            # failed delivery is retried later and must not fail the request.
            log.exception("delivering events after a SCIM write failed; they stay pending")

    # -- authentication ------------------------------------------------------

    def _authenticate(self, tx: Transaction, secret: str, trace: Trace) -> tuple[Tenant, ApiToken]:
        found = tx.find_token_with_tenant(token_digest(secret))
        if found is None or not token_matches(secret, found[0].digest):
            # No workspace to show it to: an unknown token is only logged.
            raise UnauthorizedException(
                detail="The API token is not valid. Check that it was copied whole, or create "
                "a new one under Integrations."
            )
        token, tenant = found
        # Known from here, refused or not: the workspace's admin sees a
        # revoked token's 401 and a switched-off SCIM's 403.
        trace.tenant_id, trace.token_name = tenant.id, token.name
        if not token.is_active:
            raise UnauthorizedException(
                detail=f"The API token {token.name!r} was revoked; create a new one under "
                "Integrations and update the identity provider."
            )
        if not tenant.scim_enabled:
            raise ForbiddenException(
                detail=f"SCIM provisioning is switched off for workspace {tenant.slug!r}. "
                "Switch it on in Settings > SCIM provisioning, or run: "
                f"pbidentity scim enable --tenant {tenant.slug}"
            )
        return tenant, token

    def _throttle(self, tenant: Tenant) -> None:
        if self._limiter is None:
            return
        wait = self._limiter.acquire(tenant.id)
        if wait:
            rate = self._limiter.limit.rate
            raise TooManyRequestsException(
                retry_after=wait,
                detail=f"Workspace {tenant.slug!r} sends more than {rate:g} requests per "
                f"second; retry in {wait} s.",
            )

    def _stale(self, token: ApiToken) -> bool:
        return (
            token.last_used is None
            or self.clock() - token.last_used >= self.config.token_touch_interval
        )

    def _discovery(self, request: Request, head: str, rest: list[str]) -> Response:
        base = request.base_url.rstrip("/")
        resources = (self.users, self.groups)
        if head == "serviceproviderconfig":
            if rest:
                raise NotFoundException(detail="/ServiceProviderConfig has no sub-resources.")
            return _json_response(
                200,
                _schema.service_provider_config(
                    base,
                    max_results=self.config.max_results,
                    max_payload=self.config.max_body_bytes,
                ),
            )
        if head == "resourcetypes":
            documents = _schema.resource_types_document(resources, base)
        else:
            documents = _schema.schemas_document(resources, base)
        if not rest:
            return _json_response(200, _list_response(documents, len(documents), 1))
        wanted = "/".join(rest).lower()
        for document in documents:
            if wanted in (str(document["id"]).lower(), str(document.get("name", "")).lower()):
                return _json_response(200, document)
        raise NotFoundException(
            detail=f"No {'resource type' if head == 'resourcetypes' else 'schema'} "
            f"{'/'.join(rest)!r}."
        )


def _not_implemented(service: ScimService, call: _Call) -> Response:
    raise NotImplementedException(
        detail=f"{call.request.path} is not supported; use the /Users and /Groups endpoints."
    )


def _nothing_to_prepare(service: ScimService, call: _Call) -> None:
    """The computation of a DELETE: none (the request is authenticated all the same)."""


#: The handler of each route: resource, then collection / item / .search, then method.
_ROUTES: dict[str, dict[str, dict[str, _Handler | _WriteHandler[Any]]]] = {
    "users": {
        "collection": {
            "GET": ScimService._list_users,
            "POST": _WriteHandler(
                ScimService._prepare_create_user, ScimService._commit_create_user
            ),
        },
        "search": {"POST": ScimService._list_users},
        "item": {
            "GET": ScimService._get_user,
            "PUT": _WriteHandler(
                ScimService._prepare_replace_user, ScimService._commit_member_change
            ),
            "PATCH": _WriteHandler(
                ScimService._prepare_patch_user, ScimService._commit_member_change
            ),
            "DELETE": _WriteHandler(_nothing_to_prepare, ScimService._commit_delete_user),
        },
    },
    "groups": {
        "collection": {
            "GET": ScimService._list_groups,
            "POST": _WriteHandler(
                ScimService._prepare_create_group, ScimService._commit_create_group
            ),
        },
        "search": {"POST": ScimService._list_groups},
        "item": {
            "GET": ScimService._get_group,
            "PUT": _WriteHandler(
                ScimService._prepare_replace_group, ScimService._commit_replace_group
            ),
            "PATCH": _WriteHandler(
                ScimService._prepare_patch_group, ScimService._commit_patch_group
            ),
            "DELETE": _WriteHandler(_nothing_to_prepare, ScimService._commit_delete_group),
        },
    },
}


# Request ids: the time, then this process's random prefix and a counter, so
# that ids sort by arrival within an instance and never collide across
# instances, at the cost of one counter step per request.
_INSTANCE = secrets.token_hex(3)
_SEQUENCE = itertools.count()


def _request_id() -> str:
    return f"{time.time_ns():x}{_INSTANCE}{next(_SEQUENCE) & 0xFFFF:04x}"


def _target_of(path: str) -> str | None:
    """The resource id a ``/Users/<id>`` or ``/Groups/<id>`` path names."""
    segments = [part for part in path.split("/") if part]
    if len(segments) == 2 and segments[0].lower() in _ROUTES and segments[1] != ".search":
        return segments[1]
    return None


def _bearer(request: Request) -> str:
    """The token secret of the Authorization header; 401 before any database work."""
    header = request.header("authorization")
    if not header:
        raise UnauthorizedException(
            detail="Send the workspace's SCIM API token as 'Authorization: Bearer <token>'."
        )
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise UnauthorizedException(
            detail="The Authorization header must be 'Bearer <token>' with an API token "
            "created for this workspace."
        )
    return secret


def _allow(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise MethodNotAllowedException(
            allow=allowed, detail=f"{method} is not supported here; use {', '.join(allowed)}."
        )
