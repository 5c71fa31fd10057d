"""Where pbidentity keeps what it owns: the storage protocol and its backends.

:class:`Storage` is the only seam between pbidentity and a database. It speaks
domain values (:mod:`pbidentity.domain`) and resolved queries
(:mod:`pbidentity.query`), never SCIM strings or pydantic models.

Every read and write happens inside a :meth:`Storage.transaction`; leaving the
``with`` block commits, an exception rolls everything back. Every member,
group and tenant row carries a version; a ``replace_*`` call passes the
version it read and fails with :class:`~pbidentity.exceptions.VersionMismatchError`
when the row has moved on (optimistic concurrency). Uniqueness races surface as
:class:`~pbidentity.exceptions.ConflictError`, never as a driver error.

Everything but tenants and token lookup by digest is scoped by tenant id: no
method can read or write across tenants.

Backends: :func:`open_storage` picks one from a URL: ``memory://`` (tests and
experiments), ``sqlite:///path.db`` (the embedded default) and, with the
``postgres`` extra, ``postgresql+psycopg://...``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol
from typing import TypeVar

import attrs

from pbidentity.domain import ApiToken
from pbidentity.domain import Event
from pbidentity.domain import Group
from pbidentity.domain import LinkImport
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRequest
from pbidentity.domain import ScimActivity
from pbidentity.domain import SetupLink
from pbidentity.domain import Tenant
from pbidentity.query import Page
from pbidentity.query import Query

__all__ = [
    "WRITE_METHODS",
    "ActivityStore",
    "EventStore",
    "GroupStore",
    "LinkImportStore",
    "MemberDirectory",
    "MemberSearch",
    "MemberStore",
    "MembershipStore",
    "SamlStore",
    "SetupLinkStore",
    "Storage",
    "TenantStore",
    "TokenStore",
    "Transaction",
    "open_storage",
    "writes",
]


_Method = TypeVar("_Method", bound=Callable[..., object])


def writes(method: _Method) -> _Method:
    """Mark a protocol method as one that changes what is stored.

    :data:`WRITE_METHODS` is read from these marks; a backend refuses each
    such method in a ``write=False`` unit.
    """
    method.__pbidentity_writes__ = True  # type: ignore[attr-defined]
    return method


class TenantStore(Protocol):
    """The tenants: the one concern not scoped by a tenant id."""

    @writes
    def add_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; ``ConflictError(attribute="slug")`` if the slug is taken."""

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant with that id, or ``None``."""

    def find_tenant(self, slug: str) -> Tenant | None:
        """The tenant with that slug (exact match), or ``None``."""

    def list_tenants(self) -> Sequence[Tenant]:
        """Every tenant, ordered by slug."""

    @writes
    def replace_tenant(self, tenant: Tenant, *, expected_version: int) -> None:
        """Overwrite a tenant whose stored version is ``expected_version``.

        ``tenant.version`` is the new version. ``NotFoundError`` if it does not
        exist, ``VersionMismatchError`` if its version differs.
        """


class TokenStore(Protocol):
    """The API tokens a tenant's identity provider authenticates with."""

    @writes
    def add_token(self, token: ApiToken) -> None:
        """Insert a token.

        ``ConflictError(attribute="name")`` if the tenant already has an active
        token of that name.
        """

    def find_token(self, digest: str) -> ApiToken | None:
        """The token with that digest (revoked or not), or ``None``."""

    def find_token_with_tenant(self, digest: str) -> tuple[ApiToken, Tenant] | None:
        """The token with that digest and its tenant, in one lookup, or ``None``.

        Every SCIM request starts with it, so backends answer it with a single
        statement.
        """

    def list_tokens(self, tenant_id: str) -> Sequence[ApiToken]:
        """The tenant's tokens, revoked ones included, oldest first."""

    @writes
    def revoke_token(self, tenant_id: str, token_id: str, when: datetime) -> None:
        """Mark a token revoked; ``NotFoundError`` if the tenant has no such token."""

    @writes
    def touch_token(self, token_id: str, when: datetime) -> None:
        """Record that the token was used at ``when``."""


