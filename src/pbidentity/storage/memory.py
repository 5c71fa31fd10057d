"""A process-local :class:`~pbidentity.storage.Storage` kept in dicts.

For tests, experiments and the property tests' second opinion: it behaves like
the SQL store (same errors, same filter and sort semantics through
:mod:`pbidentity.storage._evaluate`, same JSON round trip of documents) but
keeps nothing across processes. It must not take shortcuts the SQL store
cannot take: anything observable here has to be observable there.

Transactions are serialised by one lock held for the whole ``with`` block, so
a transaction never sees another's uncommitted writes; every write goes
through an undo log that is replayed backwards when the block raises. A
failed call (a conflict, a missing row) checks before it writes, so it leaves
the transaction as it was, as the SQL store's savepoints do.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import MutableMapping
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from typing import Concatenate
from typing import ParamSpec
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
from pbidentity.domain import fold
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import Keyset
from pbidentity.query import Page
from pbidentity.query import Query
from pbidentity.storage import MemberSearch
from pbidentity.storage import _conflicts
from pbidentity.storage._evaluate import GroupView
from pbidentity.storage._evaluate import MemberView
from pbidentity.storage._evaluate import document_value
from pbidentity.storage._evaluate import dump_document
from pbidentity.storage._evaluate import group_display
from pbidentity.storage._evaluate import load_document
from pbidentity.storage._evaluate import matches
from pbidentity.storage._evaluate import reference_display
from pbidentity.storage._evaluate import sort_value
from pbidentity.storage._evaluate import sorted_indexes
from pbidentity.storage._evaluate import utc

__all__ = ["MemoryStorage"]

_K = TypeVar("_K")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_V = TypeVar("_V")

_MISSING: Any = object()
_USER_NAME = USER_FIELDS["username"]
_EXTERNAL_ID = USER_FIELDS["externalid"]
_DISPLAY_NAME = GROUP_FIELDS["displayname"]


@attrs.define
class _TenantData:
    """Everything one tenant owns; nothing here is reachable from another tenant."""

    members: dict[str, Member] = attrs.Factory(dict)
    user_names: dict[str, str] = attrs.Factory(dict)  # fold(userName) -> member id
    external_ids: dict[str, str] = attrs.Factory(dict)  # externalId -> member id
    groups: dict[str, Group] = attrs.Factory(dict)
    group_names: dict[str, str] = attrs.Factory(dict)  # fold(displayName) -> group id
    memberships: dict[tuple[str, str], None] = attrs.Factory(dict)  # (group id, member id)


@attrs.define
class _State:
    tenants: dict[str, Tenant] = attrs.Factory(dict)
    slugs: dict[str, str] = attrs.Factory(dict)
    tokens: dict[str, ApiToken] = attrs.Factory(dict)
    digests: dict[str, str] = attrs.Factory(dict)
    data: dict[str, _TenantData] = attrs.Factory(dict)
    events: dict[int, Event] = attrs.Factory(dict)  # seq -> event, in seq order
    next_seq: list[int] = attrs.Factory(lambda: [1])  # like a SQL sequence: never rolled back
    saml_connections: dict[str, SamlConnection] = attrs.Factory(dict)  # id -> connection
    saml_requests: dict[tuple[str, str], SamlRequest] = attrs.Factory(dict)
    saml_assertions: dict[tuple[str, str], datetime] = attrs.Factory(dict)
    saml_keys: dict[str, str] = attrs.Factory(dict)  # tenant id -> key
    saml_sp_keys: dict[str, str] = attrs.Factory(dict)  # tenant id -> SP key pairs document
    saml_outcomes: dict[tuple[str, str], tuple[str, datetime]] = attrs.Factory(dict)
    setup_links: dict[tuple[str, str], SetupLink] = attrs.Factory(dict)  # (tenant id, id)
    link_imports: dict[tuple[str, str], LinkImport] = attrs.Factory(dict)  # (tenant id, id)
    # (tenant id, import id, list, position) -> (steps, outcome)
    link_import_chunks: dict[tuple[str, str, str, int], tuple[str, str | None]] = attrs.Factory(
        dict
    )
    scim_activity: dict[tuple[str, str], ScimActivity] = attrs.Factory(dict)  # (tenant id, id)


class MemoryStorage:
    """A :class:`~pbidentity.storage.Storage` in process memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._state = _State()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[_MemoryTransaction]:
        """Open a unit of work: commits on exit, rolls back on an exception.

        ``write=False`` units are serialised like the others (the lock is
        cheap here) and refuse writes, as every backend does
        (:class:`~pbidentity.exceptions.ReadOnlyTransactionError`).
        """
        if self._owner == threading.get_ident():
            # The lock is not re-entrant on purpose: a nested transaction
            # would deadlock on SQLite too, so fail loudly instead of hanging.
            raise RuntimeError("a transaction is already open in this thread")
        with self._lock:
            self._owner = threading.get_ident()
            tx = _MemoryTransaction(self._state, writable=write)
            try:
                yield tx
            except BaseException:
                tx._rollback()
                raise
            finally:
                tx._closed = True
                self._owner = None

    def close(self) -> None:
        """Nothing to release."""


def _member_copy(member: Member) -> Member:
    return attrs.evolve(
        member,
        attributes=load_document(dump_document(member.attributes)),
        created=utc(member.created),
        last_modified=utc(member.last_modified),
    )


def _tenant_copy(tenant: Tenant) -> Tenant:
    return attrs.evolve(
        tenant,
        created=utc(tenant.created),
        settings=load_document(dump_document(tenant.settings)),
    )


def _group_copy(group: Group) -> Group:
    return attrs.evolve(
        group,
        attributes=load_document(dump_document(group.attributes)),
        created=utc(group.created),
        last_modified=utc(group.last_modified),
    )


