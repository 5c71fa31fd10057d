"""The SQL transaction, composed of one part per concern."""

from __future__ import annotations

from pbidentity.storage.sql._activity import _Activity
from pbidentity.storage.sql._directory import _Directory
from pbidentity.storage.sql._groups import _Groups
from pbidentity.storage.sql._imports import _LinkImports
from pbidentity.storage.sql._members import _Members
from pbidentity.storage.sql._outbox import _Outbox
from pbidentity.storage.sql._portal import _SetupLinks
from pbidentity.storage.sql._saml import _SamlState
from pbidentity.storage.sql._tenants import _Tenants


class _SqlTransaction(
    _Tenants,
    _Members,
    _Groups,
    _Outbox,
    _SamlState,
    _SetupLinks,
    _LinkImports,
    _Directory,
    _Activity,
):
    """One unit of work on one connection; see :class:`~pbidentity.storage.Transaction`."""
