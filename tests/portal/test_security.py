"""The portal under attack: forged forms, other workspaces, hostile names, broken requests."""

from __future__ import annotations

import html
import logging

import pytest

from pbidentity.http import Request
from pbidentity.portal import Portal
from pbidentity.portal import PortalAccess
from tests.portal.conftest import SECRET
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.portal.conftest import csrf_of

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def _scim_on(world: World) -> bool:
    return world.identity.admin.get_tenant("acme").scim_enabled


def test_a_form_without_this_browsers_csrf_token_changes_nothing(world: World) -> None:
    """No token, a made-up one, another browser's, or one from a page of no cookie: 403."""
    with world.client() as browser, world.client() as other:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        theirs = csrf_of(other.get("/portal/w/acme/scim", headers=admin()))
        for form in ({}, {"csrf": "forged"}, {"csrf": theirs}):
            refused = browser.post(
                "/portal/w/acme/scim/switch", data={**form, "enabled": "on"}, headers=admin()
            )
            assert refused.status_code == 403, form
            assert "Reload the page" in refused.text
        assert not _scim_on(world)
    with world.client() as fresh:
        # A browser with no portal cookie at all (the attacker's form posted cross-site).
        refused = fresh.post(
            "/portal/w/acme/scim/switch",
            data={"csrf": csrf_of(page), "enabled": "on"},
            headers=admin(),
        )
        assert refused.status_code == 403
    assert not _scim_on(world)
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        accepted = browser.post(
            "/portal/w/acme/scim/switch",
            data={"csrf": csrf_of(page), "enabled": "on"},
            headers=admin(),
        )
        assert accepted.status_code == 303
    assert _scim_on(world)


def test_a_csrf_token_is_bound_to_its_person_and_workspace(world: World) -> None:
    """A token given to one admin does not pass for another admin in the same browser."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        other_person = {**admin(), "X-Test-Admin-Name": "Mallory"}
        # The same browser, another person per the host (admin_id is per workspace
        # in the test hook): the beta admin's token is refused for acme and back.
        beta = csrf_of(browser.get("/portal/w/beta/scim", headers=admin("beta")))
        refused = browser.post(
            "/portal/w/acme/scim/switch", data={"csrf": beta, "enabled": "on"}, headers=admin()
        )
        assert refused.status_code == 403
        refused = browser.post(
            "/portal/w/beta/scim/switch",
            data={"csrf": csrf_of(page), "enabled": "on"},
            headers=admin("beta"),
        )
        assert refused.status_code == 403
        assert browser.get("/portal/w/acme/scim", headers=other_person).status_code == 200
    assert not _scim_on(world)
    assert not world.identity.admin.get_tenant("beta").scim_enabled


def test_a_form_from_another_origin_is_refused(world: World) -> None:
    """A POST whose Origin is another site is refused even with a valid token."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        refused = browser.post(
            "/portal/w/acme/scim/switch",
            data={"csrf": csrf_of(page), "enabled": "on"},
            headers={**admin(), "Origin": "https://evil.example"},
        )
        assert refused.status_code == 403
        assert "another site" in refused.text
    assert not _scim_on(world)


def test_an_admin_of_one_workspace_never_reads_or_writes_another(world: World) -> None:
    """The acme admin: every page and form of beta is a 403, and beta is unchanged."""
    world.identity.admin.create_token("beta", "okta")
    beta_member = world.identity.members.add("beta", "bob@beta.test", given_name="Bob")
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        csrf = csrf_of(page)
        for path in (
            "/portal/w/beta/sso",
            "/portal/w/beta/scim",
            "/portal/w/beta/scim/activity",
            "/portal/w/beta/members",
            f"/portal/w/beta/members/{beta_member.id}",
            "/portal/w/beta/scim/import",
        ):
            refused = browser.get(path, headers=admin())
            assert refused.status_code == 403, path
            assert "okta" not in refused.text
            assert "bob@beta.test" not in refused.text
        for path, form in (
            ("/portal/w/beta/scim/switch", {"enabled": "on"}),
            ("/portal/w/beta/scim/tokens", {"name": "mine"}),
            ("/portal/w/beta/scim/tokens/revoke", {"name": "okta"}),
            (f"/portal/w/beta/members/{beta_member.id}", {"given_name": "X", "role": "admin"}),
            ("/portal/w/beta/sso/options", {"unknown_members": "create"}),
            ("/portal/w/beta/scim/import/x/apply", {}),
        ):
            refused = browser.post(path, data={"csrf": csrf, **form}, headers=admin())
            assert refused.status_code == 403, path
        # A member id of beta through acme's own pages: not found, nothing shown.
        missing = browser.get(f"/portal/w/acme/members/{beta_member.id}", headers=admin())
        assert missing.status_code == 404
        assert "bob@beta.test" not in missing.text
    assert not world.identity.admin.get_tenant("beta").scim_enabled
    assert [t.name for t in world.identity.admin.list_tokens("beta") if t.is_active] == ["okta"]
    assert world.identity.members.get("beta", beta_member.id).role == beta_member.role


