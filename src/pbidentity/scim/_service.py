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
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from typing import Generic
from typing import TypeVar

import attrs
import orjson
from pydantic import ValidationError
from scim2_models import ConflictException
from scim2_models import Context
from scim2_models import ForbiddenException
from scim2_models import InvalidFilterException
from scim2_models import InvalidPathException
from scim2_models import InvalidSyntaxException
from scim2_models import InvalidValueException
from scim2_models import NotFoundException
from scim2_models import NotImplementedException
from scim2_models import PayloadTooLargeException
from scim2_models import PreconditionFailedException
from scim2_models import SCIMException
from scim2_models import UnauthorizedException
from scim2_models import UniquenessException

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._clock import new_id
from pbidentity._clock import utc_now
from pbidentity._lifecycle import LifecycleWork
from pbidentity._lifecycle import identity_of
from pbidentity.domain import ApiToken
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import InputError
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import LinkConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import Field
from pbidentity.query import Page
from pbidentity.query import Query
from pbidentity.query import Sort
from pbidentity.query import gather_element_tests
from pbidentity.roles import RoleSet
from pbidentity.scim import _filter
from pbidentity.scim import _patch
from pbidentity.scim import _schema
from pbidentity.scim import cursor as _cursor
from pbidentity.scim._activity import ActivityConfig
from pbidentity.scim._activity import ActivityRecorder
from pbidentity.scim._activity import Trace
from pbidentity.scim._activity import activity_entry
from pbidentity.scim._errors import SCIM_JSON
from pbidentity.scim._errors import MethodNotAllowedException
from pbidentity.scim._errors import ServiceUnavailableException
from pbidentity.scim._errors import TooManyRequestsException
from pbidentity.scim._errors import UnsupportedMediaTypeException
from pbidentity.scim._errors import error_body
from pbidentity.scim._errors import error_response
from pbidentity.scim._limits import RateLimit
from pbidentity.scim._limits import RateLimiter
from pbidentity.scim._limits import ScimLimits
from pbidentity.scim._limits import too_large
from pbidentity.scim._limits import too_many
from pbidentity.scim._render import GROUP_URN
from pbidentity.scim._render import LIST_RESPONSE_URN
from pbidentity.scim._render import PATCH_OP_URN
from pbidentity.scim._render import USER_URN
from pbidentity.scim._render import KeyPath
from pbidentity.scim._render import etag
from pbidentity.scim._render import parse_attribute_list
from pbidentity.scim._render import project
from pbidentity.scim._render import render_group
from pbidentity.scim._render import render_member
from pbidentity.scim._render import wants
from pbidentity.scim._schema import DEFAULT_ROLE_URN
from pbidentity.scim.cursor import InvalidCountException
from pbidentity.scim.cursor import InvalidCursorException
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from pbidentity.tokens import token_digest
from pbidentity.tokens import token_matches

__all__ = ["DEFAULT_ROLE_URN", "ScimConfig", "ScimService"]

log = logging.getLogger("pbidentity.scim")

_T = TypeVar("_T")
_JSON_TYPES = ("application/scim+json", "application/json")
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


@attrs.frozen
class _Call:
    """One authenticated SCIM call: the request, its tenant, and the open transaction.

    The transaction is read-only for reads and for a write's computation, and
    the write transaction for a write's commit step.
    """

    request: Request
    tenant: Tenant
    tx: Transaction
    target: str | None
    #: The lifecycle of this unit (a write's commit step only): role
    #: decisions, guard, events.
    lifecycle: LifecycleWork | None = None

    @property
    def life(self) -> LifecycleWork:
        assert self.lifecycle is not None  # noqa: S101 - commit steps always get one
        return self.lifecycle


_Handler = Callable[["ScimService", _Call], Response]
#: A committed write's response, rendered once its transaction has ended.
_Render = Callable[[], Response]
_P = TypeVar("_P")


@attrs.frozen
class _WriteHandler(Generic[_P]):
    """A write in two steps, so that computation never holds the write lock.

    ``prepare`` runs in a read-only unit: it reads the resource (and its
    version) and computes everything costly (parsing, validation, the PATCH,
    a membership difference) into a value. ``commit`` runs in the write
    transaction: it checks that the resource is still at the version read and
    writes the value, with the member lifecycle (role decisions, the admin
    guard, events). See ``ScimService._write``.
    """

    prepare: Callable[[ScimService, _Call], _P]
    commit: Callable[[ScimService, _Call, _P], _Render]


@attrs.frozen
class _Profile:
    """A new user's profile, checked."""

    attributes: dict[str, Any]
    role_attribute: str | None


@attrs.frozen
class _MemberChange:
    """A user's new profile, computed from the member as read at ``base.version``."""

    base: Member
    attributes: dict[str, Any]
    role_attribute: str | None


@attrs.frozen
class _NewGroup:
    """A new group's attributes and members, checked."""

    attributes: dict[str, Any]
    member_ids: list[str]


@attrs.frozen
class _GroupChange:
    """A group's change, computed from the group (and its members) as read at ``base.version``."""

    base: Group
    #: The new attributes; ``None`` leaves them as they are.
    attributes: dict[str, Any] | None
    #: Users to add: exactly those not members at ``base.version``, or, for
    #: plain adds, any (members already in the group stay as they are).
    add: list[str] = attrs.field(factory=list)
    remove: list[str] = attrs.field(factory=list)
    #: The change does not depend on the version read (plain member adds
    #: alone): it is written over the group's version at that time.
    rebase: bool = False


