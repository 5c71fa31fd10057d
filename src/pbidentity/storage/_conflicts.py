"""The errors a storage backend raises when it refuses a write, built in one place.

The memory and SQL backends refuse the same writes for the same reasons (a
taken userName, a stale version, a tenant that does not exist); building
their errors here keeps the message and the ``attribute`` that callers map to
a SCIM ``scimType`` the same on every backend.
"""

from __future__ import annotations

from collections.abc import Iterable

from pbidentity.domain import ApiToken
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRequest
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import ReadOnlyTransactionError
from pbidentity.exceptions import VersionMismatchError


def missing(kind: str, resource_id: str) -> NotFoundError:
    """``kind`` (``"tenant"``, ``"member"``, ``"SAML connection"``...) has no ``resource_id``."""
    return NotFoundError(f"{kind} {resource_id!r} does not exist")


def moved(kind: str, resource_id: str, current: int, expected: int) -> VersionMismatchError:
    """The stored version is not the one the write expected."""
    return VersionMismatchError(f"{kind} {resource_id!r} is at version {current}, not {expected}")


def id_taken(kind: str, resource_id: str) -> ConflictError:
    """An insert names an id that already exists."""
    return ConflictError(f"{kind} id {resource_id!r} already exists", attribute="id")


def slug_taken(tenant: Tenant) -> ConflictError:
    """Another tenant has that slug."""
    return ConflictError(f"tenant slug {tenant.slug!r} is already taken", attribute="slug")


def token_digest_taken() -> ConflictError:
    """Another token has that digest (the secret is not repeated in the message)."""
    return ConflictError("a token with that digest already exists", attribute="digest")


def token_name_taken(token: ApiToken) -> ConflictError:
    """The tenant has an active token of that name."""
    return ConflictError(
        f"the tenant already has an active token named {token.name!r}", attribute="name"
    )


def no_such_token(tenant_id: str, token_id: str) -> NotFoundError:
    """The tenant has no token with that id."""
    return NotFoundError(f"tenant {tenant_id!r} has no token {token_id!r}")


def user_name_taken(member: Member) -> ConflictError:
    """Another member of the tenant has that userName (case-insensitively)."""
    return ConflictError(
        f"userName {member.attributes.get('userName')!r} is already taken in this tenant",
        attribute="userName",
    )


def external_id_taken(member: Member) -> ConflictError:
    """Another member of the tenant has that externalId."""
    return ConflictError(
        f"externalId {member.external_id!r} is already linked to another member",
        attribute="externalId",
    )


def display_name_taken(group: Group) -> ConflictError:
    """Another group of the tenant has that displayName (case-insensitively)."""
    return ConflictError(
        f"displayName {group.attributes.get('displayName')!r} is already taken in this tenant",
        attribute="displayName",
    )


def no_such_members(member_ids: Iterable[str]) -> NotFoundError:
    """A membership names members the tenant does not have."""
    return NotFoundError(f"no such members: {', '.join(map(repr, member_ids))}")


def saml_state_taken(connection: SamlConnection) -> ConflictError:
    """The tenant already has a connection in that state (one active, one pending...)."""
    return ConflictError(
        f"the tenant already has a {connection.state} SAML connection", attribute="state"
    )


def saml_request_taken(request: SamlRequest) -> ConflictError:
    """An AuthnRequest with that id is already remembered for the tenant."""
    return ConflictError(f"SAML request {request.id!r} already exists", attribute="id")


def one_time_code_taken() -> ConflictError:
    """A sign-in outcome already holds that one-time code."""
    return ConflictError("that one-time code is taken", attribute="id")


def read_only(method: str) -> ReadOnlyTransactionError:
    """A write method was called in a unit opened with ``write=False``."""
    return ReadOnlyTransactionError(
        f"{method} writes, and this transaction was opened with write=False"
    )