class MemberStore(Protocol):
    """A tenant's members: their documents, versions and lookups."""

    @writes
    def add_member(self, member: Member) -> None:
        """Insert a member.

        ``ConflictError(attribute="userName")`` if the folded userName is taken
        in the tenant.
        """

    @writes
    def add_members(self, members: Sequence[Member]) -> None:
        """Insert many members in one go (an import, a bulk link): all of them or none.

        ``ConflictError`` (``userName``, ``externalId`` or ``id``) names the
        kind of conflict, not the member.
        """

    def get_member(self, tenant_id: str, member_id: str) -> Member | None:
        """The member, or ``None``."""

    @writes
    def replace_member(
        self, member: Member, *, expected_version: int, previous: Member | None = None
    ) -> None:
        """Overwrite a member whose stored version is ``expected_version``.

        ``member.version`` is the new one. Raises ``NotFoundError``,
        ``VersionMismatchError`` or ``ConflictError(attribute="userName")``.
        ``previous`` is the member as the caller read it at ``expected_version``
        (in this unit or an earlier one): every write moves the version, so
        if the version still matches, that is what is stored, and a backend
        may write only what differs from it.
        """

    @writes
    def replace_members(self, updates: Sequence[tuple[Member, int]]) -> None:
        """Overwrite many members, each paired with the version it must still have stored.

        What :meth:`replace_member` does for each, in a few statements instead
        of one per member (a group change re-decides up to thousands of
        roles), and with the same errors; on an error the transaction must be
        rolled back, as some members may be written.
        """

    @writes
    def delete_member(self, tenant_id: str, member_id: str) -> bool:
        """Delete a member and its memberships; ``False`` if it did not exist."""

    def get_members(self, tenant_id: str, member_ids: Collection[str]) -> Sequence[Member]:
        """The members with those ids that exist, ordered by id."""

    def list_members(
        self, tenant_id: str, *, after: str | None = None, limit: int = 1000
    ) -> Sequence[Member]:
        """Up to ``limit`` members whose id sorts after ``after``, ordered by id.

        Walking a whole tenant this way costs the same per batch at the end
        as at the start (keyset, not offset).
        """

    def members_matching(
        self,
        tenant_id: str,
        *,
        user_name: str | None = None,
        external_id: str | None = None,
        email: str | None = None,
        limit: int = 20,
    ) -> Sequence[Member]:
        """Members an arriving identity could be, ordered by id, at most ``limit``.

        Those whose userName is ``user_name`` or who have an email ``email``
        (both compared case-insensitively, as :func:`~pbidentity.domain.fold`
        does), or whose externalId is ``external_id`` (exactly). ``None``
        matches nothing. Every SCIM create asks, so backends answer with
        indexed lookups.
        """

    def count_active_members(self, tenant_id: str, role: str) -> int:
        """How many active members have that (decided) role; the admin guard asks."""

    def query_members(self, tenant_id: str, query: Query) -> Page[Member]:
        """A page of the tenant's members matching ``query``."""

    def existing_member_ids(self, tenant_id: str, member_ids: Collection[str]) -> set[str]:
        """The subset of ``member_ids`` that are members of the tenant."""


@attrs.frozen(kw_only=True)
class MemberSearch:
    """Which members a directory listing shows, one page at a time, by userName.

    ``prefix`` (compared as :func:`~pbidentity.domain.fold` compares) keeps
    the members whose userName, one of whose emails, or whose displayName,
    givenName or familyName starts with it: a prefix, never a substring, so
    that every backend finds the matches through an index, whatever the
    tenant's size. ``role`` is the decided role, ``active`` the status (a
    member without ``active`` is active, as :attr:`Member.active` says),
    ``scim_managed`` whether the IdP owns the member. ``after`` is the
    userName of the last member of the previous page: the page starts after
    it, so a deep page costs what the first one does.
    """

    prefix: str = ""
    role: str | None = None
    active: bool | None = None
    scim_managed: bool | None = None
    after: str | None = None
    limit: int = 50


class MemberDirectory(Protocol):
    """The members list of an admin page: searched, filtered, paged by userName."""

    def search_members(self, tenant_id: str, search: MemberSearch) -> Sequence[Member]:
        """Up to ``search.limit`` members matching ``search``, ordered by folded userName."""


class GroupStore(Protocol):
    """A tenant's groups."""

    @writes
    def add_group(self, group: Group) -> None:
        """Insert a group.

        ``ConflictError(attribute="displayName")`` if the folded displayName is
        taken in the tenant.
        """

    def get_group(self, tenant_id: str, group_id: str) -> Group | None:
        """The group, or ``None``."""

    @writes
    def replace_group(self, group: Group, *, expected_version: int) -> None:
        """As :meth:`replace_member`, for groups (conflicts on ``displayName``)."""

    @writes
    def delete_group(self, tenant_id: str, group_id: str) -> bool:
        """Delete a group and its memberships; ``False`` if it did not exist."""

    def query_groups(self, tenant_id: str, query: Query) -> Page[Group]:
        """A page of the tenant's groups matching ``query``."""


