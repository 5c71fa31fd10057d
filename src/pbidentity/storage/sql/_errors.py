"""Driver errors and constraint violations turned into :mod:`pbidentity.exceptions` errors."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError

from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import SamlConnection
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PbIdentityError
from pbidentity.exceptions import StorageError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.exceptions import VersionMismatchError

# SQLite reports schema and statement problems as OperationalError too; those
# are bugs or a damaged database, not an outage worth retrying.
_NOT_AN_OUTAGE = ("no such table", "no such column", "syntax error", "too complex", "has no column")


def _storage_error(error: DBAPIError) -> StorageError:
    message = str(error.orig).splitlines()[0] if error.orig is not None else str(error)
    outage = error.connection_invalidated or (
        isinstance(error, OperationalError)
        and not any(marker in message.lower() for marker in _NOT_AN_OUTAGE)
    )
    if outage:
        return StorageUnavailableError(f"the database is unavailable: {message}")
    return StorageError(f"the database refused the operation: {message}")


def _constraint(error: IntegrityError) -> str:
    """The violated constraint's name (PostgreSQL) or message (SQLite), lower-cased."""
    diag = getattr(error.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str):
        return name.lower()
    return str(error.orig).splitlines()[0].lower()


def _is_foreign_key(error: IntegrityError) -> bool:
    text_ = _constraint(error)
    return "foreign key" in text_ or text_.startswith("fk_")


def _saml_conflict(error: IntegrityError, connection: SamlConnection) -> PbIdentityError:
    if _is_foreign_key(error):
        return NotFoundError(f"tenant {connection.tenant_id!r} does not exist")
    if "state" in _constraint(error):
        return ConflictError(
            f"the tenant already has a {connection.state} SAML connection", attribute="state"
        )
    return ConflictError(f"SAML connection id {connection.id!r} already exists", attribute="id")


def _raise_missing_or_moved(
    kind: str, resource_id: str, current: int | None, expected: int
) -> None:
    if current is None:
        raise NotFoundError(f"{kind} {resource_id!r} does not exist")
    raise VersionMismatchError(f"{kind} {resource_id!r} is at version {current}, not {expected}")


def _tenant_conflict(error: IntegrityError, tenant: Tenant) -> ConflictError:
    if "slug" in _constraint(error):
        return ConflictError(f"tenant slug {tenant.slug!r} is already taken", attribute="slug")
    return ConflictError(f"tenant id {tenant.id!r} already exists", attribute="id")


def _external_id_taken(member: Member) -> ConflictError:
    return ConflictError(
        f"externalId {member.external_id!r} is already linked to another member",
        attribute="externalId",
    )


def _user_name_taken(member: Member) -> ConflictError:
    return ConflictError(
        f"userName {member.attributes.get('userName')!r} is already taken in this tenant",
        attribute="userName",
    )


def _display_name_taken(group: Group) -> ConflictError:
    return ConflictError(
        f"displayName {group.attributes.get('displayName')!r} is already taken in this tenant",
        attribute="displayName",
    )


def _driver_error(statement: str, error: Exception, base: type[Exception]) -> StorageError:
    """A pbidentity error for a DBAPI error raised outside of Core."""
    wrapped = DBAPIError.instance(statement, (), error, base)
    if isinstance(wrapped, DBAPIError):
        return _storage_error(wrapped)
    return StorageError(f"the database failed: {error}")
