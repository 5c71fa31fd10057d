"""Set-up links: a customer's IT admin opens the portal once, for one workspace and its sections."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import httpx
import pytest

from pbidentity.domain import Tenant
from pbidentity.http import Request
from pbidentity.portal import COOKIE_NAME
from pbidentity.portal import IssuedLink
from pbidentity.saml import Finding
from pbidentity.saml import Report
from pbidentity.saml import SignInFailure
from tests.portal.conftest import PORTAL
from tests.portal.conftest import World
from tests.portal.conftest import csrf_of


def _token(issued: IssuedLink) -> str:
    return dict(parse_qsl(urlsplit(issued.url(PORTAL)).query))["token"]


def _open(browser: httpx.Client, token: str) -> httpx.Response:
    """Open the link as a browser does: its page, then its button (or the page's refusal)."""
    shown = browser.get("/portal/setup", params={"token": token})
    if shown.status_code != 200:
        return shown
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text))
    return browser.post("/portal/setup", data=fields)


def test_a_link_opens_once_then_its_session_serves_its_sections(world: World) -> None:
    """GET shows a button and spends nothing; the POST starts the session; a second POST is 410."""
    issued = world.portal.links.issue("acme", created_by="user-acme")
    assert issued.url(PORTAL).startswith("https://app.example/portal/setup?token=")
    token = _token(issued)
    with world.client() as browser:
        for _ in range(2):  # link previews and scanners GET it: nothing is spent
            shown = browser.get("/portal/setup", params={"token": token})
            assert shown.status_code == 200
            assert 'id="setup-continue"' in shown.text
            assert '<span id="setup-workspace">acme</span>' in shown.text
        before = browser.cookies.get(COOKIE_NAME)
        opened = _open(browser, token)
        assert opened.status_code == 303
        assert opened.headers["location"] == "/portal/w/acme/sso"
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Secure" in cookie
        assert browser.cookies.get(COOKIE_NAME) != before  # a new session, not the planted one
        sso = browser.get("/portal/w/acme/sso")
        assert sso.status_code == 200
        assert "Set-up link" in sso.text
        assert browser.get("/portal/w/acme/scim").status_code == 200
        # Members are not among the link's sections.
        assert browser.get("/portal/w/acme/members").status_code == 403
        assert 'href="/portal/w/acme/members"' not in sso.text
        page = browser.get("/portal/w/acme/scim")
        switched = browser.post(
            "/portal/w/acme/scim/switch", data={"csrf": csrf_of(page), "enabled": "on"}
        )
        assert switched.status_code == 303
        assert world.identity.admin.get_tenant("acme").scim_enabled
    with world.client() as second:
        assert second.get("/portal/setup", params={"token": token}).status_code == 410
        assert _open(second, token).status_code == 410
        assert second.get("/portal/w/acme/sso").status_code == 403
        fields = {"token": token, "csrf": "x"}
        assert second.post("/portal/setup", data=fields).status_code == 403
    (stored,) = world.portal.links.list("acme")
    assert stored.opened == world.clock.now
    assert stored.created_by == "user-acme"


def test_a_link_never_reaches_another_workspace(world: World) -> None:
    """A session opened for acme: every beta page and form is a 403, beta unchanged."""
    token = _token(world.portal.links.issue("acme", created_by="user-acme"))
    with world.client() as browser:
        _open(browser, token)
        csrf = csrf_of(browser.get("/portal/w/acme/scim"))
        for path in ("/portal/w/beta/sso", "/portal/w/beta/scim", "/portal/w/beta/members"):
            assert browser.get(path).status_code == 403, path
        refused = browser.post("/portal/w/beta/scim/switch", data={"csrf": csrf, "enabled": "on"})
        assert refused.status_code == 403
        refused = browser.post("/portal/w/beta/scim/tokens", data={"csrf": csrf, "name": "x"})
        assert refused.status_code == 403
    assert not world.identity.admin.get_tenant("beta").scim_enabled
    assert world.identity.admin.list_tokens("beta") == []


def test_an_altered_expired_or_revoked_link_does_not_open(world: World) -> None:
    """A token with a changed byte, one past its expiry, one revoked: 410 each, no session."""
    links = world.portal.links
    token = _token(links.issue("acme", created_by="u"))
    body, mac = token.split(".")
    forged = [
        f"{body}.{mac[:-2]}AA",
        f"{body[:-2]}AA.{mac}",
        "",
        "not-a-token",
        # Another body (another link, workspace or expiry) under this signature.
        f"{'B' if body[0] != 'B' else 'C'}{body[1:]}.{mac}",
    ]
    with world.client() as browser:
        for bad in forged:
            assert _open(browser, bad).status_code == 410, bad
        assert browser.get("/portal/w/acme/sso").status_code == 403
    short = _token(links.issue("acme", created_by="u", lifetime=timedelta(hours=1)))
    revoked = links.issue("acme", created_by="u")
    links.revoke("acme", revoked.link.id)
    world.clock.advance(timedelta(hours=1))
    with world.client() as browser:
        assert _open(browser, short).status_code == 410
        assert _open(browser, _token(revoked)).status_code == 410
        assert browser.get("/portal/w/acme/sso").status_code == 403
    # The first link still works: an hour is within its 7 days.
    with world.client() as browser:
        assert _open(browser, token).status_code == 303


