"""The set-up links page: the host's admins issue (shown once), list and revoke; a link never."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
from markupsafe import escape

from pbidentity.http import Request
from pbidentity.portal import Portal
from pbidentity.portal import PortalAccess
from pbidentity.wsgi import make_app
from tests.portal.conftest import ORIGIN
from tests.portal.conftest import SECRET
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.portal.conftest import csrf_of
from tests.portal.test_security import HOSTILE
from tests.portal.test_setup_links import _open


def _issue(browser: httpx.Client, workspace: str = "acme", **fields: str) -> httpx.Response:
    page = browser.get(f"/portal/w/{workspace}/links", headers=admin(workspace))
    assert page.status_code == 200, page.text
    data = {"csrf": csrf_of(page), **fields}
    return browser.post(f"/portal/w/{workspace}/links", data=data, headers=admin(workspace))


def _revoke(browser: httpx.Client, link_id: str) -> httpx.Response:
    page = browser.get("/portal/w/acme/links", headers=admin())
    return browser.post(
        "/portal/w/acme/links/revoke",
        data={"csrf": csrf_of(page), "link": link_id},
        headers=admin(),
    )


def _rows(page: httpx.Response) -> dict[str, str]:
    return dict(
        re.findall(r'<tr class="link state-\w+" data-id="([^"]+)">(.*?)</tr>', page.text, re.S)
    )


def test_an_admin_issues_a_link_once_lists_it_and_revokes_it(world: World) -> None:
    """The URL is in the answer to the issuing only; the list follows it: opened, revoked."""
    with world.client() as browser:
        empty = browser.get("/portal/w/acme/links", headers=admin())
        assert 'id="no-links"' in empty.text
        assert re.search(r'<a href="/portal/w/acme/links" aria-current="page">', empty.text)
        issued = _issue(
            browser, section_sso="on", section_scim="on", section_members="on", lifetime="1d"
        )
        assert issued.status_code == 201, issued.text
        url = re.search(r'<code id="new-link-url">([^<]+)</code>', issued.text)
        assert url
        token = url.group(1).replace("&amp;", "&").split("token=", 1)[1]
        assert url.group(1).startswith("https://app.example/portal/setup?token=")
        assert 'data-copy-target="#new-link-url"' in issued.text
        (link,) = world.portal.links.list("acme")
        assert link.sections == ("sso", "scim", "members")
        assert link.created_by == "Ada Admin"
        assert link.expires == world.clock.now + timedelta(days=1)
        listed = browser.get("/portal/w/acme/links", headers=admin())
        assert token not in listed.text  # shown once
        row = _rows(listed)[link.id]
        assert "Single sign-on (SAML), Provisioning (SCIM), Members" in row
        assert "2026-12-08 12:00 UTC" in row
        assert "Not opened yet" in row
    with world.client() as holder:
        assert _open(holder, token).status_code == 303
        assert holder.get("/portal/w/acme/members").status_code == 200
        world.clock.advance(timedelta(minutes=5))
        with world.client() as browser:
            row = _rows(browser.get("/portal/w/acme/links", headers=admin()))[link.id]
            assert "Opened 2026-12-07 12:00 UTC" in row
            assert f"actor=link%3A{link.id}" in row  # what the link's session changed
            revoked = _revoke(browser, link.id)
            assert revoked.status_code == 303
            after = browser.get(revoked.headers["location"], headers=admin())
            assert 'id="links-notice"' in after.text
            row = _rows(after)[link.id]
            assert "Revoked 2026-12-07 12:05 UTC" in row
            assert "Revoke</button>" not in row
        # The session the link opened ends at its next request.
        assert holder.get("/portal/w/acme/members").status_code == 403


def test_an_unopened_link_expires_on_the_list(world: World) -> None:
    """Past its expiry a link is listed as expired, with nothing left to revoke."""
    with world.client() as browser:
        assert _issue(browser, section_sso="on", lifetime="1h").status_code == 201
        world.clock.advance(timedelta(hours=1))
        page = browser.get("/portal/w/acme/links", headers=admin())
        (row,) = _rows(page).values()
        assert "Expired" in row
        assert "Revoke</button>" not in row


def test_a_bad_issue_form_says_why_and_issues_nothing(world: World) -> None:
    """No section, an unknown lifetime: a 400 with the sentence, the form as it was sent."""
    with world.client() as browser:
        none = _issue(browser, lifetime="7d")
        assert none.status_code == 400
        assert "Choose at least one section" in none.text
        assert 'id="section-sso" name="section_sso" value="on">' in none.text  # left unchecked
        odd = _issue(browser, section_members="on", lifetime="99y")
        assert odd.status_code == 400
        assert "how long the link stays valid" in odd.text
        assert 'id="section-members" name="section_members" value="on" checked>' in odd.text
    assert world.portal.links.list("acme") == []


def test_an_admin_gives_only_the_sections_they_have(tmp_path: Path, world: World) -> None:
    """An admin of SSO and SCIM only is offered those, and a forged form for more is refused."""

    def limited(request: Request) -> PortalAccess | None:
        return PortalAccess(
            admin_id="it-1", admin_name="IT", workspace="acme", sections=frozenset({"sso", "scim"})
        )

    portal = Portal(world.identity, authorize=limited, secret=SECRET)
    app = make_app(world.identity, mounts={"/portal": portal})
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ORIGIN) as browser:
        page = browser.get("/portal/w/acme/links")
        assert page.status_code == 200
        assert 'name="section_sso"' in page.text
        assert 'name="section_members"' not in page.text
        forged = browser.post(
            "/portal/w/acme/links",
            data={"csrf": csrf_of(page), "section_members": "on", "lifetime": "1d"},
        )
        assert forged.status_code == 400
        assert "cannot give a section you do not have: members" in forged.text
        assert portal.links.list("acme") == []
        assert (
            browser.post(
                "/portal/w/acme/links",
                data={"csrf": csrf_of(page), "section_scim": "on", "lifetime": "1d"},
            ).status_code
            == 201
        )


def test_a_set_up_link_never_sees_nor_issues_links(world: World) -> None:
    """A link's session: no navigation entry, a 403 for the page, the issuing and the revoking."""
    issued = world.portal.links.issue("acme", created_by="Ada", sections=("sso", "scim"))
    token = issued.token
    with world.client() as holder:
        assert _open(holder, token).status_code == 303
        sso = holder.get("/portal/w/acme/sso")
        assert sso.status_code == 200
        assert "/links" not in sso.text
        refused = holder.get("/portal/w/acme/links")
        assert refused.status_code == 403
        assert "a set-up link cannot see or issue them" in refused.text
        csrf = csrf_of(sso)
        for path, data in (
            ("/portal/w/acme/links", {"section_sso": "on", "lifetime": "1d"}),
            ("/portal/w/acme/links/revoke", {"link": issued.link.id}),
        ):
            assert holder.post(path, data={"csrf": csrf, **data}).status_code == 403
    (link,) = world.portal.links.list("acme")
    assert link.revoked is None


