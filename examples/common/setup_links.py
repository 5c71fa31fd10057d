"""The host's own admin page: the way into the portal, and set-up links for a customer's IT admin.

The app's admin opens the portal directly (the ``authorize`` hook knows
them). Someone without an account in the app, the customer's IT admin,
gets a set-up link instead: the admin picks what it opens, the portal
signs it, and the page shows it once to be copied and sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from examples.common.access import Viewer
from examples.common.context import AppContext
from pbidentity.portal import SECTIONS

__all__ = ["SECTION_NAMES", "HomePage", "home_page", "issue_setup_link"]

#: How the home page names each portal section in its set-up link form.
SECTION_NAMES = {
    "sso": "Single sign-on (SAML)",
    "scim": "Provisioning (SCIM)",
    "roles": "Role policy",
    "members": "Members",
    "audit": "Audit trail",
}


@dataclass(frozen=True)
class HomePage:
    """The signed-in person's home: the portal for an admin, a set-up link once issued."""

    portal_url: str
    sections: tuple[tuple[str, str], ...] = tuple(SECTION_NAMES.items())
    #: The set-up link just issued (shown once), and when it stops opening.
    link: str | None = None
    link_expires: str | None = None
    error: str | None = None


def home_page(ctx: AppContext) -> HomePage:
    """The home page with nothing issued yet."""
    return HomePage(portal_url=ctx.site.portal_url)


def issue_setup_link(ctx: AppContext, viewer: Viewer, sections: Iterable[str]) -> HomePage:
    """A set-up link of the viewer's workspace opening ``sections``, or the page saying why not."""
    chosen = [s for s in SECTIONS if s in set(sections)]
    if not chosen:
        return HomePage(portal_url=ctx.site.portal_url, error="Choose what the link opens.")
    issued = ctx.portal.links.issue(
        viewer.workspace, created_by=f"{viewer.name} ({viewer.id})", sections=chosen
    )
    return HomePage(
        portal_url=ctx.site.portal_url,
        link=issued.url(ctx.site.portal_url),
        link_expires=issued.link.expires.strftime("%Y-%m-%d %H:%M UTC"),
    )