def test_hostile_names_and_values_are_escaped_everywhere(world: World) -> None:
    """Names of members, tokens and admins, and a role filter, are shown as text, never markup."""
    member = world.identity.members.add(
        "acme", "eve@acme.test", given_name=HOSTILE, family_name=HOSTILE
    )
    world.identity.admin.create_token("acme", HOSTILE[:90])
    headers = {**admin(), "X-Test-Admin-Name": HOSTILE}
    with world.client() as browser:
        pages = [
            browser.get("/portal/w/acme/members", headers=headers),
            browser.get(f"/portal/w/acme/members/{member.id}", headers=headers),
            browser.get("/portal/w/acme/scim", headers=headers),
            browser.get("/portal/w/acme/members", headers=headers, params={"q": HOSTILE}),
            browser.get("/portal/w/acme/sso", headers=headers),
            # A role filter no member has is kept in the list, as text.
            browser.get("/portal/w/acme/members", headers=headers, params={"role": HOSTILE}),
            browser.get("/portal/w/acme/links", headers=headers),
        ]
        for page in pages:
            assert page.status_code == 200, page.text
            assert "<script>alert(1)" not in page.text
            assert "<img src=x" not in page.text
        # Shown, as text: the escaped form is in the page, and reads back as the name.
        for page in (*pages[:3], pages[-2]):
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
            assert HOSTILE in html.unescape(page.text)


def test_an_unexpected_error_is_a_page_not_a_traceback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The host hook failing: 500 with a sentence; the traceback goes to the log only."""

    def broken(request: Request) -> PortalAccess | None:
        raise RuntimeError("the host's session store is down")

    portal = Portal(world.identity, authorize=broken, secret=SECRET)
    with caplog.at_level(logging.ERROR, logger="pbidentity.portal"):
        answer = portal.handle(
            Request(method="GET", path="/w/acme/sso", base_url="https://app.example/portal")
        )
    assert answer.status == 500
    assert b"Traceback" not in answer.body
    assert b"session store" not in answer.body
    assert answer.header("content-security-policy")
    assert "the host's session store is down" in caplog.text


def test_broken_requests_get_a_status_and_a_sentence(world: World) -> None:
    """Too large, a body no page sends, an unknown page, a wrong method: 413, 400, 404, 405."""
    base = "https://app.example/portal"
    too_large = world.portal.handle(
        Request(method="POST", path="/w/acme/scim/switch", base_url=base, body_truncated=True)
    )
    assert too_large.status == 413
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        odd = browser.post(
            "/portal/w/acme/scim/switch",
            content=b'{"enabled": "on"}',
            headers={**admin(), "Content-Type": "application/json"},
        )
        assert odd.status_code == 400
        assert browser.get("/portal/w/acme/nowhere", headers=admin()).status_code == 404
        assert browser.delete("/portal/w/acme/scim", headers=admin()).status_code == 405
        assert browser.get("/portal/w/acme/sso/%00", headers=admin()).status_code == 404
        assert page.status_code == 200
    assert not _scim_on(world)


def test_a_short_secret_is_refused(world: World) -> None:
    """The portal refuses a secret shorter than 32 bytes: it signs links and sessions."""
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Portal(world.identity, authorize=lambda request: None, secret="short")
