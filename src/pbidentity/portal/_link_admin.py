"""The set-up links page: the host app's own admins issue, list and revoke a workspace's links.

Only an admin the host app's ``authorize`` hook names sees it: a set-up
link's session never does (a link must not hand out links, nor show when
the others expire). An admin gives only the sections they may open
themselves. A new link's URL is in the answer to its issuing only: its
token is signed, never stored, so it cannot be shown again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta

import attrs

from pbidentity.domain import SetupLink
from pbidentity.exceptions import InputError
from pbidentity.portal._access import SECTIONS
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._access import Section
from pbidentity.portal._links import LINK_SECTIONS
from pbidentity.portal._links import IssuedLink
from pbidentity.portal._links import SetupLinks

__all__ = ["LIFETIMES", "LinkRow", "LinksPage", "issue_link", "links_page"]

#: How long a new link may stay valid: (form value, words, lifetime).
LIFETIMES: tuple[tuple[str, str, timedelta], ...] = (
    ("1h", "1 hour", timedelta(hours=1)),
    ("1d", "1 day", timedelta(days=1)),
    ("3d", "3 days", timedelta(days=3)),
    ("7d", "7 days", timedelta(days=7)),
    ("14d", "14 days", timedelta(days=14)),
    ("30d", "30 days", timedelta(days=30)),
)
DEFAULT_LIFETIME = "7d"

#: What each section is called on the page.
SECTION_NAMES: dict[str, str] = {
    "sso": "Single sign-on (SAML)",
    "scim": "Provisioning (SCIM)",
    "roles": "Role policy",
    "members": "Members",
    "audit": "Audit trail",
}


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


@attrs.frozen
class LinkRow:
    """One issued link as the list shows it (never its token)."""

    id: str
    created: str
    created_by: str
    sections: tuple[str, ...]
    expires: str
    opened: str
    revoked: str
    #: ``waiting`` (not opened yet), ``opened``, ``expired`` or ``revoked``.
    state: str

    @property
    def revocable(self) -> bool:
        """Whether revoking it still changes anything (it may open, or its session go on)."""
        return self.state in ("waiting", "opened")


def _row(link: SetupLink, now: datetime) -> LinkRow:
    if link.revoked is not None:
        state = "revoked"
    elif link.expires <= now:
        state = "expired"
    else:
        state = "opened" if link.opened is not None else "waiting"
    return LinkRow(
        id=link.id,
        created=_when(link.created),
        created_by=link.created_by,
        sections=tuple(SECTION_NAMES.get(s, s) for s in link.sections),
        expires=_when(link.expires),
        opened=_when(link.opened),
        revoked=_when(link.revoked),
        state=state,
    )


@attrs.frozen
class LinksPage:
    """The set-up links page: the form to issue one, the new one's URL once, the list."""

    workspace: str
    links: tuple[LinkRow, ...]
    #: The sections this admin may give, with their names, and whether checked by default.
    offered: tuple[tuple[str, str, bool], ...]
    lifetimes: tuple[tuple[str, str], ...]
    lifetime: str
    #: The URL of the link just issued: in this answer only.
    new_url: str | None = None
    new_id: str | None = None
    notice: str | None = None
    error: str | None = None
    #: Whether the audit section may be linked to (what a link's session changed).
    show_audit: bool = False
    section: str = "links"


def host_only(access: PortalAccess) -> None:
    """Refuse a set-up link's session: links are the host app's admins' business."""
    if access.link_id is not None:
        raise PermissionError(
            "Set-up links are issued by the app's own administrators; a set-up link "
            "cannot see or issue them."
        )


def _offered(access: PortalAccess) -> tuple[Section, ...]:
    return tuple(s for s in SECTIONS if access.may(s))


def links_page(
    links: SetupLinks,
    access: PortalAccess,
    now: datetime,
    *,
    issued: IssuedLink | None = None,
    portal_url: str = "",
    notice: str | None = None,
    error: str | None = None,
    chosen: Sequence[str] | None = None,
    lifetime: str = DEFAULT_LIFETIME,
) -> LinksPage:
    """The page's values; ``issued`` (with ``portal_url``) is the link just issued."""
    host_only(access)
    defaults = set(LINK_SECTIONS if chosen is None else chosen)
    return LinksPage(
        workspace=access.workspace,
        links=tuple(_row(link, now) for link in links.list(access.workspace)),
        offered=tuple((s, SECTION_NAMES[s], s in defaults) for s in _offered(access)),
        lifetimes=tuple((key, words) for key, words, _ in LIFETIMES),
        lifetime=lifetime,
        new_url=issued.url(portal_url) if issued is not None else None,
        new_id=issued.link.id if issued is not None else None,
        notice=notice,
        error=error,
        show_audit=access.may("audit"),
    )


def issue_link(
    links: SetupLinks, access: PortalAccess, sections: Sequence[str], lifetime: str
) -> IssuedLink:
    """Issue a link for ``sections`` (of those the admin may open) valid for ``lifetime``.

    :class:`InputError` for no section, one the admin cannot give, or an
    unknown lifetime: the page shows the sentence.
    """
    host_only(access)
    offered = _offered(access)
    if not sections:
        raise InputError("Choose at least one section the link opens.")
    beyond = [s for s in sections if s not in offered]
    if beyond:
        raise InputError(f"You cannot give a section you do not have: {', '.join(beyond)}.")
    lasting = {key: delta for key, _, delta in LIFETIMES}.get(lifetime)
    if lasting is None:
        raise InputError("Choose how long the link stays valid from the list.")
    return links.issue(
        access.workspace,
        created_by=access.admin_name or access.admin_id,
        sections=sections,
        lifetime=lasting,
        actor=access.actor,
    )