def test_revoking_a_link_ends_the_session_it_opened(world: World) -> None:
    """Revoked after opening: the next request of its session is refused."""
    issued = world.portal.links.issue("acme", created_by="u")
    with world.client() as browser:
        _open(browser, _token(issued))
        assert browser.get("/portal/w/acme/sso").status_code == 200
        world.portal.links.revoke("acme", issued.link.id)
        assert browser.get("/portal/w/acme/sso").status_code == 403


def test_a_session_ends_with_its_link_or_its_lifetime(world: World) -> None:
    """The session lasts the portal's session lifetime, and never past the link's expiry."""
    long_link = _token(world.portal.links.issue("acme", created_by="u"))
    short_link = _token(
        world.portal.links.issue("acme", created_by="u", lifetime=timedelta(hours=2))
    )
    with world.client() as long_session, world.client() as short_session:
        _open(long_session, long_link)
        opened = _open(short_session, short_link)
        assert re.search(r"Max-Age=7200\b", opened.headers["set-cookie"])
        world.clock.advance(timedelta(hours=2))
        assert short_session.get("/portal/w/acme/sso").status_code == 403
        assert long_session.get("/portal/w/acme/sso").status_code == 200
        world.clock.advance(timedelta(hours=6))
        assert long_session.get("/portal/w/acme/sso").status_code == 403


def test_ending_the_session_signs_the_browser_out(world: World) -> None:
    """End this session: the browser's next request is refused."""
    with world.client() as browser:
        _open(browser, _token(world.portal.links.issue("acme", created_by="u")))
        page = browser.get("/portal/w/acme/sso")
        assert 'id="sign-out"' in page.text
        forged = browser.post("/portal/signout", data={"csrf": "forged"})
        assert forged.status_code == 403  # another site's form cannot end it
        assert browser.get("/portal/w/acme/sso").status_code == 200
        ended = browser.post("/portal/signout", data={"csrf": csrf_of(page)})
        assert ended.status_code == 200
        assert browser.get("/portal/w/acme/sso").status_code == 403


def test_issuing_checks_the_workspace_sections_and_lifetime(world: World) -> None:
    """Unknown or no sections, a lifetime of 0 or over 30 days, no such workspace: refused."""
    from pbidentity.exceptions import NotFoundError

    links = world.portal.links
    with pytest.raises(ValueError, match="opens some of"):
        links.issue("acme", created_by="u", sections=["billing"])
    with pytest.raises(ValueError, match="opens some of"):
        links.issue("acme", created_by="u", sections=[])
    for lifetime in (timedelta(0), timedelta(days=31)):
        with pytest.raises(ValueError, match="at most"):
            links.issue("acme", created_by="u", lifetime=lifetime)
    with pytest.raises(NotFoundError):
        links.issue("nowhere", created_by="u")
    assert links.list("acme") == []
    sso_only = links.issue("acme", created_by="u", sections=["sso"])
    with world.client() as browser:
        _open(browser, _token(sso_only))
        assert browser.get("/portal/w/acme/sso").status_code == 200
        assert browser.get("/portal/w/acme/scim").status_code == 403


def test_the_test_sign_in_the_portal_started_comes_back_to_its_page(world: World) -> None:
    """sign_in_result: a failed test sign-in goes back to the SSO page; others are the host's."""
    tenant = Tenant(id="t", slug="acme", name="Acme", created=world.clock.now)
    report = Report((Finding(code="response.audience", severity="error", message="wrong"),))
    failed = SignInFailure(
        tenant=tenant, purpose="authorize", report=report, relay_state="/portal/w/acme/sso"
    )
    request = Request(method="GET", path="/acme/finish", base_url="https://app.example/saml")
    answer = world.portal.sign_in_result(request, failed)
    assert answer is not None
    assert answer.status == 303
    assert answer.header("location") == "/portal/w/acme/sso?failed=1"
    member_failure = SignInFailure(
        tenant=tenant, purpose="sign_in", report=report, relay_state="/portal/w/acme/sso"
    )
    assert world.portal.sign_in_result(request, member_failure) is None
    elsewhere = SignInFailure(
        tenant=tenant, purpose="authorize", report=report, relay_state="/settings/sso"
    )
    assert world.portal.sign_in_result(request, elsewhere) is None


def test_another_sites_form_cannot_open_a_link_in_this_browser(world: World) -> None:
    """Login CSRF: the token POSTed without its page's token (another site's form) is refused.

    The link is not spent by the refusal, and this browser gets no session.
    """
    token = _token(world.portal.links.issue("acme", created_by="u"))
    with world.client() as victim:
        for fields in ({"token": token}, {"token": token, "csrf": "guess"}):
            refused = victim.post("/portal/setup", data=fields)
            assert refused.status_code == 403
            assert "press Continue" in refused.text
        # The page's token from another browser does not pass either.
        with world.client() as attacker:
            shown = attacker.get("/portal/setup", params={"token": token})
            theirs = re.search(r'name="csrf" value="([^"]+)"', shown.text)
            assert theirs is not None
        refused = victim.post("/portal/setup", data={"token": token, "csrf": theirs.group(1)})
        assert refused.status_code == 403
        assert victim.get("/portal/w/acme/sso").status_code == 403
    (link,) = world.portal.links.list("acme")
    assert link.opened is None
    with world.client() as admin_browser:
        assert _open(admin_browser, token).status_code == 303
