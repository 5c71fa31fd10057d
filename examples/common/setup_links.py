"""The host's own admin page: the way into the portal, and set-up links for a customer's IT admin.

The app's admin opens the portal directly (the ``authorize`` hook knows
them). Someone without an account in the app, the customer's IT admin,
gets a set-up link instead: the admin picks what it opens, the portal
signs it, and the page shows it once to be copied and sent; the page then
lists the workspace's links, whether each was opened, and revokes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from examples.common.access import Viewer
from examples.common.context import AppContext
from pbidentity.domain import SetupLink
from pbidentity.portal import SECTIONS

__all__ = ["SECTION_NAMES", "HomePage", "LinkRow", "home_page", "issue_setup_link", "revoke"]

#: How the home page names each portal section in its set-up link form.
SECTION_NAMES = {
    "sso": "Single sign-on (SAML)",
    "scim": "Provisioning (SCIM)",
    "roles": "Role policy",
    "members": "Members",
    "audit": "Audit trail",
}

#: The links the home page lists, newest first.
LINKS_SHOWN = 20


@dataclass(frozen=True)
class LinkRow:
    """One set-up link as the home page lists it (never its token: that was shown once)."""

    id: str
    sections: str
    created_by: str
    created: str
    #: "Not opened yet (until ...)", "Opened ...", "Revoked ...", "Expired ...".
    state: str
    revocable: bool


@dataclass(frozen=True)
class HomePage:
    """The signed-in person's home: the portal for an admin, the workspace's set-up links."""

    portal_url: str
    links: tuple[LinkRow, ...] = ()
    sections: tuple[tuple[str, str], ...] = tuple(SECTION_NAMES.items())
    #: The set-up link just issued (shown once), and when it stops opening.
    link: str | None = None
    link_expires: str | None = None
    error: str | None = None


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _row(link: SetupLink, now: datetime) -> LinkRow:
    if link.revoked is not None:
        state = f"Revoked {_when(link.revoked)}"
    elif link.opened is not None:
        state = f"Opened {_when(link.opened)}"
    elif link.expires <= now:
        state = f"Expired {_when(link.expires)}"
    else:
        state = f"Not opened yet (until {_when(link.expires)})"
    return LinkRow(
        id=link.id,
        sections=", ".join(SECTION_NAMES.get(s, s) for s in link.sections),
        created_by=link.created_by,
        created=_when(link.created),
        state=state,
        # An opened link's session ends at its next request once revoked.
        revocable=link.revoked is None and (link.opened is not None or link.expires > now),
    )


def home_page(
    ctx: AppContext,
    viewer: Viewer | None,
    *,
    link: str | None = None,
    link_expires: str | None = None,
    error: str | None = None,
) -> HomePage:
    """The home page; an admin's lists the workspace's newest set-up links."""
    rows: tuple[LinkRow, ...] = ()
    if viewer is not None and viewer.is_admin:
        now = ctx.identity.clock()
        found = ctx.portal.links.list(viewer.workspace)[:LINKS_SHOWN]
        rows = tuple(_row(found_link, now) for found_link in found)
    return HomePage(
        portal_url=ctx.site.portal_url,
        links=rows,
        link=link,
        link_expires=link_expires,
        error=error,
    )


def issue_setup_link(ctx: AppContext, viewer: Viewer, sections: Iterable[str]) -> HomePage:
    """A set-up link of the viewer's workspace opening ``sections``, or the page saying why not."""
    chosen = [s for s in SECTIONS if s in set(sections)]
    if not chosen:
        return home_page(ctx, viewer, error="Choose what the link opens.")
    # The audit trail names the app's admin, as the portal's own links page does.
    issued = ctx.portal.links.issue(
        viewer.workspace,
        created_by=f"{viewer.name} ({viewer.id})",
        sections=chosen,
        actor=f"portal:{viewer.id}",
    )
    return home_page(
        ctx,
        viewer,
        link=issued.url(ctx.site.portal_url),
        link_expires=_when(issued.link.expires),
    )


def revoke(ctx: AppContext, viewer: Viewer, link_id: str) -> None:
    """Revoke one of the viewer's workspace's links (a NotFoundError for any other id)."""
    ctx.portal.links.revoke(viewer.workspace, link_id, actor=f"portal:{viewer.id}")