def _folded(value: object) -> str | None:
    return fold(value) if isinstance(value, str) else None


def _searched(member: Member) -> Iterator[str]:
    """The folded values a member search's prefix is compared with (see MemberSearch)."""
    attributes = member.attributes
    name = attributes.get("name")
    names = name if isinstance(name, dict) else {}
    emails = attributes.get("emails")
    for value in (
        attributes.get("userName"),
        attributes.get("displayName"),
        names.get("givenName"),
        names.get("familyName"),
        *(e.get("value") for e in emails or () if isinstance(e, dict)),
    ):
        folded = _folded(value)
        if folded is not None:
            yield folded


def _writing(
    method: Callable[Concatenate[_MemoryTransaction, _P], _R],
) -> Callable[Concatenate[_MemoryTransaction, _P], _R]:
    """A protocol method that writes: refused in a ``write=False`` unit before anything else."""
    name = method.__name__

    @functools.wraps(method)
    def writing(self: _MemoryTransaction, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self._check_writable(name)
        return method(self, *args, **kwargs)

    return writing


class _MemoryTransaction:
    """One unit of work on a :class:`MemoryStorage`.

    See :class:`~pbidentity.storage.Transaction` for what each method promises.
    """

    def __init__(self, state: _State, *, writable: bool = True) -> None:
        self._state = state
        self._writable = writable
        self._undo: list[tuple[MutableMapping[Any, Any], Any, Any]] = []
        self._closed = False

    # Undo log ----------------------------------------------------------------
    def _put(self, mapping: MutableMapping[_K, _V], key: _K, value: _V) -> None:
        self._check_writable()
        self._undo.append((mapping, key, mapping.get(key, _MISSING)))
        mapping[key] = value

    def _pop(self, mapping: MutableMapping[_K, _V], key: _K) -> None:
        self._check_writable()
        if key in mapping:
            self._undo.append((mapping, key, mapping.pop(key)))

    def _rollback(self, to: int = 0) -> None:
        """Undo the writes after the first ``to`` ones (all of them by default)."""
        events = self._state.events
        events_restored = False
        for mapping, key, old in reversed(self._undo[to:]):
            if old is _MISSING:
                mapping.pop(key, None)
            else:
                events_restored = events_restored or mapping is events
                mapping[key] = old
        del self._undo[to:]
        # An undone prune puts events back at the dict's end, but the outbox
        # is read in the dict's order, which must stay ``seq`` order.
        if events_restored:
            ordered = sorted(events.items())
            events.clear()
            events.update(ordered)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the transaction is over")

    def _check_writable(self, method: str = "this call") -> None:
        self._check_open()
        if not self._writable:
            raise _conflicts.read_only(method)

    def _data(self, tenant_id: str) -> _TenantData:
        self._check_open()
        data = self._state.data.get(tenant_id)
        if data is None:
            raise _conflicts.missing("tenant", tenant_id)
        return data

    def _read(self, tenant_id: str) -> _TenantData:
        """A tenant's data for reading: an unknown tenant simply has nothing."""
        self._check_open()
        return self._state.data.get(tenant_id) or _TenantData()

    # Tenants -----------------------------------------------------------------
    @_writing
    def add_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; ``ConflictError(attribute="slug")`` if the slug is taken."""
        self._check_open()
        state = self._state
        if tenant.id in state.tenants:
            raise _conflicts.id_taken("tenant", tenant.id)
        if tenant.slug in state.slugs:
            raise _conflicts.slug_taken(tenant)
        self._put(state.tenants, tenant.id, _tenant_copy(tenant))
        self._put(state.slugs, tenant.slug, tenant.id)
        self._put(state.data, tenant.id, _TenantData())

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant with that id, or ``None``."""
        self._check_open()
        return self._state.tenants.get(tenant_id)

    def find_tenant(self, slug: str) -> Tenant | None:
        """The tenant with that slug (exact match), or ``None``."""
        self._check_open()
        tenant_id = self._state.slugs.get(slug)
        return None if tenant_id is None else self._state.tenants[tenant_id]

    def list_tenants(self) -> Sequence[Tenant]:
        """Every tenant, ordered by slug."""
        self._check_open()
        return sorted(self._state.tenants.values(), key=lambda tenant: tenant.slug)

    @_writing
    def replace_tenant(self, tenant: Tenant, *, expected_version: int) -> None:
        """Overwrite a tenant whose stored version is ``expected_version``."""
        self._check_open()
        state = self._state
        current = state.tenants.get(tenant.id)
        if current is None:
            raise _conflicts.missing("tenant", tenant.id)
        if current.version != expected_version:
            raise _conflicts.moved("tenant", tenant.id, current.version, expected_version)
        if state.slugs.get(tenant.slug, tenant.id) != tenant.id:
            raise _conflicts.slug_taken(tenant)
        if current.slug != tenant.slug:
            self._pop(state.slugs, current.slug)
            self._put(state.slugs, tenant.slug, tenant.id)
        self._put(state.tenants, tenant.id, _tenant_copy(tenant))

    # Tokens ------------------------------------------------------------------
    @_writing
    def add_token(self, token: ApiToken) -> None:
        """Insert a token; ``ConflictError(attribute="name")`` for a duplicate active name."""
        self._data(token.tenant_id)
        state = self._state
        if token.id in state.tokens:
            raise _conflicts.id_taken("token", token.id)
        if token.digest in state.digests:
            raise _conflicts.token_digest_taken()
        if token.revoked is None and any(
            other.tenant_id == token.tenant_id and other.name == token.name and other.is_active
            for other in state.tokens.values()
        ):
            raise _conflicts.token_name_taken(token)
        stored = attrs.evolve(
            token,
            created=utc(token.created),
            last_used=None if token.last_used is None else utc(token.last_used),
            revoked=None if token.revoked is None else utc(token.revoked),
        )
        self._put(state.tokens, token.id, stored)
        self._put(state.digests, token.digest, token.id)

    def find_token(self, digest: str) -> ApiToken | None:
        """The token with that digest (revoked or not), or ``None``."""
        self._check_open()
        token_id = self._state.digests.get(digest)
        return None if token_id is None else self._state.tokens[token_id]

    def find_token_with_tenant(self, digest: str) -> tuple[ApiToken, Tenant] | None:
        """The token with that digest and its tenant, or ``None``."""
        token = self.find_token(digest)
        if token is None:
            return None
        tenant = self._state.tenants.get(token.tenant_id)
        return None if tenant is None else (token, tenant)

    def list_tokens(self, tenant_id: str) -> Sequence[ApiToken]:
        """The tenant's tokens, revoked ones included, oldest first (then by id)."""
        self._check_open()
        tokens = [token for token in self._state.tokens.values() if token.tenant_id == tenant_id]
        return sorted(tokens, key=lambda token: (token.created, token.id))

    @_writing
    def revoke_token(self, tenant_id: str, token_id: str, when: datetime) -> None:
        """Mark a token revoked; an already revoked token keeps its first revocation time."""
        self._check_open()
        token = self._state.tokens.get(token_id)
        if token is None or token.tenant_id != tenant_id:
            raise _conflicts.no_such_token(tenant_id, token_id)
        if token.revoked is None:
            self._put(self._state.tokens, token_id, attrs.evolve(token, revoked=utc(when)))

    @_writing
    def touch_token(self, token_id: str, when: datetime) -> None:
        """Record a use at ``when``; never moves ``last_used`` back, ignores unknown ids."""
        self._check_open()
        token = self._state.tokens.get(token_id)
        when = utc(when)
        if token is not None and (token.last_used is None or token.last_used < when):
            self._put(self._state.tokens, token_id, attrs.evolve(token, last_used=when))

    # Members -----------------------------------------------------------------
    @_writing
    def add_member(self, member: Member) -> None:
        """Insert a member; ``ConflictError(attribute="userName")`` if userName is taken."""
        data = self._data(member.tenant_id)
        stored = _member_copy(member)
        if member.id in data.members:
            raise _conflicts.id_taken("member", member.id)
        key = _folded(document_value(_USER_NAME, stored.attributes))
        if key is not None and key in data.user_names:
            raise _conflicts.user_name_taken(stored)
        external_id = _external_id(stored)
        if external_id is not None and external_id in data.external_ids:
            raise _conflicts.external_id_taken(stored)
        self._put(data.members, member.id, stored)
        if key is not None:
            self._put(data.user_names, key, member.id)
        if external_id is not None:
            self._put(data.external_ids, external_id, member.id)

    @_writing
    def add_members(self, members: Sequence[Member]) -> None:
        """Insert many members at once: all of them, or none when one is refused."""
        mark = len(self._undo)
        try:
            for member in members:
                self.add_member(member)
        except BaseException:
            self._rollback(to=mark)
            raise

    def get_member(self, tenant_id: str, member_id: str) -> Member | None:
        """The member, or ``None``."""
        member = self._read(tenant_id).members.get(member_id)
        return None if member is None else _member_copy(member)

    @_writing
    def replace_member(
        self, member: Member, *, expected_version: int, previous: Member | None = None
    ) -> None:
        """Overwrite a member whose stored version is ``expected_version``.

        ``previous`` changes nothing here: a write copies the whole member anyway.
        """
        data = self._read(member.tenant_id)
        current = data.members.get(member.id)
        if current is None:
            raise _conflicts.missing("member", member.id)
        _check_version("member", current.id, current.version, expected_version)
        stored = _member_copy(member)
        key = _folded(document_value(_USER_NAME, stored.attributes))
        if key is not None and data.user_names.get(key, member.id) != member.id:
            raise _conflicts.user_name_taken(stored)
        external_id = _external_id(stored)
        if external_id is not None and data.external_ids.get(external_id, member.id) != member.id:
            raise _conflicts.external_id_taken(stored)
        old_key = _folded(document_value(_USER_NAME, current.attributes))
        if old_key != key:
            if old_key is not None:
                self._pop(data.user_names, old_key)
            if key is not None:
                self._put(data.user_names, key, member.id)
        old_external_id = _external_id(current)
        if old_external_id != external_id:
            if old_external_id is not None:
                self._pop(data.external_ids, old_external_id)
            if external_id is not None:
                self._put(data.external_ids, external_id, member.id)
        self._put(data.members, member.id, stored)

    @_writing
    def replace_members(self, updates: Sequence[tuple[Member, int]]) -> None:
        """Overwrite many members, each paired with the version it must still have stored."""
        for member, expected_version in updates:
            self.replace_member(member, expected_version=expected_version)

    @_writing
    def delete_member(self, tenant_id: str, member_id: str) -> bool:
        """Delete a member and its memberships; ``False`` if it did not exist."""
        data = self._read(tenant_id)
        current = data.members.get(member_id)
        if current is None:
            return False
        for pair in [pair for pair in data.memberships if pair[1] == member_id]:
            self._pop(data.memberships, pair)
        key = _folded(document_value(_USER_NAME, current.attributes))
        if key is not None:
            self._pop(data.user_names, key)
        external_id = _external_id(current)
        if external_id is not None:
            self._pop(data.external_ids, external_id)
        self._pop(data.members, member_id)
        return True

    def get_members(self, tenant_id: str, member_ids: Collection[str]) -> Sequence[Member]:
        """The members with those ids that exist, ordered by id."""
        members = self._read(tenant_id).members
        return [_member_copy(members[i]) for i in sorted(set(member_ids)) if i in members]

    def list_members(
        self, tenant_id: str, *, after: str | None = None, limit: int = 1000
    ) -> Sequence[Member]:
        """Up to ``limit`` members whose id sorts after ``after``, ordered by id."""
        members = self._read(tenant_id).members
        ids = sorted(i for i in members if after is None or i > after)[:limit]
        return [_member_copy(members[i]) for i in ids]

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
        data = self._read(tenant_id)
        found = set()
        if user_name is not None and fold(user_name) in data.user_names:
            found.add(data.user_names[fold(user_name)])
        if external_id is not None and external_id in data.external_ids:
            found.add(data.external_ids[external_id])
        if email is not None:
            key = fold(email)
            for member in data.members.values():
                emails = member.attributes.get("emails") or ()
                if any(isinstance(e, dict) and _folded(e.get("value")) == key for e in emails):
                    found.add(member.id)
        return [_member_copy(data.members[i]) for i in sorted(found)[:limit]]

    def count_active_members(self, tenant_id: str, role: str) -> int:
        """How many active members have that role."""
        members = self._read(tenant_id).members.values()
        return sum(1 for m in members if m.role == role and m.active)

    def query_members(self, tenant_id: str, query: Query) -> Page[Member]:
        """A page of the tenant's members matching ``query``."""
        data = self._read(tenant_id)
        groups_of: dict[str, list[MemberRef]] = {}
        for group_id, member_id in sorted(data.memberships):
            display = group_display(data.groups[group_id])
            groups_of.setdefault(member_id, []).append(MemberRef(id=group_id, display=display))
        views = [
            MemberView(member, groups_of.get(member.id, ())) for member in data.members.values()
        ]
        page = _page(views, query)
        members = [_member_copy(view.member) for view in page.items]
        return Page(items=members, total=page.total, last=page.last, more=page.more)

    def existing_member_ids(self, tenant_id: str, member_ids: Collection[str]) -> set[str]:
        """The subset of ``member_ids`` that are members of the tenant."""
        members = self._read(tenant_id).members
        return {member_id for member_id in member_ids if member_id in members}

    def search_members(self, tenant_id: str, search: MemberSearch) -> Sequence[Member]:
        """Up to ``search.limit`` members matching ``search``, ordered by folded userName."""
        data = self._read(tenant_id)
        prefix = fold(search.prefix)
        after = None if search.after is None else fold(search.after)
        found = []
        for key, member_id in data.user_names.items():
            member = data.members[member_id]
            if (
                (after is None or key > after)
                and (search.role is None or member.role == search.role)
                and (search.active is None or member.active == search.active)
                and (search.scim_managed is None or member.scim_managed == search.scim_managed)
                and (not prefix or any(v.startswith(prefix) for v in _searched(member)))
            ):
                found.append((key, member))
        found.sort(key=lambda pair: pair[0])
        return [_member_copy(member) for _, member in found[: max(search.limit, 0)]]

    # Groups ------------------------------------------------------------------
    @_writing
    def add_group(self, group: Group) -> None:
        """Insert a group; ``ConflictError(attribute="displayName")`` if the name is taken."""
        data = self._data(group.tenant_id)
        stored = _group_copy(group)
        if group.id in data.groups:
            raise _conflicts.id_taken("group", group.id)
        key = _folded(document_value(_DISPLAY_NAME, stored.attributes))
        if key is not None and key in data.group_names:
            raise _conflicts.display_name_taken(stored)
        self._put(data.groups, group.id, stored)
        if key is not None:
            self._put(data.group_names, key, group.id)

    def get_group(self, tenant_id: str, group_id: str) -> Group | None:
        """The group, or ``None``."""
        group = self._read(tenant_id).groups.get(group_id)
        return None if group is None else _group_copy(group)

    @_writing
    def replace_group(self, group: Group, *, expected_version: int) -> None:
        """As :meth:`replace_member`, for groups (conflicts on ``displayName``)."""
        data = self._read(group.tenant_id)
        current = data.groups.get(group.id)
        if current is None:
            raise _conflicts.missing("group", group.id)
        _check_version("group", current.id, current.version, expected_version)
        stored = _group_copy(group)
        key = _folded(document_value(_DISPLAY_NAME, stored.attributes))
        if key is not None and data.group_names.get(key, group.id) != group.id:
            raise _conflicts.display_name_taken(stored)
        old_key = _folded(document_value(_DISPLAY_NAME, current.attributes))
        if old_key != key:
            if old_key is not None:
                self._pop(data.group_names, old_key)
            if key is not None:
                self._put(data.group_names, key, group.id)
        self._put(data.groups, group.id, stored)

    @_writing
    def delete_group(self, tenant_id: str, group_id: str) -> bool:
        """Delete a group and its memberships; ``False`` if it did not exist."""
        data = self._read(tenant_id)
        current = data.groups.get(group_id)
        if current is None:
            return False
        for pair in [pair for pair in data.memberships if pair[0] == group_id]:
            self._pop(data.memberships, pair)
        key = _folded(document_value(_DISPLAY_NAME, current.attributes))
        if key is not None:
            self._pop(data.group_names, key)
        self._pop(data.groups, group_id)
        return True

    def query_groups(self, tenant_id: str, query: Query) -> Page[Group]:
        """A page of the tenant's groups matching ``query``."""
        data = self._read(tenant_id)
        members_of: dict[str, list[MemberRef]] = {}
        for group_id, member_id in sorted(data.memberships, key=lambda pair: (pair[0], pair[1])):
            display = reference_display(data.members[member_id])
            members_of.setdefault(group_id, []).append(MemberRef(id=member_id, display=display))
        views = [GroupView(group, members_of.get(group.id, ())) for group in data.groups.values()]
        page = _page(views, query)
        groups = [_group_copy(view.group) for view in page.items]
        return Page(items=groups, total=page.total, last=page.last, more=page.more)

    # Memberships -------------------------------------------------------------
    @_writing
    def add_memberships(
        self, tenant_id: str, group_id: str, member_ids: Iterable[str]
    ) -> list[str]:
        """Add members to a group; returns the ids that were not in it yet, sorted.

        ``NotFoundError`` if the group or one of the members is not the tenant's.
        """
        data = self._read(tenant_id)
        wanted = sorted(set(member_ids))
        if not wanted:
            return []
        if group_id not in data.groups:
            raise _conflicts.missing("group", group_id)
        unknown = [member_id for member_id in wanted if member_id not in data.members]
        if unknown:
            raise _conflicts.no_such_members(unknown)
        added: list[str] = []
        for member_id in wanted:
            if (group_id, member_id) not in data.memberships:
                self._put(data.memberships, (group_id, member_id), None)
                added.append(member_id)
        return added

    @_writing
    def remove_memberships(
        self, tenant_id: str, group_id: str, member_ids: Iterable[str] | None
    ) -> int:
        """Remove those members from the group (``None``: every member); returns how many went."""
        data = self._read(tenant_id)
        if member_ids is None:
            pairs = [pair for pair in data.memberships if pair[0] == group_id]
        else:
            pairs = [(group_id, member_id) for member_id in set(member_ids)]
            pairs = [pair for pair in pairs if pair in data.memberships]
        for pair in pairs:
            self._pop(data.memberships, pair)
        return len(pairs)

    def group_members(
        self, tenant_id: str, group_ids: Collection[str]
    ) -> Mapping[str, Sequence[MemberRef]]:
        """The members of each group, ordered by member id."""
        data = self._read(tenant_id)
        result: dict[str, list[MemberRef]] = {group_id: [] for group_id in group_ids}
        for group_id, member_id in sorted(data.memberships, key=lambda pair: pair[1]):
            if group_id in result:
                display = reference_display(data.members[member_id])
                result[group_id].append(MemberRef(id=member_id, display=display))
        return result

    def member_groups(
        self, tenant_id: str, member_ids: Collection[str]
    ) -> Mapping[str, Sequence[MemberRef]]:
        """The groups of each member, ordered by group id."""
        data = self._read(tenant_id)
        result: dict[str, list[MemberRef]] = {member_id: [] for member_id in member_ids}
        for group_id, member_id in sorted(data.memberships):
            if member_id in result:
                display = group_display(data.groups[group_id])
                result[member_id].append(MemberRef(id=group_id, display=display))
        return result

    # Events ------------------------------------------------------------------
    @_writing
    def add_events(self, events: Sequence[Event], *, last: bool = False) -> None:
        """Append events (the outbox and audit trail); their ``seq`` is assigned here.

        ``last`` changes nothing here: there is no round trip to save.
        """
        self._check_writable()
        for event in events:
            self._data(event.tenant_id)  # every tenant first: all or nothing
        for event in events:
            seq = self._state.next_seq[0]
            self._state.next_seq[0] += 1
            stored = attrs.evolve(
                event,
                seq=seq,
                occurred=utc(event.occurred),
                data=load_document(dump_document(event.data)),
                delivered=None,
            )
            self._put(self._state.events, seq, stored)

    def pending_events(self, limit: int = 100) -> Sequence[Event]:
        """The oldest undelivered events of every tenant, in ``seq`` order."""
        self._check_open()
        pending = (e for e in self._state.events.values() if e.delivered is None)
        return [e for _, e in zip(range(limit), pending, strict=False)]

    @_writing
    def mark_delivered(self, seqs: Collection[int], when: datetime) -> None:
        """Record that these events were handed to every handler."""
        self._check_open()
        for seq in seqs:
            event = self._state.events.get(seq)
            if event is not None and event.delivered is None:
                self._put(self._state.events, seq, attrs.evolve(event, delivered=utc(when)))

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
        """The tenant's events with ``seq`` above ``after``, oldest first, filtered."""
        self._check_open()
        wanted = None if types is None else frozenset(types)
        since_utc = None if since is None else utc(since)
        until_utc = None if until is None else utc(until)
        in_order = sorted(self._state.events.items(), reverse=newest_first)
        found = (
            e
            for seq, e in in_order
            if seq > after
            and (before is None or seq < before)
            and e.tenant_id == tenant_id
            and (wanted is None or e.type in wanted)
            and (actor is None or e.actor == actor)
            and (since_utc is None or e.occurred >= since_utc)
            and (until_utc is None or e.occurred < until_utc)
        )
        return [e for _, e in zip(range(limit), found, strict=False)]

    @_writing
    def prune_events(self, delivered_before: datetime, *, limit: int = 1000) -> int:
        """Delete delivered events delivered before ``delivered_before``; returns how many."""
        self._check_writable()
        cutoff = utc(delivered_before)
        delivered = (e for e in self._state.events.values() if e.delivered is not None)
        window = [e for _, e in zip(range(limit), delivered, strict=False)]
        pruned = 0
        for event in window:
            assert event.delivered is not None  # noqa: S101 - chosen for it above
            if event.delivered < cutoff:
                assert event.seq is not None  # noqa: S101 - stored events have one
                self._pop(self._state.events, event.seq)
                pruned += 1
        return pruned

    # SAML --------------------------------------------------------------------
    def saml_connections(self, tenant_id: str) -> Sequence[SamlConnection]:
        """The tenant's SAML connections, active first."""
        self._check_open()
        found = [c for c in self._state.saml_connections.values() if c.tenant_id == tenant_id]
        return sorted(found, key=lambda c: _STATE_ORDER[c.state])

    def _check_state_free(self, connection: SamlConnection) -> None:
        for other in self._state.saml_connections.values():
            if (
                other.tenant_id == connection.tenant_id
                and other.state == connection.state
                and other.id != connection.id
            ):
                raise _conflicts.saml_state_taken(connection)

    @_writing
    def add_saml_connection(self, connection: SamlConnection) -> None:
        """Insert a connection; ``ConflictError`` if the tenant has one in that state."""
        self._data(connection.tenant_id)
        if connection.id in self._state.saml_connections:
            raise _conflicts.id_taken("SAML connection", connection.id)
        self._check_state_free(connection)
        self._put(self._state.saml_connections, connection.id, _saml_copy(connection))

    @_writing
    def replace_saml_connection(self, connection: SamlConnection, *, expected_version: int) -> None:
        """Overwrite a connection whose stored version is ``expected_version``."""
        self._check_open()
        current = self._state.saml_connections.get(connection.id)
        if current is None or current.tenant_id != connection.tenant_id:
            raise _conflicts.missing("SAML connection", connection.id)
        _check_version("SAML connection", connection.id, current.version, expected_version)
        self._check_state_free(connection)
        self._put(self._state.saml_connections, connection.id, _saml_copy(connection))

    @_writing
    def delete_saml_connection(self, tenant_id: str, connection_id: str) -> bool:
        """Delete a connection and its pending requests."""
        self._check_open()
        current = self._state.saml_connections.get(connection_id)
        if current is None or current.tenant_id != tenant_id:
            return False
        self._pop(self._state.saml_connections, connection_id)
        for key, request in list(self._state.saml_requests.items()):
            if request.tenant_id == tenant_id and request.connection_id == connection_id:
                self._pop(self._state.saml_requests, key)
        return True

    def active_saml_connections(self, idp_entity_id: str) -> Sequence[SamlConnection]:
        """Every tenant's active connection to that IdP entity."""
        self._check_open()
        return [
            c
            for c in self._state.saml_connections.values()
            if c.state == "active" and c.idp.entity_id == idp_entity_id
        ]

    @_writing
    def add_saml_request(self, request: SamlRequest) -> None:
        """Remember an AuthnRequest."""
        self._data(request.tenant_id)
        owner = self._state.saml_connections.get(request.connection_id)
        if owner is None or owner.tenant_id != request.tenant_id:
            raise _conflicts.missing("SAML connection", request.connection_id)
        key = (request.tenant_id, request.id)
        if key in self._state.saml_requests:
            raise _conflicts.saml_request_taken(request)
        stored = attrs.evolve(request, created=utc(request.created), expires=utc(request.expires))
        self._put(self._state.saml_requests, key, stored)

    @_writing
    def take_saml_request(self, tenant_id: str, request_id: str) -> SamlRequest | None:
        """Remove and return a pending AuthnRequest."""
        self._check_open()
        key = (tenant_id, request_id)
        found = self._state.saml_requests.get(key)
        if found is not None:
            self._pop(self._state.saml_requests, key)
        return found

    @_writing
    def remember_assertion(self, tenant_id: str, assertion_id: str, expires: datetime) -> bool:
        """Record a consumed assertion id; ``False`` for a replay."""
        self._data(tenant_id)
        key = (tenant_id, assertion_id)
        if key in self._state.saml_assertions:
            return False
        self._put(self._state.saml_assertions, key, utc(expires))
        return True

    def saml_signing_key(self, tenant_id: str) -> str | None:
        """The tenant's request signing key, if it has one."""
        self._check_open()
        return self._state.saml_keys.get(tenant_id)

    @_writing
    def add_saml_signing_key(self, tenant_id: str, key: str) -> str:
        """Keep the key unless the tenant has one; the key it has."""
        self._data(tenant_id)
        if tenant_id not in self._state.saml_keys:
            self._put(self._state.saml_keys, tenant_id, key)
        return self._state.saml_keys[tenant_id]

    def saml_sp_keys(self, tenant_id: str) -> str | None:
        """The tenant's SP key pairs document, if it has one."""
        self._check_open()
        return self._state.saml_sp_keys.get(tenant_id)

    @_writing
    def replace_saml_sp_keys(self, tenant_id: str, document: str, *, expected: str | None) -> bool:
        """Store the document if the stored one is still ``expected``."""
        self._data(tenant_id)
        if self._state.saml_sp_keys.get(tenant_id) != expected:
            return False
        self._put(self._state.saml_sp_keys, tenant_id, document)
        return True

    @_writing
    def add_saml_outcome(
        self, tenant_id: str, code_hash: str, document: str, expires: datetime
    ) -> None:
        """Keep an outcome under a code's hash."""
        self._data(tenant_id)
        key = (tenant_id, code_hash)
        if key in self._state.saml_outcomes:
            raise _conflicts.one_time_code_taken()
        self._put(self._state.saml_outcomes, key, (document, utc(expires)))

    @_writing
    def take_saml_outcome(self, tenant_id: str, code_hash: str, now: datetime) -> str | None:
        """Remove and return an outcome, once."""
        self._check_open()
        key = (tenant_id, code_hash)
        found = self._state.saml_outcomes.get(key)
        if found is None:
            return None
        self._pop(self._state.saml_outcomes, key)
        document, expires = found
        return document if expires > now else None

    @_writing
    def purge_saml_state(self, now: datetime) -> int:
        """Forget expired requests, assertion ids and outcomes."""
        self._check_writable()
        gone = 0
        for key, (_, expires) in list(self._state.saml_outcomes.items()):
            if expires <= now:
                self._pop(self._state.saml_outcomes, key)
                gone += 1
        for key, request in list(self._state.saml_requests.items()):
            if request.expires <= now:
                self._pop(self._state.saml_requests, key)
                gone += 1
        for key, expires in list(self._state.saml_assertions.items()):
            if expires <= now:
                self._pop(self._state.saml_assertions, key)
                gone += 1
        return gone

    @_writing
    def add_setup_link(self, link: SetupLink) -> None:
        """Insert a set-up link."""
        self._data(link.tenant_id)
        key = (link.tenant_id, link.id)
        if key in self._state.setup_links:
            raise _conflicts.id_taken("set-up link", link.id)
        stored = attrs.evolve(
            link,
            created=utc(link.created),
            expires=utc(link.expires),
            opened=utc(link.opened) if link.opened else None,
            revoked=utc(link.revoked) if link.revoked else None,
        )
        self._put(self._state.setup_links, key, stored)

    def setup_links(self, tenant_id: str) -> Sequence[SetupLink]:
        """The tenant's set-up links, newest first."""
        self._check_open()
        found = [link for (owner, _), link in self._state.setup_links.items() if owner == tenant_id]
        found.sort(key=lambda link: link.id)
        found.sort(key=lambda link: link.created, reverse=True)
        return found

    def get_setup_link(self, tenant_id: str, link_id: str) -> SetupLink | None:
        """One of the tenant's set-up links."""
        self._check_open()
        return self._state.setup_links.get((tenant_id, link_id))

    @_writing
    def open_setup_link(self, tenant_id: str, link_id: str, when: datetime) -> bool:
        """Mark the link opened; true only for the first, unrevoked, unexpired opening."""
        self._check_writable()
        link = self._state.setup_links.get((tenant_id, link_id))
        if link is None or link.opened or link.revoked or link.expires <= utc(when):
            return False
        opened = attrs.evolve(link, opened=utc(when))
        self._put(self._state.setup_links, (tenant_id, link_id), opened)
        return True

    @_writing
    def revoke_setup_link(self, tenant_id: str, link_id: str, when: datetime) -> bool:
        """Revoke the link; false if it was revoked already (or is not the tenant's)."""
        self._check_writable()
        link = self._state.setup_links.get((tenant_id, link_id))
        if link is None or link.revoked:
            return False
        revoked = attrs.evolve(link, revoked=utc(when))
        self._put(self._state.setup_links, (tenant_id, link_id), revoked)
        return True

    @_writing
    def add_link_import(self, record: LinkImport) -> None:
        """Insert a link import."""
        self._data(record.tenant_id)
        key = (record.tenant_id, record.id)
        if key in self._state.link_imports:
            raise _conflicts.id_taken("link import", record.id)
        self._put(self._state.link_imports, key, _import_copy(record))

    @_writing
    def add_link_import_chunks(
        self, tenant_id: str, import_id: str, chunks: Sequence[tuple[str, int, str]]
    ) -> None:
        """Store chunks of an import's plan."""
        if (tenant_id, import_id) not in self._state.link_imports:
            raise _conflicts.missing("link import", import_id)
        keys = [(tenant_id, import_id, name, position) for name, position, _ in chunks]
        if len(set(keys)) != len(keys) or any(k in self._state.link_import_chunks for k in keys):
            raise _conflicts.id_taken("link import chunk", import_id)
        for key, (_, _, steps) in zip(keys, chunks, strict=True):
            self._put(self._state.link_import_chunks, key, (steps, None))

    def link_imports(self, tenant_id: str) -> Sequence[LinkImport]:
        """The tenant's imports, newest first."""
        self._check_open()
        found = [
            _import_copy(record)
            for (owner, _), record in self._state.link_imports.items()
            if owner == tenant_id
        ]
        found.sort(key=lambda record: record.id)
        found.sort(key=lambda record: record.created, reverse=True)
        return found

    def get_link_import(self, tenant_id: str, import_id: str) -> LinkImport | None:
        """One of the tenant's imports."""
        self._check_open()
        record = self._state.link_imports.get((tenant_id, import_id))
        return None if record is None else _import_copy(record)

    def link_import_chunk(
        self, tenant_id: str, import_id: str, list_name: str, position: int
    ) -> tuple[str, str | None] | None:
        """A chunk's steps and outcome."""
        self._check_open()
        return self._state.link_import_chunks.get((tenant_id, import_id, list_name, position))

    @_writing
    def start_link_import(self, tenant_id: str, import_id: str, when: datetime) -> bool:
        """Record when applying was asked for; true the first time."""
        record = self._state.link_imports.get((tenant_id, import_id))
        if record is None or record.started is not None:
            return False
        started = attrs.evolve(record, started=utc(when))
        self._put(self._state.link_imports, (tenant_id, import_id), started)
        return True

    @_writing
    def claim_link_import_chunk(self, tenant_id: str, import_id: str, position: int) -> bool:
        """Move ``applied`` past ``position`` if it is there."""
        record = self._state.link_imports.get((tenant_id, import_id))
        if record is None or record.applied != position:
            return False
        claimed = attrs.evolve(record, applied=position + 1)
        self._put(self._state.link_imports, (tenant_id, import_id), claimed)
        return True

    @_writing
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
        """Keep a change chunk's outcome and the import's result."""
        key = (tenant_id, import_id, "changes", position)
        record = self._state.link_imports.get((tenant_id, import_id))
        chunk = self._state.link_import_chunks.get(key)
        if record is None or chunk is None:
            raise _conflicts.missing("link import chunk", f"{import_id}/{position}")
        self._put(self._state.link_import_chunks, key, (chunk[0], outcome))
        updated = attrs.evolve(
            record,
            result=dict(result),
            finished=utc(finished) if finished is not None else record.finished,
        )
        self._put(self._state.link_imports, (tenant_id, import_id), updated)

    @_writing
    def complete_link_import(self, tenant_id: str, import_id: str) -> bool:
        """Mark the import complete."""
        record = self._state.link_imports.get((tenant_id, import_id))
        if record is None:
            return False
        self._put(
            self._state.link_imports, (tenant_id, import_id), attrs.evolve(record, complete=True)
        )
        return True

    @_writing
    def delete_link_import(self, tenant_id: str, import_id: str) -> bool:
        """Delete an import and its chunks."""
        if (tenant_id, import_id) not in self._state.link_imports:
            return False
        for key in [k for k in self._state.link_import_chunks if k[:2] == (tenant_id, import_id)]:
            self._pop(self._state.link_import_chunks, key)
        self._pop(self._state.link_imports, (tenant_id, import_id))
        return True

    @_writing
    def purge_link_imports(self, now: datetime) -> int:
        """Delete every expired import with its chunks."""
        expired = [k for k, r in self._state.link_imports.items() if r.expires <= utc(now)]
        for tenant_id, import_id in expired:
            self.delete_link_import(tenant_id, import_id)
        return len(expired)

    @_writing
    def add_scim_activity(self, entries: Sequence[ScimActivity]) -> None:
        """Insert a batch of requests: all of them or, on a missing tenant or a taken id, none."""
        self._check_writable()
        keys = [(entry.tenant_id, entry.id) for entry in entries]
        for entry in entries:
            self._data(entry.tenant_id)
        if len(set(keys)) != len(keys) or any(key in self._state.scim_activity for key in keys):
            taken = next(
                key
                for i, key in enumerate(keys)
                if key in self._state.scim_activity or key in keys[:i]
            )
            raise _conflicts.id_taken("SCIM request", taken[1])
        for key, entry in zip(keys, entries, strict=True):
            self._put(self._state.scim_activity, key, attrs.evolve(entry, at=utc(entry.at)))

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
        """The tenant's requests, newest first."""
        self._check_open()
        found = [
            entry
            for (owner, _), entry in self._state.scim_activity.items()
            if owner == tenant_id
            and (before is None or (entry.at, entry.id) < (utc(before[0]), before[1]))
            and (not failures_only or entry.status >= 400)
            and (token_name is None or entry.token_name == token_name)
            and (method is None or entry.method == method)
            and (status is None or entry.status == status)
        ]
        found.sort(key=lambda entry: (entry.at, entry.id), reverse=True)
        return found[: max(limit, 0)]

    @_writing
    def prune_scim_activity(
        self, tenant_id: str, *, before: datetime, keep: int, limit: int = 1000
    ) -> int:
        """Delete up to ``limit`` of the tenant's oldest requests past its time or size bound."""
        self._check_writable()
        newest_first = sorted(
            (
                (entry.at, entry.id)
                for (owner, _), entry in self._state.scim_activity.items()
                if owner == tenant_id
            ),
            reverse=True,
        )
        kept = set(newest_first[: max(keep, 0)])
        expired = sorted(key for key in newest_first if key not in kept or key[0] < utc(before))[
            : max(limit, 0)
        ]
        for _, request_id in expired:
            self._pop(self._state.scim_activity, (tenant_id, request_id))
        return len(expired)


def _import_copy(record: LinkImport) -> LinkImport:
    # Fresh mappings in UTC, as the SQL store reads them back: callers never
    # share the stored ones.
    return attrs.evolve(
        record,
        created=utc(record.created),
        expires=utc(record.expires),
        counts=dict(record.counts),
        chunks=dict(record.chunks),
        result=dict(record.result),
        started=utc(record.started) if record.started else None,
        finished=utc(record.finished) if record.finished else None,
    )


_STATE_ORDER = {"active": 0, "pending": 1, "previous": 2}


def _saml_copy(connection: SamlConnection) -> SamlConnection:
    # Through JSON and back, as the SQL store does, so that callers never
    # share mutable mappings with the store.
    return attrs.evolve(
        connection,
        attribute_mapping=dict(connection.attribute_mapping),
        last_attempt=None
        if connection.last_attempt is None
        else json.loads(json.dumps(connection.last_attempt)),
        created=utc(connection.created),
        activated=None if connection.activated is None else utc(connection.activated),
    )


def _check_version(kind: str, resource_id: str, current: int, expected: int) -> None:
    if current != expected:
        raise _conflicts.moved(kind, resource_id, current, expected)


def _external_id(member: Member) -> str | None:
    value = document_value(_EXTERNAL_ID, member.attributes)
    return value if isinstance(value, str) else None


_View = TypeVar("_View", MemberView, GroupView)


def _page(views: Sequence[_View], query: Query) -> Page[_View]:
    """Filter, sort and cut one page, exactly as the SQL store's compiled query does."""
    if query.filter is not None:
        filter_ = query.filter
        views = [view for view in views if matches(filter_, view)]
    ordered = [views[index] for index in sorted_indexes(query.sort, views)]
    total = len(ordered) if query.with_total else -1
    if query.keyset:
        keys = [_keyset(query, view) for view in ordered]
        after = query.after
        if after is not None:
            descending = query.sort is not None and query.sort.descending
            kept = [i for i, key in enumerate(keys) if _beyond(key, after, descending=descending)]
            ordered, keys = [ordered[i] for i in kept], [keys[i] for i in kept]
        size = len(ordered) if query.count is None else min(max(query.count, 0), len(ordered))
        return Page(
            items=ordered[:size],
            total=total,
            last=keys[size - 1] if size else None,
            more=size < len(ordered),
        )
    start = max(query.start_index, 1) - 1
    stop = None if query.count is None else start + max(query.count, 0)
    return Page(items=ordered[start:stop], total=total)


def _keyset(query: Query, view: _View) -> Keyset:
    view_id = view.member.id if isinstance(view, MemberView) else view.group.id
    if query.sort is None:
        return (True, None, view_id)
    value = sort_value(query.sort.field, view)
    return (value is None, value, view_id)


def _beyond(key: Keyset, after: Keyset, *, descending: bool) -> bool:
    """Whether ``key`` comes after ``after`` in the listing's order (as the SQL store orders)."""
    missing, value, key_id = key
    missing_after, value_after, id_after = after
    if missing != missing_after:
        # Missing values come last ascending, first descending.
        return missing if not descending else missing_after
    if not missing and value != value_after:
        return bool(value > value_after) if not descending else bool(value < value_after)
    return key_id > id_after
