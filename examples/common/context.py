"""The product's services: one PbIdentity behind SCIM, SAML and the set-up portal it mounts."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from examples.common.owner import OwnerLinks
from pbidentity import PbIdentity
from pbidentity import http
from pbidentity.admin import Admin
from pbidentity.exceptions import ConflictError
from pbidentity.portal import Authorize
from pbidentity.portal import Portal
from pbidentity.saml import ResultHandler
from pbidentity.saml import SamlConfig
from pbidentity.saml import SignInOutcome

__all__ = [
    "DEMO_WORKSPACE",
    "PORTAL_PREFIX",
    "AppContext",
    "Site",
    "ensure_demo_workspace",
    "open_context",
]

#: The workspace ``demo=True`` creates, and the one the owner signs in to by default.
DEMO_WORKSPACE = "demo"

#: Where the apps mount pbidentity's set-up portal.
PORTAL_PREFIX = "/portal"


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

    @property
    def portal_url(self) -> str:
        """The set-up portal's absolute URL: set-up links start with it."""
        return f"{self.public_url}{PORTAL_PREFIX}"


@dataclass(frozen=True)
class AppContext:
    """Everything a request handler needs, built once per app from ``create_app``'s arguments."""

    #: The storage, roles and every pbidentity service, built once.
    identity: PbIdentity
    #: pbidentity's set-up portal, mounted at :data:`PORTAL_PREFIX`.
    portal: Portal
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
    secret_key: str,
    authorize: Authorize,
    on_result: ResultHandler,
) -> AppContext:
    """Build the app's :class:`~pbidentity.PbIdentity` and portal (``create_app``'s shared half).

    ``authorize`` is the portal's hook (who the session says is signed in);
    ``on_result`` answers the sign-ins the portal did not start (members
    signing in to the app). ``owner_token`` is the token of an owner sign-in
    link issued at start, for the ``demo`` workspace if there is one, else
    the first workspace.
    """
    portal: Portal | None = None

    def answer(request: http.Request, outcome: SignInOutcome) -> http.Response:
        # A Save & authorize started on the portal's SSO page goes back there.
        answered = portal.sign_in_result(request, outcome) if portal is not None else None
        return answered or on_result(request, outcome)

    # An embedded SQLite file follows the library's schema by itself; a shared
    # server database is migrated on purpose, with `pbidentity db upgrade`.
    identity = PbIdentity(
        database_url,
        saml=SamlConfig(public_url=site.public_url, dev_hosts=dev_hosts),
        on_result=answer,
        upgrade=database_url.startswith("sqlite"),
    )
    portal = Portal(
        identity,
        authorize=authorize,
        # Its own key, derived from the app's: the portal wants 256 bits, and
        # a key used for two purposes could let one's signature pass for the other's.
        secret=hashlib.sha256(f"portal\x1f{secret_key}".encode()).hexdigest(),
        sign_in_url="/login",
        scim_url=site.scim_base_url,
        home_url="/",
    )
    admin = identity.admin
    if demo:
        ensure_demo_workspace(admin)
        # Without it nobody could reach the portal to set up SSO.
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
        portal=portal,
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
