"""The exceptions pbidentity raises to the code that embeds it.

Client mistakes in a SCIM request never escape the core as exceptions: they
become SCIM Error responses. What is raised here is meant for the host app and
the operator (a wrong database URL, a duplicate tenant slug, a storage fault)::

    PbIdentityError
    ├── ConfigurationError        the host app or operator configured something wrong
    ├── InputError                a value given to an admin operation is not acceptable
    ├── NotFoundError             a tenant, token, member or group that does not exist
    ├── LinkConflictError         an identity matches members ambiguously (maps to 409)
    ├── LastAdminError            a change would leave a tenant without an active admin (409)
    ├── ManagedMemberError        the host app edits what the identity provider owns
    ├── ReadOnlyTransactionError  a write in a unit opened with write=False (a caller's bug)
    ├── StorageError              the storage backend failed
    │   ├── ConflictError         a uniqueness rule refused the write (maps to 409)
    │   ├── VersionMismatchError  the row changed since it was read (412 / retry)
    │   ├── StorageUnavailableError  the database cannot be reached (503)
    │   └── SchemaVersionError    the database schema is newer or older than this library
    └── ...

Anything else raised from inside pbidentity is a bug.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "InputError",
    "LastAdminError",
    "LinkConflictError",
    "ManagedMemberError",
    "NotFoundError",
    "PbIdentityError",
    "PolicyChangedError",
    "ReadOnlyTransactionError",
    "SchemaVersionError",
    "StorageError",
    "StorageUnavailableError",
    "VersionMismatchError",
]


class PbIdentityError(Exception):
    """The root of every exception pbidentity raises on purpose."""


class ConfigurationError(PbIdentityError):
    """Something the host app or the operator configured cannot work."""


class InputError(PbIdentityError):
    """A value given to an admin operation (a slug, a token name) is not acceptable."""


class NotFoundError(PbIdentityError):
    """A tenant, token, member or group that does not exist."""


class LinkConflictError(PbIdentityError):
    """An identity cannot be matched to exactly one member; nothing was changed.

    Two members match it, its externalId is linked to another member, or its
    new email is another member's. The message names them.
    """


class LastAdminError(PbIdentityError):
    """The change would leave the tenant without an active admin, and its admin guard is on."""


class PolicyChangedError(PbIdentityError):
    """The tenant's policy changed since the preview a new policy was based on; nothing changed."""


class ManagedMemberError(PbIdentityError):
    """The host app tried to change what the identity provider owns on a SCIM-managed member.

    ``fields`` names the refused fields; the message says where to change them.
    """

    def __init__(self, message: str, *, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.fields = fields


class ReadOnlyTransactionError(PbIdentityError, RuntimeError):
    """A write was asked of a transaction opened with ``write=False``.

    Every backend refuses it before touching anything, so the unit stays
    usable for reads. It is a bug in the caller, hence also a ``RuntimeError``.
    """


class StorageError(PbIdentityError):
    """The storage backend could not do what was asked."""


class ConflictError(StorageError):
    """A write would break a uniqueness rule.

    ``attribute`` names the SCIM attribute whose value is taken (``userName``,
    ``displayName``) or the domain field (``slug``, ``name``).
    """

    def __init__(self, message: str, *, attribute: str) -> None:
        super().__init__(message)
        self.attribute = attribute


class VersionMismatchError(StorageError):
    """The row was changed by someone else since the version the writer read."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached right now; the same request may succeed later."""


class SchemaVersionError(StorageError):
    """The database schema does not match what this version of pbidentity expects."""