class ScimService:
    """Serve SCIM 2.0 for every tenant of a storage; the bearer token picks the tenant.

    ``roles`` is the app's :class:`~pbidentity.roles.RoleSet` (admin, maker,
    contributor, viewer by default); :class:`~pbidentity.PbIdentity` gives
    the same one to the SCIM service, the admin, the members and SAML.
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

    # -- entry point ---------------------------------------------------------

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

    # -- discovery -----------------------------------------------------------

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

    # -- users ---------------------------------------------------------------

    def _prepare_create_user(self, call: _Call) -> _Profile:
        document = self._user_document(self._json(call.request), call.request.base_url)
        # A user created without "active" is active; saying so in the document
        # keeps filters (active eq true) and the member's state in agreement.
        document.setdefault("active", True)
        attributes, role_attribute = self._checked_profile(call, document, None)
        return _Profile(attributes=attributes, role_attribute=role_attribute)

    def _commit_create_user(self, call: _Call, profile: _Profile) -> _Render:
        attributes, role_attribute = profile.attributes, profile.role_attribute
        # Matched here, not while computing: whom the identity links to depends
        # on the other members, as only the write transaction sees them (a few
        # indexed lookups). The profile itself depends on no stored row.
        step = call.life.link_step(identity_of(attributes))
        if step.action == "conflict":
            raise ConflictException(detail=f"{step.reason}; nothing was changed.")
        if step.action == "create":
            now = self.clock()
            member = Member(
                tenant_id=call.tenant.id,
                id=self.new_id(),
                attributes=attributes,
                role_attribute=role_attribute,
                scim_managed=True,
                created=now,
                last_modified=now,
            )
            try:
                member = call.life.create(member)
            except ConflictError as error:
                raise _uniqueness(error, "user") from None
        else:
            assert step.member_id is not None  # noqa: S101 - every other step names one
            existing = call.tx.get_member(call.tenant.id, step.member_id)
            if existing is None:
                # Deleted by a concurrent request since it was matched: redo
                # the whole unit on fresh data (it will create the user).
                raise NotFoundError(f"member {step.member_id!r} was deleted meanwhile")
            if existing.scim_managed and existing.active:
                # Already provisioned: the IdP must update it, not create it
                # again (Okta's SPEC test expects 409 here).
                raise UniquenessException(
                    detail=f"The user is already provisioned: its {step.matched_by} matches "
                    f"user {existing.id} (userName {existing.user_name!r}); update that user "
                    "instead of creating it again."
                )
            # Linked (a member the app had before provisioning) or reactivated
            # (a deprovisioned one): the same id comes back, with the profile
            # the IdP sent.
            updated = attrs.evolve(
                existing, attributes=attributes, role_attribute=role_attribute, scim_managed=True
            )
            member = self._save_member(call, existing, updated, matched_by=step.matched_by)
        request, version = call.request, member.version

        def render() -> Response:
            doc = render_member(member, request.base_url, self.config.role_urn, None)
            return self._resource_response(request, doc, version, status=201)

        return render

    def _get_user(self, call: _Call) -> Response:
        member = self._current_member(call, check_version=False)
        if _not_modified(call.request, member.version):
            return Response(status=304, headers=(("ETag", etag(member.version)),))
        return self._member_render(call, member)()

    def _prepare_replace_user(self, call: _Call) -> _MemberChange:
        payload = self._json(call.request)
        current = self._current_member(call)
        document = self._user_document(payload, call.request.base_url)
        if "active" not in document:
            # Okta and others PUT what they read back, but a PUT that does not
            # mention "active" must never (re)activate or deactivate anyone.
            document["active"] = current.active
        if not _mentions(payload, self.config.role_urn) and current.role_attribute is not None:
            # A PUT without the role extension says nothing about the role:
            # keep the value the IdP sent before (the role policy uses it).
            document[self.config.role_urn] = {"role": current.role_attribute}
        return self._member_change(call, current, document)

    def _prepare_patch_user(self, call: _Call) -> _MemberChange:
        operations = self._patch_operations(call.request)
        current = self._current_member(call)
        patched = _patch.apply_patch(self._document(current), operations, self.users)
        patched.pop("schemas", None)
        return self._member_change(call, current, patched)

    def _commit_member_change(self, call: _Call, change: _MemberChange) -> _Render:
        """Write a user's new profile over the version it was computed from."""
        # Not read again: the UPDATE only matches the member at the version
        # the change was computed from (what was read then is what is
        # stored, so only the columns that differ are written). One moved
        # since is a version conflict, one deleted since a 404 (as it would
        # be a moment later): one round trip less per write on PostgreSQL.
        current = change.base
        updated = attrs.evolve(
            current,
            attributes=change.attributes,
            role_attribute=change.role_attribute,
            scim_managed=True,
        )
        return self._member_render(call, self._save_member(call, current, updated))

    def _document(self, member: Member) -> dict[str, Any]:
        """The member's canonical document with its role extension, as a client sees it."""
        document = dict(member.attributes)
        if member.role_attribute is not None:
            document[self.config.role_urn] = {"role": member.role_attribute}
        return document

    def _user_document(self, payload: Any, base_url: str) -> dict[str, Any]:
        """The canonical document of a POST or PUT body (role extension included)."""
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(detail="The body must be a JSON object describing a User.")
        document = self.users.normalise(payload)
        document.pop("schemas", None)
        _fill_manager_reference(document, base_url)
        return document

    def _member_change(
        self, call: _Call, current: Member, document: dict[str, Any]
    ) -> _MemberChange:
        """The change that makes ``document`` (canonical, role extension included) the profile.

        An unchanged profile gives an equal member, which ``_save_member`` keeps as it is.
        """
        attributes, role_attribute = self._checked_profile(call, document, current)
        return _MemberChange(base=current, attributes=attributes, role_attribute=role_attribute)

    def _checked_profile(
        self, call: _Call, document: dict[str, Any], current: Member | None
    ) -> tuple[dict[str, Any], str | None]:
        """Check a new profile against the stored one; return (attributes, role attribute).

        The stored document was valid when it was written, so only the
        top-level attributes that differ from it are checked: an Okta PUT that
        echoes the whole profile with one change, or a PATCH of ``active``,
        costs a check of that change, not of the whole profile (a creation
        differs from an empty profile everywhere). Plain values are checked by
        the schema's rules here (see ``_plain_change``); anything else goes
        through scim2-models, with userName, which every User needs.
        """
        before = self._document(current) if current is not None else {}
        changed = {
            key for key in document.keys() | before.keys() if document.get(key) != before.get(key)
        }
        stored = current.attributes if current is not None else {}
        attributes = {key: value for key, value in stored.items() if key in document}
        role = current.role_attribute if current is not None else None
        plain = {key for key in changed if self._plain_change(key, document.get(key))}
        attributes.update({key: document[key] for key in plain if key in document})
        rest = changed - plain
        if rest:
            partial = {key: document[key] for key in rest if key in document}
            partial["userName"] = document.get("userName")
            context = (
                Context.RESOURCE_CREATION_REQUEST
                if current is None
                else Context.RESOURCE_REPLACEMENT_REQUEST
            )
            schemas = [USER_URN, *(urn for urn in self._extension_urns if urn in partial)]
            validated, validated_role = self._validate_user(
                {"schemas": schemas, **partial}, context, call.request.base_url
            )
            attributes.update(validated)
            if self.config.role_urn in changed:
                role = validated_role
        user_name = attributes.get("userName")
        if not isinstance(user_name, str) or not user_name.strip():
            raise InvalidValueException(
                detail="userName is required: it is the unique identifier of the user "
                "(usually the email address)."
            )
        if changed - {"active"}:
            # (De)activation alone is never refused, whatever the size.
            self._check_profile_size(attributes, current)
        return attributes, role

    def _check_profile_size(self, attributes: Mapping[str, Any], current: Member | None) -> None:
        """Refuse a profile that grows past ``profile_bytes`` as stored JSON.

        Every read, listing page and later write of the member costs its
        size. A change that does not grow a profile already over the limit
        (stored before it was lowered) is let through, so that an IdP can
        always trim such a member.
        """
        allowed = self.limits.profile_bytes
        size = len(orjson.dumps(attributes))
        if size <= allowed:
            return
        if current is not None and size <= len(orjson.dumps(current.attributes)):
            return
        raise too_large("The user's profile", size, "bytes as JSON", "profile_bytes", allowed)

    def _commit_delete_user(self, call: _Call, _: None) -> _Render:
        # Nothing to compute: the member is read, and deleted, here.
        current = self._current_member(call)
        # Removed, or only deactivated when the tenant keeps deprovisioned
        # members (their work and memberships stay; a re-assignment brings
        # the same member back).
        call.life.delete(current)
        return _no_content

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

    def _current_member(self, call: _Call, *, check_version: bool = True) -> Member:
        assert call.target is not None  # noqa: S101 - item routes always carry an id
        member = _found(call.tx.get_member(call.tenant.id, call.target), "user", call.target)
        if check_version:
            _check_if_match(call.request, member.version, "user")
        return member

    def _plain_change(self, key: str, value: Any) -> bool:
        """Whether a changed top-level core attribute is plainly of its schema's type.

        Plain means a string or boolean, or a complex attribute (``name``,
        each element of ``emails``) made only of those: for them the schema's
        type, mutability, necessity and, for multi-valued ones, the single
        primary are all there is to check (the rules scim2-models applies,
        from the same schema). References, binaries, dates, extensions and
        the role are left to scim2-models.
        """
        spec = self.users.attribute(self.users.core, key)
        return spec is not None and _plain(spec, value)

    def _save_member(
        self, call: _Call, current: Member, updated: Member, *, matched_by: str | None = "id"
    ) -> Member:
        # An unchanged member keeps its version (and ETag); see LifecycleWork.save.
        try:
            return call.life.save(current, updated, matched_by=matched_by)
        except ConflictError as error:
            raise _uniqueness(error, "user") from None

    def _member_render(self, call: _Call, member: Member) -> _Render:
        """Read what the member's response needs now; render it when called.

        A write calls it after its transaction has ended: rendering is
        computation, which never holds the write lock.
        """
        request = call.request
        attributes, excluded = self._projection(request)
        groups = (
            call.tx.member_groups(call.tenant.id, [member.id])[member.id]
            if wants("groups", attributes, excluded)
            else None
        )

        def render() -> Response:
            doc = render_member(member, request.base_url, self.config.role_urn, groups)
            return self._resource_response(
                request, project(doc, attributes, excluded), member.version
            )

        return render

    def _validate_user(
        self, payload: Any, context: Context, base_url: str
    ) -> tuple[dict[str, Any], str | None]:
        """Check a canonical User document with scim2-models; return (attributes, role)."""
        document = self._validated(payload, self.users, context, base_url, canonical=True)
        for key in ("schemas", "id", "meta", "groups", "password"):
            document.pop(key, None)
        role_block = document.pop(self.config.role_urn, None) or {}
        return document, self._role(role_block.get("role"))

    def _role(self, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # no role sent: the role policy decides, never "admin" by default
        role = self.roles.canonical(str(value))
        if role is None:
            raise InvalidValueException(
                detail=f"role {value!r} is not one of this app's roles: "
                f"{', '.join(self.roles.names)}."
            )
        return role

    # -- groups --------------------------------------------------------------

    def _prepare_create_group(self, call: _Call) -> _NewGroup:
        payload = self._json(call.request)
        attributes, member_ids = self._validate_group(
            payload, Context.RESOURCE_CREATION_REQUEST, call.request.base_url
        )
        member_ids = sorted(set(member_ids or ()))
        self._check_changes(len(member_ids), 0)
        return _NewGroup(attributes=attributes, member_ids=member_ids)

    def _commit_create_group(self, call: _Call, new: _NewGroup) -> _Render:
        now = self.clock()
        group = Group(
            tenant_id=call.tenant.id,
            id=self.new_id(),
            attributes=new.attributes,
            created=now,
            last_modified=now,
        )
        # Checked here, not while computing: a user deleted since then must
        # not be added (the foreign key would refuse it too, less clearly).
        self._check_members_exist(call, new.member_ids)
        try:
            call.tx.add_group(group)
        except ConflictError as error:
            raise _uniqueness(error, "group") from None
        if new.member_ids:
            call.tx.add_memberships(call.tenant.id, group.id, new.member_ids)
        call.life.group_created(group, new.member_ids)
        return self._group_render(call, group, status=201)

    def _get_group(self, call: _Call) -> Response:
        group = self._current_group(call, check_version=False)
        if _not_modified(call.request, group.version):
            return Response(status=304, headers=(("ETag", etag(group.version)),))
        return self._group_render(call, group)()

    def _prepare_replace_group(self, call: _Call) -> _GroupChange:
        payload = self._json(call.request)
        current = self._current_group(call)
        attributes, member_ids = self._validate_group(
            payload, Context.RESOURCE_REPLACEMENT_REQUEST, call.request.base_url
        )
        if member_ids is None:
            # A PUT without "members" leaves them alone: dropping every member
            # because an IdP only meant to rename is the one mistake a group can
            # never recover from.
            return _GroupChange(base=current, attributes=attributes)
        refs = call.tx.group_members(call.tenant.id, [current.id])[current.id]
        add, remove = self._bounded_diff(refs, member_ids)
        return _GroupChange(base=current, attributes=attributes, add=add, remove=remove)

    def _prepare_patch_group(self, call: _Call) -> _GroupChange:
        operations = self._patch_operations(call.request)
        member_ops, other_ops = _split_member_operations(operations)
        current = self._current_group(call)
        attributes = None
        if other_ops:
            patched = _patch.apply_patch(dict(current.attributes), other_ops, self.groups)
            patched.pop("schemas", None)
            patched.pop("members", None)
            attributes, _ = self._validate_group(
                {"schemas": [GROUP_URN], **patched},
                Context.RESOURCE_REPLACEMENT_REQUEST,
                call.request.base_url,
            )
        if not member_ops:
            return _GroupChange(base=current, attributes=attributes)
        named = _named_member_changes(member_ops, self.limits)
        if named is not None:
            # Adds and removes by id (what IdPs send): their cost is that of
            # the ids named, whatever the size of the group. Alone, they need
            # no particular version of the group (an add of a member already
            # in it, or a remove of one not in it, is no change), so
            # concurrent ones on one group do not redo each other; an
            # If-Match still asks for one.
            add = sorted(i for i, stays in named.items() if stays)
            remove = sorted(i for i, stays in named.items() if not stays)
            # Named, not necessarily changed (an add of a member already in
            # the group is none): bounded by what the request could change.
            self._check_changes(len(add), len(remove))
            rebase = attributes is None and call.request.header("if-match") is None
            return _GroupChange(
                base=current, attributes=attributes, add=add, remove=remove, rebase=rebase
            )
        # A replace of the members, or a remove of them all, is applied to the
        # member list with the generic PATCH engine, so every path form
        # behaves exactly as on any attribute, and the difference is written.
        refs = call.tx.group_members(call.tenant.id, [current.id])[current.id]
        document = {"displayName": "-", "members": [{"value": ref.id} for ref in refs]}
        patched = _patch.apply_patch(document, member_ops, self.groups)
        add, remove = self._bounded_diff(refs, _member_ids(patched.get("members") or []))
        return _GroupChange(base=current, attributes=attributes, add=add, remove=remove)

    def _bounded_diff(
        self, refs: Sequence[MemberRef], member_ids: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """The membership difference, refused when it changes more than ``membership_changes``."""
        add, remove = _membership_diff(refs, member_ids)
        self._check_changes(len(add), len(remove))
        return add, remove

    def _check_changes(self, to_add: int, to_remove: int) -> None:
        """Refuse a request that would change more than ``membership_changes`` memberships."""
        if to_add + to_remove > self.limits.membership_changes:
            # Each change costs a role decision and an event: a request that
            # empties a large group must do it in chunks, as it fills one.
            raise too_many(
                "The request",
                to_add + to_remove,
                f"membership changes ({to_add} to add, {to_remove} to remove)",
                "membership_changes",
                self.limits.membership_changes,
            )

    def _commit_replace_group(self, call: _Call, change: _GroupChange) -> _Render:
        return self._group_render(call, self._write_group_change(call, change))

    def _commit_patch_group(self, call: _Call, change: _GroupChange) -> _Render:
        group = self._write_group_change(call, change)
        if self.config.group_patch_returns_resource or _asks_for_attributes(call.request):
            return self._group_render(call, group)
        # RFC 7644 §3.5.2 allows 204; Okta and Entra ID accept it for groups, and
        # rendering every member after each membership change is wasted work.
        version = group.version
        return lambda: Response(status=204, headers=(("ETag", etag(version)),))

    def _write_group_change(self, call: _Call, change: _GroupChange) -> Group:
        """Write a group's new attributes and membership changes over the version they read.

        The membership difference was computed from the members read with
        that version, and every membership change moves the group's version
        (a SCIM change of its members here, a member's deletion in
        ``LifecycleWork.delete``): a group still at that version still has those
        members. Only the users being added are not covered, so they are
        checked here (and by the foreign key).
        """
        current = self._current_group(call, check_version=False)
        if not change.rebase:
            _check_unchanged(current.version, change.base.version, "group", current.id)
        self._check_members_exist(call, change.add)
        removed = change.remove
        if removed:
            # Removes by id may name users who are not members (or no longer
            # are, over a rebased version): only members are removed, and
            # said to be.
            groups = call.tx.member_groups(call.tenant.id, removed)
            removed = [i for i in removed if any(ref.id == current.id for ref in groups[i])]
        if removed:
            call.tx.remove_memberships(call.tenant.id, current.id, removed)
        # The ids that were not members yet: a repeated add is no change.
        added = (
            call.tx.add_memberships(call.tenant.id, current.id, change.add) if change.add else []
        )
        updated = (
            current
            if change.attributes is None
            else attrs.evolve(current, attributes=change.attributes)
        )
        group = self._save_group(call.tx, current, updated, force=bool(added or removed))
        call.life.group_changed(current, group, added=added, removed=removed)
        return group

    def _commit_delete_group(self, call: _Call, _: None) -> _Render:
        # Nothing to compute: the group is read, and deleted, here.
        current = self._current_group(call)
        members = call.tx.group_members(call.tenant.id, [current.id])[current.id]
        call.tx.delete_group(call.tenant.id, current.id)
        call.life.group_deleted(current, [ref.id for ref in members])
        return _no_content

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

    def _current_group(self, call: _Call, *, check_version: bool = True) -> Group:
        assert call.target is not None  # noqa: S101 - item routes always carry an id
        group = _found(call.tx.get_group(call.tenant.id, call.target), "group", call.target)
        if check_version:
            _check_if_match(call.request, group.version, "group")
        return group

    def _group_render(self, call: _Call, group: Group, status: int = 200) -> _Render:
        """As ``_member_render``, for a group."""
        request = call.request
        attributes, excluded = self._projection(request)
        members = (
            call.tx.group_members(call.tenant.id, [group.id])[group.id]
            if wants("members", attributes, excluded)
            else None
        )

        def render() -> Response:
            doc = render_group(group, request.base_url, members)
            return self._resource_response(
                request, project(doc, attributes, excluded), group.version, status=status
            )

        return render

    def _save_group(self, tx: Transaction, current: Group, updated: Group, *, force: bool) -> Group:
        if not force and updated.attributes == current.attributes:
            return current
        updated = attrs.evolve(updated, version=current.version + 1, last_modified=self.clock())
        try:
            tx.replace_group(updated, expected_version=current.version)
        except ConflictError as error:
            raise _uniqueness(error, "group") from None
        return updated

    def _validate_group(
        self, payload: Any, context: Context, base_url: str
    ) -> tuple[dict[str, Any], list[str] | None]:
        """Check a Group body; return (attributes without members, member ids or None if absent).

        The members are checked here, not by scim2-models: a PUT names every
        member of the group (Okta's custom apps send one on each membership
        update), and validating ten thousand member objects through the
        models cost more than half a second; each is a user id and three
        optional strings. The normalisation before still bounds their number
        and sizes.
        """
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(
                detail="The body must be a JSON object describing a Group."
            )
        normalised = self.groups.normalise(payload)
        members = normalised.pop("members", None)
        document = self._validated(normalised, self.groups, context, base_url, canonical=True)
        document.pop("members", None)
        for key in ("schemas", "id", "meta"):
            document.pop(key, None)
        if not document.get("displayName"):
            raise InvalidValueException(detail="displayName is required for a group.")
        if members is None:
            return document, None
        return document, _member_ids(members)

    def _check_members_exist(self, call: _Call, member_ids: Sequence[str]) -> None:
        if not member_ids:
            return
        known = call.tx.existing_member_ids(call.tenant.id, member_ids)
        unknown = sorted(set(member_ids) - known)
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise InvalidValueException(
                detail=f"members: no user with id {shown}{more} in this workspace; "
                "nothing was changed. Provision the users before adding them to a group."
            )

    # -- shared machinery ----------------------------------------------------

    def _search_body(self, call: _Call) -> Any:
        """The SearchRequest body of a POST .search, ``None`` for a GET list."""
        return self._json(call.request) if call.request.method.upper() == "POST" else None

    def _json(self, request: Request) -> Any:
        if request.body_truncated or len(request.body) > self.config.max_body_bytes:
            raise PayloadTooLargeException(
                detail=f"The request body is larger than {self.config.max_body_bytes} bytes."
            )
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type and content_type not in _JSON_TYPES:
            raise UnsupportedMediaTypeException(
                detail=f"Content-Type {content_type!r} is not supported; send "
                "application/scim+json or application/json."
            )
        if not request.body.strip():
            raise InvalidSyntaxException(detail="The request needs a JSON body.")
        try:
            document = orjson.loads(request.body)
        except orjson.JSONDecodeError as error:
            if "depth limit" in error.msg.lower() or "recursion" in error.msg.lower():
                # orjson stops at 1024 levels, before the service's own bound can.
                raise too_large(
                    "The JSON body",
                    _ORJSON_MAX_DEPTH,
                    "levels deep or more",
                    "json_depth",
                    self.limits.json_depth,
                ) from None
            raise InvalidSyntaxException(
                detail=f"The request body is not valid JSON: {error.msg} at line {error.lineno} "
                f"column {error.colno}."
            ) from None
        _check_json_depth(document, self.limits)
        if b"\\u0000" in request.body and _has_nul(document):
            raise InvalidValueException(detail=_NUL_DETAIL)
        return document

    def _validated(
        self,
        payload: Any,
        resource: _schema.ResourceSpec,
        context: Context,
        base_url: str,
        *,
        canonical: bool = False,
    ) -> dict[str, Any]:
        """Validate with scim2-models; ``canonical`` bodies were normalised already."""
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(
                detail=f"The body must be a JSON object describing a {resource.name}."
            )
        try:
            normalised = payload if canonical else resource.normalise(payload)
            _fill_manager_reference(normalised, base_url)
            model = resource.model.model_validate(normalised, scim_ctx=context)
            dumped: dict[str, Any] = model.model_dump(scim_ctx=context)
        except ValidationError as error:
            raise InvalidValueException(detail=_validation_detail(error, resource.name)) from None
        return dumped

    def _patch_operations(self, request: Request) -> list[Mapping[str, Any]]:
        body = self._json(request)
        if not isinstance(body, dict):
            raise InvalidSyntaxException(
                detail="A PATCH body must be a JSON object (a PatchOp message)."
            )
        operations = next((v for k, v in body.items() if k.lower() == "operations"), None)
        schemas = body.get("schemas")
        if schemas is not None and not isinstance(schemas, list):
            raise InvalidSyntaxException(
                detail=f"schemas must be a list containing {PATCH_OP_URN!r}."
            )
        if not isinstance(operations, list) or not operations:
            raise InvalidSyntaxException(
                detail="A PATCH body needs an 'Operations' list with at least one operation."
            )
        limits = self.limits
        for index, operation in enumerate(operations):
            if not isinstance(operation, dict):
                raise InvalidSyntaxException(detail=f"Operations[{index}] must be a JSON object.")
        weight = sum(_operation_weight(operation) for operation in operations)
        if weight > limits.patch_operations:
            counted = (
                " (each attribute of an object value counts as one)"
                if weight != len(operations)
                else ""
            )
            raise too_many(
                "The PATCH",
                weight,
                f"operations{counted}",
                "patch_operations",
                limits.patch_operations,
            )
        if _is_group_path(request.path):
            member_ops, _ = _split_member_operations(operations)
            named = sum(len(_as_list(op.get("value"))) for op in member_ops)
            if named > limits.group_members:
                raise too_many(
                    "The PATCH", named, "member values", "group_members", limits.group_members
                )
        return operations

    def _projection(self, request: Request) -> tuple[list[KeyPath], list[KeyPath]]:
        attributes = request.query_value("attributes")
        excluded = request.query_value("excludedAttributes")
        _check_attribute_names("attributes", attributes, self.limits)
        _check_attribute_names("excludedAttributes", excluded, self.limits)
        return (
            parse_attribute_list(attributes, self._extension_urns),
            parse_attribute_list(excluded, self._extension_urns),
        )

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

    def _resource_response(
        self, request: Request, doc: Mapping[str, Any], version: int, status: int = 200
    ) -> Response:
        headers = [("Content-Type", SCIM_JSON), ("ETag", etag(version))]
        if status == 201:
            headers.append(("Location", str(doc["meta"]["location"])))
        return Response(status=status, headers=tuple(headers), body=_dumps(doc))


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


#: PostgreSQL cannot store U+0000 in text, so no backend accepts it (the same answer everywhere).
_NUL_DETAIL = "The request contains a NUL character (U+0000), which no SCIM value may contain."


def _has_nul(value: Any) -> bool:
    """Whether a parsed JSON value has U+0000 in any string, key or value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


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


# -- request parameters ------------------------------------------------------


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


# -- helpers -----------------------------------------------------------------

#: orjson refuses to parse a document nested deeper than this.
_ORJSON_MAX_DEPTH = 1024
#: Digits kept of an integer parameter: any longer one is far past every
#: bound it is clamped to (a startIndex of 10**40 and one of 10**4000 page the
#: same), and int() of a huge text is quadratic.
_LONGEST_INT = 40
_HUGE_INT: int = int("1" + "0" * _LONGEST_INT)


def _shown(value: Any) -> str:
    """A client value for an error detail, cut short: the detail must stay small."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_json_depth(document: Any, limits: ScimLimits) -> None:
    """Refuse a body nested deeper than ``json_depth``; walks it level by level, not recursively."""
    level = [document] if isinstance(document, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limits.json_depth:
            raise too_large("The JSON body", depth, "levels deep", "json_depth", limits.json_depth)
        below: list[Any] = []
        for container in level:
            children = container.values() if isinstance(container, dict) else container
            below.extend(child for child in children if isinstance(child, dict | list))
        level = below


def _check_attribute_names(
    name: str, value: str | Sequence[str] | None, limits: ScimLimits
) -> None:
    """Refuse an ``attributes``/``excludedAttributes`` list longer than ``attribute_names``."""
    if value is None:
        return
    count = value.count(",") + 1 if isinstance(value, str) else len(value)
    if count > limits.attribute_names:
        raise too_many(name, count, "names", "attribute_names", limits.attribute_names)


def _operation_weight(operation: Mapping[str, Any]) -> int:
    """How many operations one entry of ``Operations`` amounts to.

    An object value (a path-less one, an extension block, a complex
    attribute) is applied attribute by attribute, so each key counts, and
    each key of an extension block inside it too.
    """
    value = next((v for k, v in operation.items() if str(k).lower() == "value"), None)
    if not isinstance(value, dict):
        return 1
    weight = 0
    for key, item in value.items():
        nested = isinstance(item, dict) and str(key)[:4].lower() == "urn:"
        weight += len(item) if nested else 1
    return max(1, weight)


def _is_group_path(path: str) -> bool:
    first = next((part for part in path.split("/") if part), "")
    return first.lower() == "groups"


def _allow(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise MethodNotAllowedException(
            allow=allowed, detail=f"{method} is not supported here; use {', '.join(allowed)}."
        )


def _plain(spec: _schema.AttributeSpec, value: Any, *, element: bool = False) -> bool:
    """Whether ``value`` is plainly of ``spec``'s type (see ``ScimService._plain_change``)."""
    if spec.mutability != "readWrite":
        return False
    if value is None:
        return not spec.required
    if spec.multi_valued and not element:
        # RFC 7643 §2.4: at most one element may be primary.
        return (
            spec.is_complex
            and isinstance(value, list)
            and all(_plain(spec, item, element=True) for item in value)
            and sum(1 for item in value if item.get("primary") is True) <= 1
        )
    if spec.type == "boolean":
        return isinstance(value, bool)
    if spec.type == "string":
        # Canonical values of a sub-attribute ("work", "home") are an open
        # list, as scim2-models' extensible enums treat them; a top-level
        # attribute with canonical values is left to scim2-models.
        return isinstance(value, str) and (element or not spec.canonical_values)
    if spec.type != "complex" or not isinstance(value, dict) or not value:
        return False
    if any(sub.required and sub.name not in value for sub in spec.sub_attributes.values()):
        return False
    return all(
        (sub := spec.sub(name)) is not None
        and not sub.is_complex
        and not sub.multi_valued
        and _plain(sub, item, element=True)
        for name, item in value.items()
    )


def _asks_for_attributes(request: Request) -> bool:
    return (
        request.query_value("attributes") is not None
        or request.query_value("excludedAttributes") is not None
    )


def _found(value: _T | None, kind: str, resource_id: str) -> _T:
    if value is None:
        raise NotFoundException(detail=f"No {kind} with id {resource_id!r} in this workspace.")
    return value


def _etag_matches(header: str, version: int) -> bool:
    """Whether an If-Match / If-None-Match list names the version (weak or strong) or ``*``."""
    current = etag(version)
    return any(
        tag.strip() in ("*", current, current.removeprefix("W/")) for tag in header.split(",")
    )


def _check_if_match(request: Request, version: int, kind: str) -> None:
    header = request.header("if-match")
    if header is None or _etag_matches(header, version):
        return
    raise PreconditionFailedException(
        detail=f"The {kind} has changed: its version is {etag(version)}, the request expected "
        f"{header}. Read it again and retry."
    )


def _check_unchanged(version: int, read: int, kind: str, resource_id: str) -> None:
    """Refuse to write a change computed from version ``read`` over another version."""
    if version != read:
        raise VersionMismatchError(
            f"{kind} {resource_id!r} moved from version {read} to {version} while the change "
            "was computed"
        )


def _membership_diff(
    refs: Sequence[MemberRef], member_ids: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The (added, removed) ids that make a group's members, read as ``refs``, exactly these.

    The caller passes the members as it read them, with the group's version:
    reading them twice could see a concurrent change in between and take a
    member that left meanwhile for one to add.
    """
    wanted, current = set(member_ids), {ref.id for ref in refs}
    return sorted(wanted - current), sorted(current - wanted)


def _no_content() -> Response:
    return Response(status=204)


def _not_modified(request: Request, version: int) -> bool:
    header = request.header("if-none-match")
    return header is not None and _etag_matches(header, version)


def _uniqueness(error: ConflictError, kind: str) -> UniquenessException:
    return UniquenessException(
        detail=f"A {kind} with this {error.attribute} already exists in this workspace: {error}."
        if error.attribute
        else str(error)
    )


def _fill_manager_reference(document: dict[str, Any], base_url: str) -> None:
    """Give an enterprise ``manager`` its ``$ref`` when only the id was sent.

    Entra sets the manager by id alone; scim2-models requires ``$ref``, which
    the service can always derive from the id.
    """
    enterprise = document.get(ENTERPRISE_URN)
    manager = enterprise.get("manager") if isinstance(enterprise, dict) else None
    if isinstance(manager, dict) and manager.get("value") and not manager.get("$ref"):
        manager["$ref"] = f"{base_url}/Users/{manager['value']}"


def _validation_detail(error: ValidationError, kind: str) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(
            str(part) for part in item["loc"] if part not in ("function-after", "function-before")
        )
        problems.append(f"{where or kind}: {item['msg']}")
    return f"The {kind} is not valid: " + "; ".join(problems) + "."


def _mentions(payload: Any, urn: str) -> bool:
    return isinstance(payload, dict) and any(key.lower() == urn.lower() for key in payload)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _member_ids(members: Any) -> list[str]:
    if not isinstance(members, list):
        raise InvalidValueException(
            detail='members must be a list of {"value": "<user id>"} objects.'
        )
    ids: list[str] = []
    for index, member in enumerate(members):
        value = member.get("value") if isinstance(member, Mapping) else None
        if not isinstance(value, str) or not value:
            raise InvalidValueException(
                detail=f"members[{index}] needs a 'value' with the user's id."
            )
        for key in ("display", "$ref", "type"):
            if member.get(key) is not None and not isinstance(member[key], str):
                raise InvalidValueException(detail=f"members[{index}].{key} must be a string.")
        kind = member.get("type")
        if isinstance(kind, str) and kind.lower() == "group":
            raise InvalidValueException(
                detail=f"members[{index}]: nested groups are not supported."
            )
        ids.append(value)
    return ids


def _op_name(operation: Mapping[str, Any]) -> str:
    return str(operation.get("op", "")).lower()


def _targets_members(path: Any) -> bool:
    if not isinstance(path, str):
        return False
    lowered = path.strip().lower()
    if lowered.startswith(GROUP_URN.lower() + ":"):
        lowered = lowered[len(GROUP_URN) + 1 :]
    return lowered == "members" or lowered.startswith(("members[", "members."))


def _split_member_operations(
    operations: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Separate what changes memberships from what changes the group's own attributes.

    A path-less value object carrying ``members`` (Okta, Entra) is split in two
    operations so each half goes where it belongs.
    """
    member_ops: list[Mapping[str, Any]] = []
    other_ops: list[Mapping[str, Any]] = []
    for operation in operations:
        path = operation.get("path")
        value = operation.get("value")
        if _targets_members(path):
            member_ops.append(operation)
        elif (
            path in (None, "")
            and isinstance(value, dict)
            and any(k.lower() == "members" for k in value)
        ):
            rest = {k: v for k, v in value.items() if k.lower() != "members"}
            members = next(v for k, v in value.items() if k.lower() == "members")
            member_ops.append({"op": operation.get("op"), "path": "members", "value": members})
            if rest:
                other_ops.append({**operation, "value": rest})
        else:
            other_ops.append(operation)
    return member_ops, other_ops


def _named_member_changes(
    operations: Sequence[Mapping[str, Any]], limits: ScimLimits
) -> dict[str, bool] | None:
    """Whether each member an add or remove *by id* names ends in the group, in request order.

    ``None`` when an operation replaces the members or removes them all:
    those compare the whole member list (their size is bounded by the
    membership changes they make). Any other operation names members by
    id: an ``add`` of ``members``, a ``remove`` with a value listing them
    (Entra; the id decides, as it does for adds: a ``display`` sent along
    is not compared), or a remove of ``members[value eq "id" or ...]``
    (Okta). The last operation naming an id decides, as applying them in
    order would.

    :raises InvalidFilterException: for any other filter on members: it
        would be tested against every member of a group of any size.
    """
    changes: dict[str, bool] = {}
    generic = False
    for operation in operations:
        op = _op_name(operation)
        path = operation.get("path")
        if _is_plain_member_add(operation):
            changes.update((i, True) for i in _member_ids(_as_list(operation.get("value"))))
        elif op == "remove" and _is_plain_members_path(path) and "value" in operation:
            changes.update((i, False) for i in _member_ids(_as_list(operation.get("value"))))
        elif _is_plain_members_path(path) and op in ("replace", "remove"):
            generic = True
        elif op == "remove" and isinstance(path, str):
            changes.update((i, False) for i in _ids_of_member_filter(path, limits))
        else:
            raise InvalidFilterException(
                detail=f"{op} {_shown(path)}: a filter on members can only name members by id, to "
                'remove them (members[value eq "<id>" or value eq "<id>"]); add or replace '
                "members with a value listing their ids."
            )
    return None if generic else changes


def _is_plain_members_path(path: Any) -> bool:
    return isinstance(path, str) and path.strip().lower() in (
        "members",
        f"{GROUP_URN.lower()}:members",
    )


def _ids_of_member_filter(path: str, limits: ScimLimits) -> list[str]:
    """The ids of ``members[value eq "a" or value eq "b"]``; ``InvalidFilterException`` else."""
    try:
        parsed = _filter.parse_path(path, limits)
    except _filter.PathError as error:
        raise InvalidPathException(detail=f"remove {_shown(path)}: {error.detail}") from None
    ids: list[str] = []
    stack: list[_filter.RawFilter] = [parsed.value_filter] if parsed.value_filter else []
    while stack:
        node = stack.pop()
        if isinstance(node, _filter.RawOr):
            stack.extend((node.right, node.left))
        elif (
            isinstance(node, _filter.RawComparison)
            and node.attribute.lower() == "value"
            and node.op == "eq"
            and isinstance(node.value, str)
            and node.value
        ):
            ids.append(node.value)
        else:
            ids = []
            break
    if not ids or parsed.sub_attribute is not None or parsed.urn is not None:
        raise InvalidFilterException(
            detail=f"remove {_shown(path)}: a filter on members can only name members by id "
            '(members[value eq "<id>" or value eq "<id>"]).'
        )
    return ids


def _is_plain_member_add(operation: Mapping[str, Any]) -> bool:
    path = operation.get("path")
    return (
        _op_name(operation) == "add"
        and isinstance(path, str)
        and path.strip().lower()
        in (
            "members",
            f"{GROUP_URN.lower()}:members",
        )
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


def _dumps(document: Any) -> bytes:
    return orjson.dumps(document)


def _json_response(status: int, document: Any) -> Response:
    return Response(status=status, headers=(("Content-Type", SCIM_JSON),), body=_dumps(document))