def test_an_admin_of_one_workspace_never_lists_or_revokes_another_s_links(world: World) -> None:
    """Beta's admin: 403 on acme's page; revoking acme's link id from beta's page is a 404."""
    acme_link = world.portal.links.issue("acme", created_by="Ada")
    with world.client() as browser:
        assert browser.get("/portal/w/acme/links", headers=admin("beta")).status_code == 403
        page = browser.get("/portal/w/beta/links", headers=admin("beta"))
        assert acme_link.link.id not in page.text
        moved = browser.post(
            "/portal/w/beta/links/revoke",
            data={"csrf": csrf_of(page), "link": acme_link.link.id},
            headers=admin("beta"),
        )
        assert moved.status_code == 404
        crossed = browser.post(
            "/portal/w/acme/links/revoke",
            data={"csrf": csrf_of(page), "link": acme_link.link.id},
            headers=admin("beta"),
        )
        assert crossed.status_code == 403
    assert world.portal.links.list("acme")[0].revoked is None


def test_the_issuer_s_name_is_escaped(world: World) -> None:
    """A hostile admin name is shown as text in the list."""
    with world.client() as browser:
        headers = {**admin(), "X-Test-Admin-Name": HOSTILE}
        page = browser.get("/portal/w/acme/links", headers=headers)
        browser.post(
            "/portal/w/acme/links",
            data={"csrf": csrf_of(page), "section_sso": "on", "lifetime": "1d"},
            headers=headers,
        )
        listed = browser.get("/portal/w/acme/links", headers=headers)
    assert "<script>alert(1)" not in listed.text
    assert str(escape(HOSTILE)) in listed.text


def _link_events(world: World) -> list[tuple[str, str, str, dict[str, object]]]:
    with world.identity.storage.transaction(write=False) as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        found = tx.list_events(tenant.id, types=["setup_link.issued", "setup_link.revoked"])
    return [(e.type, e.subject_id, e.actor, dict(e.data)) for e in found]


def test_issuing_and_revoking_a_link_are_in_the_audit_trail_never_its_token(world: World) -> None:
    """Both events name the admin, the link, its sections (and expiry); the token is nowhere."""
    with world.client() as browser:
        issued = _issue(browser, section_sso="on", section_scim="on", lifetime="1d")
        assert issued.status_code == 201, issued.text
        url = re.search(r'<code id="new-link-url">([^<]+)</code>', issued.text)
        assert url
        token = url.group(1).replace("&amp;", "&").split("token=", 1)[1]
        (link,) = world.portal.links.list("acme")
        for _ in range(2):  # revoking a revoked link changes, and records, nothing
            assert _revoke(browser, link.id).status_code == 303
        trail = browser.get("/portal/w/acme/audit", headers=admin())
        only_issued = browser.get(
            "/portal/w/acme/audit", params={"type": "setup_link.issued"}, headers=admin()
        )
    expires = (world.clock.now + timedelta(days=1)).isoformat()
    assert _link_events(world) == [
        (
            "setup_link.issued",
            link.id,
            "portal:user-acme",
            {"sections": ["sso", "scim"], "expires": expires, "created_by": "Ada Admin"},
        ),
        ("setup_link.revoked", link.id, "portal:user-acme", {"sections": ["sso", "scim"]}),
    ]
    assert token not in repr(_link_events(world))
    assert trail.status_code == 200
    assert 'data-type="setup_link.issued"' in trail.text
    assert 'data-type="setup_link.revoked"' in trail.text
    assert token not in trail.text
    assert only_issued.status_code == 200
    assert 'data-type="setup_link.revoked"' not in only_issued.text


def test_a_link_the_host_app_issues_itself_is_recorded_as_the_app_s(world: World) -> None:
    """Through ``portal.links`` the actor is ``app`` unless the host app names one."""
    issued = world.portal.links.issue("acme", created_by="ada", sections=["scim"])
    world.portal.links.revoke("acme", issued.link.id, actor="app:ada")
    assert [(kind, actor) for kind, _, actor, _ in _link_events(world)] == [
        ("setup_link.issued", "app"),
        ("setup_link.revoked", "app:ada"),
    ]
