"""The set-up portal: pbidentity's own pages for SSO, SCIM, role policy and members, in a host app.

A host app builds one :class:`Portal` on its :class:`~pbidentity.PbIdentity`
and serves it under a prefix with any adapter, beside SCIM and SAML::

    from pbidentity.portal import Portal, PortalAccess

    def current_admin(request):            # the host app decides who may see it
        user = my_session_user(request)
        if user is None or not user.is_admin:
            return None
        return PortalAccess(admin_id=user.id, admin_name=user.name, workspace=user.workspace)

    portal = Portal(identity, authorize=current_admin, secret=PORTAL_SECRET)
    pbidentity.flask.init_app(app, identity, mounts={"/portal": portal})

A customer's IT admin with no account in the app gets a set-up link instead
(:meth:`SetupLinks.issue`, through ``portal.links``): signed, for one
workspace and chosen sections, expiring, revocable and single-use; opening
it starts a short portal session in that browser.

The pages are server-rendered with Jinja2 (the ``portal`` extra) and work
without JavaScript, except the copy buttons.
"""

from __future__ import annotations

from pbidentity.portal._access import SECTIONS
from pbidentity.portal._access import SESSION_LIFETIME
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._access import Section
from pbidentity.portal._links import DEFAULT_LINK_LIFETIME
from pbidentity.portal._links import MAX_LINK_LIFETIME
from pbidentity.portal._links import IssuedLink
from pbidentity.portal._links import SetupLinks
from pbidentity.portal._portal import COOKIE_NAME
from pbidentity.portal._portal import Authorize
from pbidentity.portal._portal import Portal

__all__ = [
    "COOKIE_NAME",
    "DEFAULT_LINK_LIFETIME",
    "MAX_LINK_LIFETIME",
    "SECTIONS",
    "SESSION_LIFETIME",
    "Authorize",
    "IssuedLink",
    "Portal",
    "PortalAccess",
    "Section",
    "SetupLinks",
]
