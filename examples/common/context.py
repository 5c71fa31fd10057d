"""The product's services: one PbIdentity behind the admin pages, SCIM and SAML."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from examples.common.owner import OwnerLinks
from pbidentity import PbIdentity
from pbidentity.admin import Admin
from pbidentity.exceptions import ConflictError
from pbidentity.saml import ResultHandler
from pbidentity.saml import SamlConfig

__all__ = ["DEMO_WORKSPACE", "AppContext", "Site", "ensure_demo_workspace", "open_context"]

#: The workspace ``demo=True`` creates, and the one the owner signs in to by default.
DEMO_WORKSPACE = "demo"


@dataclass(frozen=True)
class Site:
    """What the layout shows on every page."""

    framework: str
    #: The app's origin as browsers and IdPs see it, without a trailing slash.
    public_url: str

    @property
    def scim_base_url(self) -> str:
        """What the admin pastes into the IdP's provisioning settings."""
        return f"{self.public_url}/scim/v2"


@dataclass(frozen=True)
class AppContext:
    """Everything a request handler needs, built once per app from ``create_app``'s arguments."""

    #: The storage, roles and every pbidentity service, built once.
    identity: PbIdentity
    site: Site
    #: The owner sign-in links (``/bootstrap``) this process issued.
    owner_links: OwnerLinks
    #: The token of the link issued at start, and its workspace (``None``: no link).
    owner_token: str | None
    owner_workspace: str | None

    def close(self) -> None:
        """Release the database connections."""
        self.identity.close()


def open_context(
    database_url: str,
    *,
    site: Site,
    dev_hosts: frozenset[str],
    owner_token: str | None,
    demo: bool,
    on_result: ResultHandler,
) -> AppContext:
    """Build the app's :class:`~pbidentity.PbIdentity` (``create_app``'s shared half).

    ``owner_token`` is the token of an owner sign-in link issued at start,
    for the ``demo`` workspace if there is one, else the first workspace.
    """
    # An embedded SQLite file follows the library's schema by itself; a shared
    # server database is migrated on purpose, with `pbidentity db upgrade`.
    identity = PbIdentity(
        database_url,
        saml=SamlConfig(public_url=site.public_url, dev_hosts=dev_hosts),
        on_result=on_result,
        upgrade=database_url.startswith("sqlite"),
    )
    admin = identity.admin
    if demo:
        ensure_demo_workspace(admin)
        # Without it nobody could reach the settings pages to set up SSO.
        owner_token = owner_token or secrets.token_urlsafe(24)
    owner_links = OwnerLinks()
    slugs = [tenant.slug for tenant in admin.list_tenants()]
    workspace = DEMO_WORKSPACE if DEMO_WORKSPACE in slugs else (slugs[0] if slugs else None)
    if owner_token and workspace:
        owner_links.issue(workspace, owner_token)
    else:
        owner_token = None
    return AppContext(
        identity=identity,
        site=site,
        owner_links=owner_links,
        owner_token=owner_token,
        owner_workspace=workspace,
    )


def ensure_demo_workspace(admin: Admin) -> None:
    """Create the ``demo`` workspace with SCIM provisioning on, unless it exists.

    An existing one is left as it is: an admin may have switched SCIM off on purpose.
    """
    if any(tenant.slug == DEMO_WORKSPACE for tenant in admin.list_tenants()):
        return
    try:
        admin.create_tenant(DEMO_WORKSPACE, "Demo workspace")
    except ConflictError:
        return  # another process started at the same moment and created it
    admin.set_scim_enabled(DEMO_WORKSPACE, True)
