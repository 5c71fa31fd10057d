"""The audit section: the workspace's events newest first, filtered by GET, paged by seq."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import httpx
import pytest

from tests.portal.conftest import PORTAL
from tests.portal.conftest import World
from tests.portal.conftest import admin


def _types(page: httpx.Response) -> list[str]:
    return re.findall(r'<tr class="event" data-seq="\d+" data-type="([^"]+)">', page.text)


def _seqs(page: httpx.Response) -> list[int]:
    return [int(seq) for seq in re.findall(r'<tr class="event" data-seq="(\d+)"', page.text)]


def _link(page: httpx.Response, link_id: str) -> str | None:
    found = re.search(rf'id="{link_id}" href="([^"]+)"', page.text)
    return found.group(1).replace("&amp;", "&") if found else None


def _open_link(world: World, browser: httpx.Client, sections: tuple[str, ...]) -> None:
    """Open a set-up link of acme for ``sections`` in this browser."""
    issued = world.portal.links.issue("acme", created_by="user-acme", sections=sections)
    token = dict(parse_qsl(urlsplit(issued.url(PORTAL)).query))["token"]
    shown = browser.get("/portal/setup", params={"token": token})
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text))
    assert browser.post("/portal/setup", data=fields).status_code == 303


def test_the_page_lists_the_workspaces_events_newest_first_and_escaped(world: World) -> None:
    """Events appear newest first with actor, type and details; markup in them is text."""
    members = world.identity.members
    jane = members.add("acme", "<script>alert(1)</script>@acme.test", given_name="Jane")
    members.edit("acme", jane.id, attributes={"displayName": "Jane"}, actor="<b>bold</b>")
    members.add("beta", "spy@beta.test")
    with world.client() as browser:
        page = browser.get("/portal/w/acme/audit", headers=admin())
    assert page.status_code == 200
    assert _types(page) == ["member.updated", "member.created"]
    assert 'aria-current="page">Audit trail</a>' in page.text
    assert "<script>" not in page.text
    assert "<b>" not in page.text
    assert "spy@beta.test" not in page.text
    assert "&lt;b&gt;bold&lt;/b&gt;</a>" in page.text
    created = page.text[page.text.index('data-type="member.created"') :]
    assert "userName: &#34;&lt;script&gt;alert(1)&lt;/script&gt;@acme.test&#34;" in created
    # The member by the userName an admin knows, the id beside it for the record.
    name = "&lt;script&gt;alert(1)&lt;/script&gt;@acme.test"
    assert f'<td class="subject" data-id="{jane.id}" title="{jane.id}">{name}</td>' in created
    assert "2026-12-07 12:00:00 UTC" in created
    # The member's snapshot is on the member's page, not in the details.
    assert "Jane" not in created


def test_filters_by_type_actor_and_days(world: World) -> None:
    """Type, actor and an inclusive range of days each narrow the page; a fresh browser may GET."""
    members = world.identity.members
    first = members.add("acme", "ann@acme.test")  # 7 December, by the app
    world.clock.advance(timedelta(days=1))
    # 8 December, by an admin in the portal
    members.edit("acme", first.id, attributes={"displayName": "Ann"}, actor="portal:user-acme")
    world.clock.advance(timedelta(days=1))
    members.add("acme", "bob@acme.test")  # 9 December
    with world.client() as browser:

        def types(**params: str) -> list[str]:
            page = browser.get("/portal/w/acme/audit", params=params, headers=admin())
            assert page.status_code == 200, page.text
            return _types(page)

        assert types() == ["member.created", "member.updated", "member.created"]
        assert types(type="member.updated") == ["member.updated"]
        assert types(actor="portal:user-acme") == ["member.updated"]
        assert types(actor="app") == ["member.created", "member.created"]
        assert types(actor="portal") == []
        assert types(**{"from": "2026-12-08"}) == ["member.created", "member.updated"]
        assert types(to="2026-12-08") == ["member.updated", "member.created"]
        assert types(**{"from": "2026-12-08", "to": "2026-12-08"}) == ["member.updated"]
        assert types(type="member.created", to="2026-12-08") == ["member.created"]
        empty = browser.get("/portal/w/acme/audit", params={"actor": "nobody"}, headers=admin())
        assert "No event matches these filters." in empty.text
        # The row's actor links to that actor's events, keeping the other filters.
        page = browser.get("/portal/w/acme/audit", params={"to": "2026-12-08"}, headers=admin())
        assert 'href="/portal/w/acme/audit?type=&amp;actor=app&amp;from=&amp;to=2026-12-08"' in (
            page.text
        )


def test_pages_walk_every_event_once_newest_first(world: World) -> None:
    """120 events: pages of 50 by sequence number, each event once, then a link to the newest."""
    for index in range(120):
        world.identity.members.add("acme", f"user{index:03d}@acme.test")
    world.identity.members.add("beta", "user@beta.test")
    seen: list[int] = []
    with world.client() as browser:
        url: str | None = "/portal/w/acme/audit?type=member.created"
        pages = 0
        while url:
            page = browser.get(url, headers=admin())
            assert page.status_code == 200
            seen += _seqs(page)
            pages += 1
            assert ('id="newest-page"' in page.text) == (pages > 1)
            url = _link(page, "older-page")
            assert url is None or "type=member.created" in url
    assert pages == 3
    assert len(seen) == 120
    assert seen == sorted(seen, reverse=True)
    assert len(set(seen)) == 120


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"type": "member.exploded"}, "there is no event type"),
        ({"from": "yesterday"}, "is not a date (YYYY-MM-DD)"),
        ({"to": "2026-02-30"}, "is not a date (YYYY-MM-DD)"),
        ({"from": "2026-12-09", "to": "2026-12-08"}, "the time range ends before it starts"),
        ({"before": "abc"}, "does not exist"),
        ({"before": "0"}, "does not exist"),
        ({"before": "-5"}, "does not exist"),
        ({"before": "9" * 40}, "does not exist"),
        ({"before": "١٢"}, "does not exist"),
        ({"actor": "a" * 201}, "an actor is at most 200 characters"),
    ],
)
def test_a_filter_that_cannot_be_read_is_a_400_page(
    world: World, params: dict[str, str], says: str
) -> None:
    """Every unreadable filter is a 400 page that says which, never a 500."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/audit", params=params, headers=admin())
    assert page.status_code == 400
    assert says in page.text


def test_the_audit_trail_is_per_workspace_and_per_section(world: World) -> None:
    """Another workspace's admin, and a set-up link without the audit section, are refused."""
    world.identity.members.add("acme", "secret@acme.test")
    with world.client() as browser:
        refused = browser.get("/portal/w/acme/audit", headers=admin("beta"))
        assert refused.status_code == 403
        assert "secret@acme.test" not in refused.text
        own = browser.get("/portal/w/beta/audit", headers=admin("beta"))
        assert own.status_code == 200
        assert _types(own) == []
        assert "No events yet" in own.text
    with world.client() as browser:
        _open_link(world, browser, ("scim",))
        assert browser.get("/portal/w/acme/audit").status_code == 403
        assert "/audit" not in browser.get("/portal/w/acme/scim").text
    with world.client() as browser:
        _open_link(world, browser, ("scim", "audit"))
        page = browser.get("/portal/w/acme/audit")
        assert page.status_code == 200
        # The two links issued here are acme's events too, newest first.
        assert _types(page) == ["setup_link.issued", "setup_link.issued", "member.created"]
        assert browser.get("/portal/w/beta/audit").status_code == 403
