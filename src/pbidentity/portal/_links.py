"""Set-up links: what the host app hands a customer's IT admin instead of an account.

A link's token is signed with the install's secret and names the link's id,
its workspace, its sections and its expiry, so that a forged or altered
token is refused before the database is asked anything. The stored
:class:`~pbidentity.domain.SetupLink` makes it single-use and revocable,
and lets the host app list what it handed out.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta

import attrs

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._clock import new_id
from pbidentity._lifecycle import tenant_by_slug
from pbidentity.domain import Event
from pbidentity.domain import SetupLink
from pbidentity.exceptions import NotFoundError
from pbidentity.portal._access import SECTIONS
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._access import Section
from pbidentity.portal._access import Signer
from pbidentity.storage import Storage

__all__ = ["DEFAULT_LINK_LIFETIME", "MAX_LINK_LIFETIME", "IssuedLink", "SetupLinks"]

#: How long a set-up link can be opened unless the host app says otherwise.
DEFAULT_LINK_LIFETIME = timedelta(days=7)
#: The longest a link may stay valid: a forgotten link must not open a workspace for ever.
MAX_LINK_LIFETIME = timedelta(days=30)

#: The sections a link may open: a customer's IT admin sets up the connection,
#: the members list stays with the workspace's own admins.
LINK_SECTIONS: tuple[Section, ...] = ("sso", "scim")

_PURPOSE = "setup-link"


@attrs.frozen(kw_only=True)
class IssuedLink:
    """A link just issued: its record, and the token to put in the URL (never stored)."""

    link: SetupLink
    token: str = attrs.field(repr=False)

    def url(self, portal_url: str) -> str:
        """The link to hand over, given the portal's absolute URL (its mount point)."""
        return f"{portal_url.rstrip('/')}/setup?token={self.token}"


class SetupLinks:
    """Issue, open, list and revoke a workspace's set-up links.

    Issuing and revoking a link are recorded in the workspace's audit trail
    (``setup_link.issued``, ``setup_link.revoked``), in the transaction of
    the change; never the link's token.
    """

    def __init__(
        self, storage: Storage, signer: Signer, *, clock: Clock, new_id: IdFactory = new_id
    ) -> None:
        self.storage = storage
        self._signer = signer
        self._clock = clock
        self._new_id = new_id

    def issue(
        self,
        workspace: str,
        *,
        created_by: str,
        sections: Iterable[str] = LINK_SECTIONS,
        lifetime: timedelta = DEFAULT_LINK_LIFETIME,
        actor: str = "app",
    ) -> IssuedLink:
        """A new link for ``workspace`` opening ``sections``, valid for ``lifetime``.

        ``created_by`` names who issued it (the host app's admin), for the
        list of links and the audit trail of what the link's holder does.
        ``actor`` is who the ``setup_link.issued`` event names (the portal
        gives ``portal:<admin_id>``).
        """
        chosen = tuple(s for s in SECTIONS if s in set(sections))
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown or not chosen:
            raise ValueError(f"a set-up link opens some of {list(SECTIONS)}, not {unknown or []}")
        if not timedelta(0) < lifetime <= MAX_LINK_LIFETIME:
            raise ValueError(f"a set-up link lives more than 0 and at most {MAX_LINK_LIFETIME}")
        now = self._clock()
        with self.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, workspace)
            link = SetupLink(
                id=secrets.token_urlsafe(12),
                tenant_id=tenant.id,
                sections=chosen,
                created_by=created_by,
                created=now,
                expires=now + lifetime,
            )
            tx.add_setup_link(link)
            tx.add_events(
                [
                    self._event(
                        link,
                        "setup_link.issued",
                        actor,
                        expires=link.expires.isoformat(),
                        created_by=created_by,
                    )
                ]
            )
        token = self._signer.sign(
            _PURPOSE,
            {
                "l": link.id,
                "w": workspace,
                "s": list(chosen),
                "e": int(link.expires.timestamp()),
            },
        )
        return IssuedLink(link=link, token=token)

    def peek(self, token: str | None) -> tuple[str, SetupLink] | None:
        """The workspace and link a token names, if it would open now (nothing is spent)."""
        found = self._verify(token)
        if found is None:
            return None
        workspace, link = found
        if link.opened or link.revoked or link.expires <= self._clock():
            return None
        return workspace, link

    def open(self, token: str | None) -> tuple[str, SetupLink] | None:
        """Spend the link: its workspace and record the first time, ``None`` ever after."""
        found = self._verify(token)
        if found is None:
            return None
        workspace, link = found
        with self.storage.transaction() as tx:
            if not tx.open_setup_link(link.tenant_id, link.id, self._clock()):
                return None
        return workspace, link

    def _verify(self, token: str | None) -> tuple[str, SetupLink] | None:
        document = self._signer.unsign(_PURPOSE, token)
        if document is None:
            return None
        workspace, link_id = str(document.get("w", "")), str(document.get("l", ""))
        with self.storage.transaction(write=False) as tx:
            tenant = tx.find_tenant(workspace)
            link = tx.get_setup_link(tenant.id, link_id) if tenant is not None else None
        if link is None:
            return None
        return workspace, link

    def access(self, workspace: str, link_id: str) -> PortalAccess | None:
        """The access an opened link's session gives now; ``None`` once it is revoked or expired."""
        with self.storage.transaction(write=False) as tx:
            tenant = tx.find_tenant(workspace)
            link = tx.get_setup_link(tenant.id, link_id) if tenant is not None else None
        if link is None or link.revoked or link.expires <= self._clock():
            return None
        return PortalAccess(
            admin_id=f"link:{link.id}",
            admin_name="Set-up link",
            workspace=workspace,
            sections=frozenset(link.sections),
            link_id=link.id,
        )

    def list(self, workspace: str) -> Sequence[SetupLink]:
        """The workspace's links, newest first."""
        with self.storage.transaction(write=False) as tx:
            return tx.setup_links(tenant_by_slug(tx, workspace).id)

    def revoke(self, workspace: str, link_id: str, *, actor: str = "app") -> SetupLink:
        """Revoke a link: it no longer opens, and the session it opened ends at its next request.

        ``actor`` is who the ``setup_link.revoked`` event names; revoking a
        link revoked already records nothing.
        """
        now = self._clock()
        with self.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, workspace)
            revoked = tx.revoke_setup_link(tenant.id, link_id, now)
            link = tx.get_setup_link(tenant.id, link_id)
            if revoked and link is not None:
                tx.add_events([self._event(link, "setup_link.revoked", actor)])
        if link is None:
            raise NotFoundError(f"workspace {workspace!r} has no set-up link {link_id!r}")
        return link

    def _event(self, link: SetupLink, kind: str, actor: str, **data: str) -> Event:
        """An audit event about ``link``: its sections and ``data``, never its token."""
        return Event(
            id=self._new_id(),
            tenant_id=link.tenant_id,
            type=kind,
            subject_id=link.id,
            actor=actor,
            occurred=self._clock(),
            data={"sections": list(link.sections), **data},
        )

    def ends(self, link: SetupLink, session_lifetime: timedelta) -> datetime:
        """When the session a link opens now ends: at the link's expiry at the latest."""
        return min(link.expires, self._clock() + session_lifetime)
