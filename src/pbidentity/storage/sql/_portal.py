"""The portal's set-up links in a SQL transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from pbidentity.domain import SetupLink
from pbidentity.storage import _conflicts
from pbidentity.storage.sql._errors import _is_foreign_key
from pbidentity.storage.sql._schema import setup_links
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _Unit
from pbidentity.storage.sql._unit import _writing


def _link(row: Any) -> SetupLink:
    return SetupLink(
        id=row.id,
        tenant_id=row.tenant_id,
        sections=tuple(s for s in row.sections.split(",") if s),
        created_by=row.created_by,
        created=row.created,
        expires=row.expires,
        opened=row.opened,
        revoked=row.revoked,
    )


class _SetupLinks(_Unit):
    """Set-up links: added, listed, opened once, revoked."""

    @_writing
    def add_setup_link(self, link: SetupLink) -> None:
        """Insert a set-up link."""
        row = {
            "tenant_id": link.tenant_id,
            "id": link.id,
            "sections": ",".join(link.sections),
            "created_by": link.created_by,
            "created": link.created,
            "expires": link.expires,
            "opened": link.opened,
            "revoked": link.revoked,
        }
        try:
            with self._savepoint():
                self._conn.execute(insert(setup_links), [row])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise _conflicts.missing("tenant", link.tenant_id) from error
            raise _conflicts.id_taken("set-up link", link.id) from error

    @_guarded
    def setup_links(self, tenant_id: str) -> Sequence[SetupLink]:
        """The tenant's set-up links, newest first."""
        rows = self._conn.execute(
            select(setup_links)
            .where(setup_links.c.tenant_id == tenant_id)
            .order_by(setup_links.c.created.desc(), setup_links.c.id)
        ).all()
        return [_link(row) for row in rows]

    @_guarded
    def get_setup_link(self, tenant_id: str, link_id: str) -> SetupLink | None:
        """One of the tenant's set-up links."""
        row = self._conn.execute(
            select(setup_links).where(
                setup_links.c.tenant_id == tenant_id, setup_links.c.id == link_id
            )
        ).first()
        return None if row is None else _link(row)

    @_writing
    def open_setup_link(self, tenant_id: str, link_id: str, when: datetime) -> bool:
        """Mark the link opened; true only for the first, unrevoked, unexpired opening."""
        # One conditional UPDATE: of two browsers racing, only one changes the row.
        changed = self._conn.execute(
            update(setup_links)
            .where(
                setup_links.c.tenant_id == tenant_id,
                setup_links.c.id == link_id,
                setup_links.c.opened.is_(None),
                setup_links.c.revoked.is_(None),
                setup_links.c.expires > when,
            )
            .values(opened=when)
        ).rowcount
        return bool(changed)

    @_writing
    def revoke_setup_link(self, tenant_id: str, link_id: str, when: datetime) -> bool:
        """Revoke the link; false if it was revoked already (or is not the tenant's)."""
        changed = self._conn.execute(
            update(setup_links)
            .where(
                setup_links.c.tenant_id == tenant_id,
                setup_links.c.id == link_id,
                setup_links.c.revoked.is_(None),
            )
            .values(revoked=when)
        ).rowcount
        return bool(changed)
