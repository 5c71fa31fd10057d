"""pbidentity: SCIM 2.0 provisioning and SAML 2.0 sign-in for multi-tenant SaaS apps.

Importing this package imports no web framework, no SAML toolkit and no
database driver: adapters and backends are imported from their own modules
(``pbidentity.wsgi``, ``pbidentity.storage.sql``, ...) when used.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from pbidentity.domain import ApiToken
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import InputError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PbIdentityError
from pbidentity.exceptions import SchemaVersionError
from pbidentity.exceptions import StorageError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.http import Request
from pbidentity.http import Response

try:
    __version__ = _metadata.version("pbidentity")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "ApiToken",
    "ConfigurationError",
    "ConflictError",
    "Group",
    "InputError",
    "Member",
    "MemberRef",
    "NotFoundError",
    "PbIdentityError",
    "Request",
    "Response",
    "SchemaVersionError",
    "StorageError",
    "StorageUnavailableError",
    "Tenant",
    "VersionMismatchError",
    "__version__",
]
