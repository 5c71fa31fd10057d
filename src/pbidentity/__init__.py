"""pbidentity: SCIM 2.0 provisioning and SAML 2.0 sign-in for multi-tenant SaaS apps.

Start with :class:`PbIdentity`, built once by the host app::

    import pbidentity
    from pbidentity.saml import SamlConfig

    identity = pbidentity.PbIdentity(
        "sqlite:///pbidentity.db",
        roles=pbidentity.RoleSet(("owner", "editor", "viewer")),  # most privileged first
        saml=SamlConfig(public_url="https://app.example"),
    )
    identity.admin.create_tenant("acme-corp")   # tenants, tokens, policies
    identity.members                            # the app's view of its members
    identity.events.subscribe(handler)          # react to provisioning

Then serve it with one adapter (``/scim/v2`` and ``/saml``):

* ``pbidentity.wsgi.make_app(identity)`` or ``pbidentity.asgi.make_app(identity)``;
* ``pbidentity.flask.init_app(app, identity)``;
* ``pbidentity.fastapi.init_app(app, identity)``;
* another framework: ``identity.router()`` and the adapter contract in the docs.

The ``pbidentity`` command line manages tenants, tokens and SAML from a
shell, and ``pbidentity serve`` runs it all on its own.

Importing this package imports no web framework, no SAML toolkit and no
database driver: they are imported when an adapter module is imported or a
:class:`PbIdentity` is built (SAML only when it is configured).
"""

from __future__ import annotations

from importlib import metadata as _metadata

from pbidentity._front import PbIdentity
from pbidentity.domain import ApiToken
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import InputError
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import LinkConflictError
from pbidentity.exceptions import ManagedMemberError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PbIdentityError
from pbidentity.exceptions import PolicyChangedError
from pbidentity.exceptions import ReadOnlyTransactionError
from pbidentity.exceptions import SchemaVersionError
from pbidentity.exceptions import StorageError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.roles import RoleSet

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
    "LastAdminError",
    "LinkConflictError",
    "ManagedMemberError",
    "Member",
    "MemberRef",
    "NotFoundError",
    "PbIdentity",
    "PbIdentityError",
    "PolicyChangedError",
    "ReadOnlyTransactionError",
    "Request",
    "Response",
    "RoleSet",
    "SchemaVersionError",
    "StorageError",
    "StorageUnavailableError",
    "Tenant",
    "VersionMismatchError",
    "__version__",
]
