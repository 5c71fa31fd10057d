"""The portal's pages for the host app's admin: SSO, SCIM and tokens, members, over HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from pbidentity import PbIdentity
from pbidentity.portal import COOKIE_NAME
from pbidentity.portal import Portal
from pbidentity.wsgi import make_app
from tests.portal.conftest import PORTAL
from tests.portal.conftest import SECRET
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.portal.conftest import csrf_of
from tests.portal.conftest import host_admin
from tests.saml.idp import TestIdp


def test_the_host_admin_opens_every_section_of_their_workspace(world: World) -> None:
    """SSO, SCIM and Members answer 200 with their content; the root goes to the first one."""
    with world.client() as browser:
        root = browser.get("/portal/", headers=admin())
        assert root.status_code == 303
        assert root.headers["location"] == "/portal/w/acme/sso"
        sso = browser.get("/portal/w/acme/sso", headers=admin())
        assert sso.status_code == 200
        sp = world.identity.saml.service_provider("acme")
        assert f'<code id="acs-url">{sp.acs_url}</code>' in sso.text
        assert f'<code id="audience-uri">{sp.entity_id}</code>' in sso.text
        assert 'data-state="none"' in sso.text
        scim = browser.get("/portal/w/acme/scim", headers=admin())
        assert scim.status_code == 200
        assert '<code id="scim-base-url">https://app.example/scim/v2</code>' in scim.text
        assert world.identity.scim.config.role_urn in scim.text
        members = browser.get("/portal/w/acme/members", headers=admin())
        assert members.status_code == 200
        assert 'id="members"' in members.text
        for page in (sso, scim, members):
            assert 'aria-current="page"' in page.text
            assert "Ada Admin" in page.text


def test_nobody_signed_in_gets_a_refusal_or_the_host_sign_in(world: World) -> None:
    """Without the host's admin or a link: a 403 page, or a 303 to sign_in_url with next."""
    with world.client() as browser:
        refused = browser.get("/portal/w/acme/sso")
        assert refused.status_code == 403
        assert "sign in to the app" in refused.text
        assert "Traceback" not in refused.text
    world.portal.sign_in_url = "/login"
    with world.client() as browser:
        sent = browser.get("/portal/w/acme/members")
        assert sent.status_code == 303
        assert sent.headers["location"] == "/login?next=%2Fportal%2Fw%2Facme%2Fmembers"


