"""The reference apps' owner sign-in links: one workspace, once, within their lifetime."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

from examples.common.owner import LINK_LIFETIME
from examples.common.owner import OwnerLinks


def test_a_link_works_once_for_its_workspace_until_it_expires() -> None:
    """Checking spends nothing; redeeming spends it; another workspace or a late use is refused."""
    now = [datetime(2026, 12, 7, 12, 0, tzinfo=UTC)]
    links = OwnerLinks(clock=lambda: now[0])
    token = links.issue("acme")
    assert links.valid(token, "acme")
    assert not links.valid(token, "globex")
    assert not links.redeem(token, "globex")
    assert not links.redeem(token.upper(), "acme")
    assert not links.redeem(None, "acme")
    assert links.redeem(token, "acme")
    assert not links.redeem(token, "acme")
    late = links.issue("acme", "given-token")
    assert late == "given-token"
    now[0] += LINK_LIFETIME - timedelta(seconds=1)
    assert links.valid(late, "acme")
    now[0] += timedelta(seconds=1)
    assert not links.valid(late, "acme")
    assert not links.redeem(late, "acme")


def test_the_link_lifetime_is_fifteen_minutes() -> None:
    """What serve prints ("within 15 minutes") is what the links do."""
    assert timedelta(minutes=15) == LINK_LIFETIME