class MembershipStore(Protocol):
    """Which members are in which groups."""

    @writes
    def add_memberships(
        self, tenant_id: str, group_id: str, member_ids: Iterable[str]
    ) -> list[str]:
        """Add members to a group; members already in it are left as they are.

        Returns the ids that were not in it yet, sorted, so that a repeated
        add (JumpCloud repeats them) does not count as a change.
        """

    @writes
    def remove_memberships(
        self, tenant_id: str, group_id: str, member_ids: Iterable[str] | None
    ) -> int:
        """Remove those members from the group (``None``: every member); returns how many went."""

    def group_members(
        self, tenant_id: str, group_ids: Collection[str]
    ) -> Mapping[str, Sequence[MemberRef]]:
        """The members of each group; every requested id is a key.

        Ordered by member id; ``display`` is the member's displayName, else its
        userName.
        """

    def member_groups(
        self, tenant_id: str, member_ids: Collection[str]
    ) -> Mapping[str, Sequence[MemberRef]]:
        """The groups of each member; every requested id is a key.

        Ordered by group id; ``display`` is the group's displayName.
        """


class EventStore(Protocol):
    """The outbox and audit trail: events written with the change they describe."""

    @writes
    def add_events(self, events: Sequence[Event], *, last: bool = False) -> None:
        """Append events to the outbox and audit trail, in order.

        Written in the transaction of the change they describe, so that they
        commit or vanish with it. The storage assigns each its ``seq``. An
        event of a tenant that does not exist refuses the whole batch
        (:class:`~pbidentity.exceptions.NotFoundError`).

        ``last`` says the unit writes nothing after them: a backend may then
        send them with its commit (PostgreSQL: in the same round trip), and
        a missing tenant fails the commit instead of this call, with the
        same error, keeping nothing of the unit. A statement run after them
        anyway sends them first, refused as without ``last``.
        """

    def pending_events(self, limit: int = 100) -> Sequence[Event]:
        """The oldest undelivered events of every tenant, in ``seq`` order."""

    @writes
    def mark_delivered(self, seqs: Collection[int], when: datetime) -> None:
        """Record that these events were handed to every handler."""

    def list_events(
        self,
        tenant_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        before: int | None = None,
        types: Collection[str] | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> Sequence[Event]:
        """The tenant's events with ``seq`` above ``after``, oldest first (the audit trail).

        The audit page's filters: ``before`` (``seq`` below it), ``types`` (any
        of them), ``actor`` (exactly), ``since``/``until`` (``occurred`` at or
        after, before); ``newest_first`` pages backwards by ``seq``.
        """

    @writes
    def prune_events(self, delivered_before: datetime, *, limit: int = 1000) -> int:
        """Delete delivered events delivered before ``delivered_before``; returns how many.

        Looks at no more than the ``limit`` oldest delivered events (by
        ``seq``), so that one call is one short write; call again while it
        deletes any. Undelivered events (the outbox) are never deleted.
        """


class SamlStore(Protocol):
    """SAML connections and the short-lived state of sign-ins."""

    def saml_connections(self, tenant_id: str) -> Sequence[SamlConnection]:
        """The tenant's SAML connections (at most one per state), active first."""

    @writes
    def add_saml_connection(self, connection: SamlConnection) -> None:
        """Insert a connection; ``ConflictError`` (attribute ``state``) if that state is taken."""

    @writes
    def replace_saml_connection(self, connection: SamlConnection, *, expected_version: int) -> None:
        """Replace a connection (its state may change) if it is still at ``expected_version``.

        A state another connection of the tenant holds is a ``ConflictError``:
        move or delete that one first, in the same transaction.
        """

    @writes
    def delete_saml_connection(self, tenant_id: str, connection_id: str) -> bool:
        """Delete a connection; ``False`` if there was none. Its pending requests go with it."""

    def active_saml_connections(self, idp_entity_id: str) -> Sequence[SamlConnection]:
        """Every tenant's active connection to the IdP with that entity ID.

        The one read across tenants: the validator warns when an IdP and
        certificate are already active for another workspace.
        """

    @writes
    def add_saml_request(self, request: SamlRequest) -> None:
        """Remember an AuthnRequest until its response arrives or it expires."""

    @writes
    def take_saml_request(self, tenant_id: str, request_id: str) -> SamlRequest | None:
        """Remove and return a pending AuthnRequest: each id is answered at most once.

        Concurrent calls with the same id: exactly one gets it.
        """

    @writes
    def remember_assertion(self, tenant_id: str, assertion_id: str, expires: datetime) -> bool:
        """Record a consumed assertion id; ``False`` if it was already recorded (a replay).

        Kept until ``expires`` (the assertion's last valid instant plus the
        clock skew), shared by every app instance on the database.
        """

    def saml_signing_key(self, tenant_id: str) -> str | None:
        """The tenant's key for signing its sign-in request ids; ``None`` before the first."""

    @writes
    def add_saml_signing_key(self, tenant_id: str, key: str) -> str:
        """Keep ``key`` as the tenant's signing key unless it has one; return the key it has.

        Instances that create one at the same moment agree: the first one
        stored wins and every caller gets it. The key never leaves storage
        except to sign and check request ids.
        """

    def saml_sp_keys(self, tenant_id: str) -> str | None:
        """The tenant's SP key pairs (a document of PEM keys and certificates); ``None`` if none.

        pbidentity makes and stores them when a workspace turns on encrypted
        assertions or signed requests and the app provides no keys of its
        own. They never leave storage except to decrypt, sign and publish the
        certificates.
        """

    @writes
    def replace_saml_sp_keys(self, tenant_id: str, document: str, *, expected: str | None) -> bool:
        """Store ``document`` as the tenant's SP keys if they are still ``expected``.

        ``expected=None`` stores the first document (no keys yet). ``False``
        when another instance changed them first: read them again and decide
        again, so that two instances rolling a key over at once cannot lose
        a key that is published.
        """

    @writes
    def add_saml_outcome(
        self, tenant_id: str, code_hash: str, document: str, expires: datetime
    ) -> None:
        """Keep a verified sign-in's outcome under the hash of a one-time code until ``expires``.

        ``ConflictError`` if that hash is taken (a code must be new).
        """

    @writes
    def take_saml_outcome(self, tenant_id: str, code_hash: str, now: datetime) -> str | None:
        """Remove and return the outcome kept under ``code_hash``: each is handed out once.

        ``None`` when there is none, it was taken, or it expired by ``now``.
        Concurrent calls with the same hash: exactly one gets it.
        """

    @writes
    def purge_saml_state(self, now: datetime) -> int:
        """Forget expired AuthnRequests, assertion ids and outcomes; return how many rows went."""


class SetupLinkStore(Protocol):
    """The set-up portal's links: kept so that each opens once and can be revoked."""

    @writes
    def add_setup_link(self, link: SetupLink) -> None:
        """Insert a link; ``NotFoundError`` without its tenant, ``ConflictError`` on its id."""

    def setup_links(self, tenant_id: str) -> Sequence[SetupLink]:
        """The tenant's set-up links, newest first."""

    def get_setup_link(self, tenant_id: str, link_id: str) -> SetupLink | None:
        """One of the tenant's set-up links (``None`` for another tenant's)."""

    @writes
    def open_setup_link(self, tenant_id: str, link_id: str, when: datetime) -> bool:
        """Mark the link opened at ``when``; ``True`` only the first time, unrevoked, unexpired.

        Two browsers opening one link at once: exactly one of them gets ``True``.
        """

    @writes
    def revoke_setup_link(self, tenant_id: str, link_id: str, when: datetime) -> bool:
        """Revoke the link (a session it opened ends too); ``False`` if it was already revoked."""


class LinkImportStore(Protocol):
    """Link imports: a plan kept in chunks between the upload and its batches of apply."""

    @writes
    def add_link_import(self, record: LinkImport) -> None:
        """Insert an import; ``NotFoundError`` without its tenant, ``ConflictError`` on its id."""

    @writes
    def add_link_import_chunks(
        self, tenant_id: str, import_id: str, chunks: Sequence[tuple[str, int, str]]
    ) -> None:
        """Store chunks of the import's plan: (list, position, steps document) each.

        ``NotFoundError`` without the import, ``ConflictError`` on a position taken.
        """

    def link_imports(self, tenant_id: str) -> Sequence[LinkImport]:
        """The tenant's imports, newest first."""

    def get_link_import(self, tenant_id: str, import_id: str) -> LinkImport | None:
        """One of the tenant's imports (``None`` for another tenant's)."""

    def link_import_chunk(
        self, tenant_id: str, import_id: str, list_name: str, position: int
    ) -> tuple[str, str | None] | None:
        """A chunk's steps document and its outcome (``None`` until applied), or ``None``."""

    @writes
    def start_link_import(self, tenant_id: str, import_id: str, when: datetime) -> bool:
        """Record that applying was asked for at ``when``; ``True`` only the first time."""

    @writes
    def claim_link_import_chunk(self, tenant_id: str, import_id: str, position: int) -> bool:
        """Move ``applied`` from ``position`` to ``position + 1``; ``False`` if it is not there.

        The unit that gets ``True`` applies that change chunk and records it;
        of two units claiming one chunk at once, exactly one gets ``True``.
        """

    @writes
    def record_link_import_chunk(
        self,
        tenant_id: str,
        import_id: str,
        position: int,
        *,
        outcome: str,
        result: Mapping[str, int],
        finished: datetime | None,
    ) -> None:
        """Keep a change chunk's outcome and the import's result so far (and its end)."""

    @writes
    def complete_link_import(self, tenant_id: str, import_id: str) -> bool:
        """Mark the import complete, its chunks all stored; ``False`` if there is none."""

    @writes
    def delete_link_import(self, tenant_id: str, import_id: str) -> bool:
        """Delete an import and its chunks; ``False`` if there was none."""

    @writes
    def purge_link_imports(self, now: datetime) -> int:
        """Delete every import (of any tenant) expired by ``now``, with its chunks; how many."""


class ActivityStore(Protocol):
    """The SCIM requests each workspace received: its provisioning activity, bounded."""

    @writes
    def add_scim_activity(self, entries: Sequence[ScimActivity]) -> None:
        """Insert requests (of any tenants) in one statement; ``NotFoundError`` without a tenant."""

    def scim_activity(
        self,
        tenant_id: str,
        *,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
        failures_only: bool = False,
        token_name: str | None = None,
        method: str | None = None,
        status: int | None = None,
    ) -> Sequence[ScimActivity]:
        """The tenant's requests, newest first (by ``at``, then ``id``).

        ``before`` is the ``(at, id)`` of the last request of the previous
        page; ``failures_only`` keeps the statuses of 400 and above;
        ``token_name``, ``method`` and ``status`` must equal.
        """

    @writes
    def prune_scim_activity(
        self, tenant_id: str, *, before: datetime, keep: int, limit: int = 1000
    ) -> int:
        """Delete the tenant's requests older than ``before`` or past its ``keep`` newest.

        Deletes at most ``limit`` of them, oldest first, so that one call is
        one short write; returns how many went; call again while it deletes
        any.
        """


class Transaction(
    TenantStore,
    TokenStore,
    MemberStore,
    GroupStore,
    MembershipStore,
    EventStore,
    SamlStore,
    SetupLinkStore,
    LinkImportStore,
    MemberDirectory,
    ActivityStore,
    Protocol,
):
    """The operations of one unit of work. Obtained from :meth:`Storage.transaction`.

    Composed of one protocol per concern; code that needs one concern only
    can ask for that one. The methods marked :func:`writes` change what is
    stored: in a unit opened with ``write=False`` every backend refuses them
    with :class:`~pbidentity.exceptions.ReadOnlyTransactionError` before
    touching anything.
    """


#: The names of the :class:`Transaction` methods that write (marked :func:`writes`).
WRITE_METHODS = frozenset(
    name
    for name in dir(Transaction)
    if getattr(getattr(Transaction, name), "__pbidentity_writes__", False)
)


class Storage(Protocol):
    """A place to keep tenants, tokens, members, groups and memberships."""

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        """Open a unit of work: commits on exit, rolls back on an exception.

        ``write=False`` promises that the unit only reads: SQLite then takes
        no write lock, so reads never wait for writers (WAL mode). Every
        backend refuses a write method (:data:`WRITE_METHODS`) in such a unit
        with :class:`~pbidentity.exceptions.ReadOnlyTransactionError`, before
        it does anything; the unit stays usable for reads.
        """

    def close(self) -> None:
        """Release connections and files."""


def open_storage(url: str, *, upgrade: bool = False) -> Storage:
    """Open the storage a URL names, creating the schema if it is missing.

    A SQL database at an older schema revision is refused
    (:class:`~pbidentity.exceptions.SchemaVersionError`, "run pbidentity db
    upgrade") unless ``upgrade`` is true: then it is migrated on first use.

    ``memory://`` gives a process-local store; ``sqlite:///relative.db``,
    ``sqlite:////absolute.db`` a SQLite file (WAL mode); with the
    ``postgres`` extra, ``postgresql+psycopg://user@host/db`` PostgreSQL.
    Raises :class:`~pbidentity.exceptions.ConfigurationError` for a URL it
    cannot use, with the reason.
    """
    from pbidentity.exceptions import ConfigurationError

    if url.startswith("memory:"):
        from pbidentity.storage.memory import MemoryStorage

        return MemoryStorage()
    if "://" not in url:
        raise ConfigurationError(
            f"{url!r} is not a database URL; expected e.g. sqlite:///pbidentity.db or memory://"
        )
    from pbidentity.storage.sql import SqlStorage

    return SqlStorage.from_url(url, upgrade=upgrade)