def test_scim_switch_turns_provisioning_on_and_off(world: World) -> None:
    """The switch form flips the workspace's SCIM provisioning, each way."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        assert 'data-state="off"' in page.text
        on = browser.post(
            "/portal/w/acme/scim/switch",
            data={"csrf": csrf_of(page), "enabled": "on"},
            headers=admin(),
        )
        assert on.status_code == 303
        assert world.identity.admin.get_tenant("acme").scim_enabled
        page = browser.get("/portal/w/acme/scim", headers=admin())
        assert 'data-state="on"' in page.text
        browser.post(
            "/portal/w/acme/scim/switch",
            data={"csrf": csrf_of(page), "enabled": "off"},
            headers=admin(),
        )
        assert not world.identity.admin.get_tenant("acme").scim_enabled


def test_a_token_is_shown_once_listed_without_its_secret_and_revoked(world: World) -> None:
    """Create: 201 with the secret, which works; after: listed, never shown; revoke stops it."""
    world.identity.admin.set_scim_enabled("acme", True)
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        created = browser.post(
            "/portal/w/acme/scim/tokens",
            data={"csrf": csrf_of(page), "name": "okta"},
            headers=admin(),
        )
        assert created.status_code == 201
        assert created.headers["cache-control"] == "no-store"
        found = re.search(r'<code id="new-token">([^<]+)</code>', created.text)
        assert found
        secret = found.group(1)
        scim = httpx.Client(transport=httpx.WSGITransport(app=world.app), base_url=PORTAL)
        auth = {"Authorization": f"Bearer {secret}"}
        assert scim.get("https://app.example/scim/v2/Users", headers=auth).status_code == 200
        again = browser.get("/portal/w/acme/scim", headers=admin())
        assert secret not in again.text
        assert 'data-name="okta"' in again.text
        assert "Active" in again.text
        twice = browser.post(
            "/portal/w/acme/scim/tokens",
            data={"csrf": csrf_of(again), "name": "okta"},
            headers=admin(),
        )
        assert twice.status_code == 409
        assert "is active" in twice.text
        blank = browser.post(
            "/portal/w/acme/scim/tokens",
            data={"csrf": csrf_of(again), "name": "  "},
            headers=admin(),
        )
        assert blank.status_code == 400
        revoked = browser.post(
            "/portal/w/acme/scim/tokens/revoke",
            data={"csrf": csrf_of(again), "name": "okta"},
            headers=admin(),
        )
        assert revoked.status_code == 303
        assert scim.get("https://app.example/scim/v2/Users", headers=auth).status_code == 401
        assert "Revoked" in browser.get("/portal/w/acme/scim", headers=admin()).text
        scim.close()


def test_metadata_upload_is_checked_then_saved_and_sent_to_the_idp(world: World) -> None:
    """Check lists findings, saves nothing; Save & authorize saves pending, goes to the IdP."""
    idp = TestIdp(entity_id="http://www.okta.com/exk1", sso_url="https://acme.okta.test/sso/saml")
    xml = idp.metadata_xml()
    with world.client() as browser:
        page = browser.get("/portal/w/acme/sso", headers=admin())
        files = {"metadata_file": ("okta.xml", xml, "application/xml")}
        checked = browser.post(
            "/portal/w/acme/sso/metadata",
            data={"csrf": csrf_of(page), "action": "check", "metadata_url": ""},
            files=files,
            headers=admin(),
        )
        assert checked.status_code == 200, checked.text
        assert 'id="findings"' in checked.text
        assert world.identity.saml.connections("acme").pending is None
        missing = browser.post(
            "/portal/w/acme/sso/metadata",
            data={"csrf": csrf_of(page), "action": "check", "metadata_url": ""},
            files={"metadata_file": ("", b"", "application/octet-stream")},
            headers=admin(),
        )
        assert missing.status_code == 400
        assert "metadata.missing" in missing.text
        saved = browser.post(
            "/portal/w/acme/sso/metadata",
            data={"csrf": csrf_of(page), "action": "save", "metadata_url": ""},
            files=files,
            headers=admin(),
        )
        assert saved.status_code in (200, 302), saved.text
        assert "acme.okta.test/sso/saml" in (saved.headers.get("location") or saved.text)
        assert any(
            value.startswith("pbidentity_saml") for value in saved.headers.get_list("set-cookie")
        )
        pending = world.identity.saml.connections("acme").pending
        assert pending is not None
        assert pending.idp.entity_id == "http://www.okta.com/exk1"
        again = browser.get("/portal/w/acme/sso", headers=admin())
        assert 'data-state="pending"' in again.text
        discarded = browser.post(
            "/portal/w/acme/sso/discard", data={"csrf": csrf_of(again)}, headers=admin()
        )
        assert discarded.status_code == 303
        assert world.identity.saml.connections("acme").pending is None


def test_static_files_are_served_and_nothing_beside_them(world: World) -> None:
    """The stylesheet and the copy script are served; other names and paths are 404."""
    with world.client() as browser:
        css = browser.get("/portal/static/portal.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        js = browser.get("/portal/static/copy.js")
        assert js.status_code == 200
        assert "clipboard" in js.text
        for path in (
            "/portal/static/../_portal.py",
            "/portal/static/__init__.py",
            "/portal/static/x.css",
        ):
            assert browser.get(path).status_code == 404


def test_cookie_attributes_and_security_headers(world: World) -> None:
    """Pages: CSP without inline script, no framing, no-store; the cookie HttpOnly, Lax, Secure."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/sso", headers=admin())
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        cookie = page.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}=")
        for attribute in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/portal"):
            assert attribute in cookie
        assert "<script>" not in page.text
        assert " onclick=" not in page.text
        refused = browser.get("/portal/w/acme/sso")
        assert refused.headers["x-frame-options"] == "DENY"


def test_an_app_without_saml_shows_no_sso_section(tmp_path: Path) -> None:
    """Without SAML configured: SCIM and members only; the SSO page is a 403 that says why."""
    identity = PbIdentity(f"sqlite:///{tmp_path / 'plain.db'}")
    identity.admin.create_tenant("acme")
    portal = Portal(identity, authorize=host_admin, secret=SECRET)
    app = make_app(identity, mounts={"/portal": portal})
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="https://app.example") as browser:
        root = browser.get("/portal/", headers=admin())
        assert root.headers["location"] == "/portal/w/acme/scim"
        scim = browser.get("/portal/w/acme/scim", headers=admin())
        assert scim.status_code == 200
        assert "/sso" not in scim.text
        sso = browser.get("/portal/w/acme/sso", headers=admin())
        assert sso.status_code == 403
        assert "not configured" in sso.text
    identity.close()


def test_a_token_whose_name_has_a_slash_is_revoked_from_its_row(world: World) -> None:
    """The revoke form of the row of ``okta/prod`` revokes that token, and only it."""
    world.identity.admin.create_token("acme", "okta/prod")
    world.identity.admin.create_token("acme", "okta")
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim", headers=admin())
        row = re.search(r'<tr class="token" data-name="okta/prod">.*?</tr>', page.text, re.S)
        assert row is not None
        action = re.search(r'<form method="post" action="([^"]+)"', row.group(0))
        name = re.search(r'name="name" value="([^"]+)"', row.group(0))
        assert action is not None
        assert name is not None
        revoked = browser.post(
            action.group(1), data={"csrf": csrf_of(page), "name": name.group(1)}, headers=admin()
        )
        assert revoked.status_code == 303
    active = [t.name for t in world.identity.admin.list_tokens("acme") if t.is_active]
    assert active == ["okta"]
