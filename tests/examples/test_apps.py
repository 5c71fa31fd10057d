"""Both reference apps against the page contract, over real HTTP, with a signing test IdP.

Every test runs once per app (FastAPI on uvicorn, Flask on werkzeug): the
paths, field names and element ids are shared, so one test drives both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pbidentity.scim import DEFAULT_ROLE_URN
from tests.examples.harness import OWNER_TOKEN
from tests.examples.harness import AppKind
from tests.examples.harness import Page
from tests.examples.harness import Running
from tests.examples.harness import page
from tests.examples.harness import read_redirect
from tests.examples.harness import redeem_owner_link
from tests.examples.harness import serve
from tests.saml.idp import CertificateSpec
from tests.saml.idp import TestIdp
from tests.scim.helpers import ROLE
from tests.scim.helpers import USER
from tests.scim.helpers import patch
from tests.scim.helpers import user

SSO = "/w/demo/settings/sso"
DAY = timedelta(days=1)


@pytest.fixture(params=["fastapi", "flask"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    """The app (with the ``demo`` workspace) on a SQLite file, served on a free port."""
    kind: AppKind = request.param
    with serve(kind, f"sqlite:///{tmp_path / 'app.db'}") as running:
        yield running


@pytest.fixture
def idp() -> TestIdp:
    """The workspace's identity provider."""
    return TestIdp(entity_id="https://idp.example/app/exk1", sso_url="https://idp.example/sso")


# -- helpers ---------------------------------------------------------------------------


def submit_metadata(
    client: httpx.Client, xml: bytes | None, action: str, url: str = ""
) -> httpx.Response:
    """Send the "From Metadata" form as the browser does (multipart, with the CSRF token)."""
    csrf = page(client, SSO).csrf
    files = {"metadata_file": ("idp-metadata.xml", xml or b"", "application/xml")}
    if xml is None:
        # An empty file input: the browser sends the part with no file name.
        files = {"metadata_file": ("", b"", "application/octet-stream")}
    return client.post(
        f"{SSO}/metadata",
        data={"csrf": csrf, "action": action, "metadata_url": url},
        files=files,
    )


def post_response(
    client: httpx.Client,
    app: Running,
    idp: TestIdp,
    name_id: str,
    in_response_to: str | None,
    relay_state: str | None = None,
    **options: Any,
) -> httpx.Response:
    """What the IdP's page posts to the ACS, then the app's finish step: the app's answer.

    A verified response goes on to ``/saml/demo/finish``, which the browser
    follows with its cookies; a refusal is answered at the ACS.
    """
    sp = app.ctx.identity.saml.service_provider("demo")
    form = idp.sign_in_form(
        sp=sp,
        name_id=name_id,
        relay_state=relay_state or "",
        in_response_to=in_response_to,
        **options,
    )
    posted = client.post("/saml/demo/acs", data=form)
    finish = f"{app.base_url}/saml/demo/finish?code="
    if posted.status_code != 303 or not posted.headers["location"].startswith(finish):
        return posted
    return client.get(posted.headers["location"])


def activate(client: httpx.Client, app: Running, idp: TestIdp) -> None:
    """Save & authorize ``idp``'s metadata, then pass the test sign-in."""
    redirect = read_redirect(submit_metadata(client, idp.metadata_xml(), "save"), idp)
    answer = post_response(
        client, app, idp, "owner@example.com", redirect.request_id, redirect.relay_state
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{SSO}?authorized=1"


def post_form(client: httpx.Client, form_page: str, action: str, **fields: str) -> httpx.Response:
    """Submit a form of ``form_page`` to ``action`` with that page's CSRF token."""
    csrf = page(client, form_page).csrf
    return client.post(action, data={"csrf": csrf, **fields})


def scim_client(app: Running, secret: str | None = None) -> httpx.Client:
    """An IdP's provisioning client, with a new token of the demo workspace unless given one."""
    secret = secret or app.ctx.identity.admin.create_token("demo", f"idp-{id(app)}").secret
    return httpx.Client(
        base_url=f"{app.base_url}/scim/v2",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )


def provision(scim: httpx.Client, user_name: str, role: str) -> dict[str, Any]:
    """Create a user through SCIM, with the role extension set, as Okta pushes it."""
    body = user(user_name, schemas=[USER, ROLE], **{ROLE: {"role": role}})
    created = scim.post("/Users", json=body)
    assert created.status_code == 201, created.text
    resource: dict[str, Any] = created.json()
    return resource


def sso_sign_in(
    app: Running, idp: TestIdp, email: str, client: httpx.Client | None = None
) -> tuple[httpx.Client, httpx.Response]:
    """A member's sign-in from the login page: the app, the IdP, and the ACS's answer."""
    client = client or app.client()
    start = client.get("/login/sso", params={"workspace": "demo"})
    assert start.status_code == 303
    assert start.headers["location"] == "/saml/demo/login?RelayState=/w/demo/members"
    redirect = read_redirect(client.get(start.headers["location"]), idp)
    assert redirect.relay_state == "/w/demo/members"
    answer = post_response(client, app, idp, email, redirect.request_id, redirect.relay_state)
    return client, answer


def row(found: Page, css_class: str, attribute: str, value: str) -> Any:
    """The table row of that class whose ``attribute`` is ``value``."""
    rows = [r for r in found.all(css_class) if r.get(attribute) == value]
    assert len(rows) == 1, f"{len(rows)} rows {css_class} with {attribute}={value!r}"
    return rows[0]


def cell(found: Page, within: Any, css_class: str) -> str:
    """The text of the element of that class in a row."""
    cells = found.all(css_class, within)
    assert cells, f"no .{css_class} in the row"
    return " ".join(str(cells[0].text_content()).split())


# -- sessions and access -------------------------------------------------------------


def test_the_owner_link_is_a_page_whose_button_starts_an_owner_session(app: Running) -> None:
    """Opening the link spends nothing; its button POSTs the token and starts the session."""
    browser = app.client()
    for params in ({"token": "wrong", "workspace": "demo"}, {"token": OWNER_TOKEN}, {}):
        refused = browser.get("/bootstrap", params=params)
        assert refused.status_code == 403
        assert Page(refused).find("error") is not None
        assert "set-cookie" not in refused.headers
    link = {"token": OWNER_TOKEN, "workspace": "demo"}
    for _ in range(2):  # a link preview or a scanner opening it first changes nothing
        shown = browser.get("/bootstrap", params=link)
        assert shown.status_code == 200
        assert "set-cookie" not in shown.headers
        assert shown.headers["referrer-policy"] == "no-referrer"
        assert Page(shown).find("owner-sign-in").get("method") == "post"
    answer = redeem_owner_link(browser, link)
    assert answer.status_code == 303
    assert answer.headers["location"] == SSO
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    home = browser.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == "/w/demo/members"
    assert "Owner" in page(browser, SSO).text("signed-in-as")


def test_the_owner_link_works_once_and_for_its_own_workspace_only(app: Running) -> None:
    """Spent links, another workspace's name and a token sent by GET are all refused."""
    app.ctx.identity.admin.create_tenant("other")
    first = app.client()
    assert redeem_owner_link(first, {"token": OWNER_TOKEN, "workspace": "demo"}).status_code == 303
    again = app.client()
    spent = again.get("/bootstrap", params={"token": OWNER_TOKEN, "workspace": "demo"})
    assert spent.status_code == 403
    assert "works once" in Page(spent).text("error")
    posted = again.post("/bootstrap", data={"token": OWNER_TOKEN, "workspace": "demo"})
    assert posted.status_code == 403
    assert "set-cookie" not in posted.headers
    token = app.ctx.owner_links.issue("demo")
    for workspace in ("other", "nope"):
        elsewhere = again.post("/bootstrap", data={"token": token, "workspace": workspace})
        assert elsewhere.status_code == 403, workspace
    # Refused tries did not spend the demo link: it still works, once.
    assert redeem_owner_link(again, {"token": token, "workspace": "demo"}).status_code == 303


def test_pages_send_strangers_to_login_and_other_workspaces_get_403(app: Running) -> None:
    stranger = app.client()
    assert stranger.get("/").headers["location"] == "/login"
    for path in (
        SSO,
        "/w/demo/settings/scim",
        "/w/demo/integrations/api",
        "/w/demo/members",
    ):
        answer = stranger.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/login"
    posted = stranger.post("/w/demo/settings/scim", data={"enabled": "off", "csrf": "x"})
    assert posted.status_code == 303
    assert posted.headers["location"] == "/login"
    assert app.ctx.identity.admin.get_tenant("demo").scim_enabled
    login = page(stranger, "/login")
    form = login.tree.xpath('//form[@action="/login/sso"]')[0]
    assert form.get("method") == "get"
    assert form.xpath('.//input[@name="workspace"]')
    assert "Sign in with SSO" in login.text("sso-sign-in")
    assert login.find("signin-error") is None

    app.ctx.identity.admin.create_tenant("other")
    owner = app.owner()
    assert owner.get("/w/other/members").status_code == 403
    signed_out = post_form(owner, SSO, "/logout")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"
    assert owner.get("/w/demo/members").headers["location"] == "/login"


def test_forms_without_the_sessions_csrf_token_are_refused(app: Running) -> None:
    owner = app.owner()
    other_owner = app.owner()
    foreign = page(other_owner, "/w/demo/settings/scim").csrf
    for fields in (
        {"enabled": "off"},
        {"enabled": "off", "csrf": "forged"},
        {
            "enabled": "off",
            "csrf": foreign,
        },
    ):
        refused = owner.post("/w/demo/settings/scim", data=fields)
        assert refused.status_code == 403, fields
        assert "Reload the page" in Page(refused).text("error")
    assert app.ctx.identity.admin.get_tenant("demo").scim_enabled
    assert owner.post("/logout").status_code == 403
    assert page(owner, "/w/demo/members").find("members") is not None


# -- Settings: SSO ---------------------------------------------------------------------


def test_sso_page_shows_what_the_idp_needs(app: Running) -> None:
    owner = app.owner()
    sso = page(owner, SSO)
    assert sso.text("acs-url") == f"{app.base_url}/saml/demo/acs"
    assert sso.text("audience-uri") == f"{app.base_url}/saml/demo/metadata"
    assert "EmailAddress" in sso.text("nameid-format")
    statements = {
        r.get("data-name"): " ".join(r.text_content().split())
        for r in sso.find("attribute-statements").xpath(".//tbody/tr")
    }
    assert statements == {
        "email": "email user.email Copy",
        "firstName": "firstName user.firstName Copy",
        "lastName": "lastName user.lastName Copy",
    }
    metadata_url = sso.find("sp-metadata").get("href")
    assert metadata_url == f"{app.base_url}/saml/demo/metadata"
    metadata = httpx.get(metadata_url, timeout=10)
    assert metadata.status_code == 200
    assert f'entityID="{app.base_url}/saml/demo/metadata"' in metadata.text
    assert len(sso.all("copy", sso.find("sp-values"))) >= 5
    assert sso.find("sso-status").get("data-state") == "none"
    assert sso.text("sso-status") == "SSO is not set up"
    for absent in ("sso-outcome", "last-attempt", "findings", "rollback", "authorize-pending"):
        assert sso.find(absent) is None, absent


def test_check_then_save_and_authorize_activates_the_configuration(
    app: Running, idp: TestIdp
) -> None:
    owner = app.owner()
    checked = Page(submit_metadata(owner, idp.metadata_xml(), "check"))
    assert checked.status == 200
    findings = checked.all("finding", checked.find("findings"))
    assert findings, "the check lists what it found (the plain-http dev host at least)"
    assert not checked.all("severity-error")
    assert checked.find("sso-status").get("data-state") == "none"

    broken = Page(submit_metadata(owner, b"<EntityDescriptor", "check"))
    assert broken.all("severity-error", broken.find("findings"))
    refused = Page(submit_metadata(owner, b"<EntityDescriptor", "save"))
    assert refused.status == 422
    assert refused.all("severity-error", refused.find("findings"))
    assert refused.find("sso-status").get("data-state") == "none"
    nothing = Page(submit_metadata(owner, None, "save"))
    assert nothing.all("severity-error", nothing.find("findings"))

    redirect = read_redirect(submit_metadata(owner, idp.metadata_xml(), "save"), idp)
    assert redirect.relay_state == SSO
    pending = page(owner, SSO)
    assert pending.find("sso-status").get("data-state") == "pending"
    assert "Pending: waiting for the test sign-in" in pending.text("sso-status")
    assert pending.find("authorize-pending") is not None
    assert pending.find("discard-pending") is not None

    answer = post_response(
        owner, app, idp, "owner@example.com", redirect.request_id, redirect.relay_state
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{SSO}?authorized=1"
    done = page(owner, answer.headers["location"])
    assert done.text("sso-outcome").startswith(
        "The test sign-in succeeded; the new configuration is active."
    )
    assert done.find("sso-status").get("data-state") == "active"
    status = done.text("sso-status")
    assert f"Active: {idp.entity_id}, since" in status
    assert "expires 2099-12-31" in status
    assert done.find("rollback") is None
    assert done.find("save-options") is not None


def test_failed_test_sign_in_shows_why_then_discard(app: Running, idp: TestIdp) -> None:
    owner = app.owner()
    redirect = read_redirect(submit_metadata(owner, idp.metadata_xml(), "save"), idp)
    answer = post_response(
        owner,
        app,
        idp,
        "owner@example.com",
        redirect.request_id,
        redirect.relay_state,
        audience="https://another-app.example/metadata",
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{SSO}?failed=1"
    failed = page(owner, answer.headers["location"])
    assert failed.find("sso-status").get("data-state") == "failed"
    assert failed.text("sso-status").startswith("The test sign-in failed: ")
    errors = failed.all("severity-error", failed.find("last-attempt"))
    assert errors
    assert "audience" in " ".join(errors[0].text_content().split()).lower()

    again = post_form(owner, SSO, f"{SSO}/authorize")
    assert read_redirect(again, idp).request_id != redirect.request_id
    discarded = post_form(owner, SSO, f"{SSO}/discard")
    assert discarded.status_code == 303
    assert page(owner, SSO).find("sso-status").get("data-state") == "none"


def test_rollback_goes_back_to_the_previous_configuration(app: Running, idp: TestIdp) -> None:
    owner = app.owner()
    activate(owner, app, idp)
    rotated = TestIdp(entity_id="https://idp.example/app/exk2", sso_url="https://idp.example/sso2")
    activate(owner, app, rotated)
    after = page(owner, SSO)
    assert f"Active: {rotated.entity_id}" in after.text("sso-status")
    assert after.find("rollback") is not None
    answer = post_form(owner, SSO, f"{SSO}/rollback")
    assert answer.status_code == 303
    back = page(owner, SSO)
    assert f"Active: {idp.entity_id}" in back.text("sso-status")
    assert back.find("rollback") is not None  # and forth again, if need be


def test_an_expired_certificate_beside_a_valid_one_saves_and_is_not_shown_as_the_end(
    app: Running,
) -> None:
    """An uncleaned rollover saves with a warning; the status shows the valid certificate's end."""
    now = datetime.now(UTC)
    rolled = TestIdp(
        entity_id="https://idp.example/app/exk2",
        sso_url="https://idp.example/sso",
        certificates=[
            CertificateSpec(cn="old", not_before=now - timedelta(days=400), not_after=now - DAY),
            CertificateSpec(cn="new"),
        ],
        signing=1,
    )
    owner = app.owner()
    checked = Page(submit_metadata(owner, rolled.metadata_xml(), "check"))
    assert not checked.all("severity-error")
    assert "will be ignored" in checked.text("findings")
    activate(owner, app, rolled)
    status = page(owner, SSO).text("sso-status")
    assert f"Active: {rolled.entity_id}, since" in status
    assert "expires 2099-12-31" in status


def test_options_let_the_idp_start_sign_ins_and_create_members(app: Running, idp: TestIdp) -> None:
    owner = app.owner()
    activate(owner, app, idp)
    tile = post_response(app.client(), app, idp, "new.person@example.com", None)
    assert tile.status_code == 403
    assert "started at the identity provider" in Page(tile).text("signin-error")
    saved = post_form(
        owner, SSO, f"{SSO}/options", allow_idp_initiated="on", unknown_members="create"
    )
    assert saved.status_code == 303
    options = page(owner, SSO)
    assert options.find("allow_idp_initiated").get("checked") is not None
    assert options.tree.xpath('//select[@name="unknown_members"]/option[@selected]/@value') == [
        "create"
    ]
    browser, answer = app.client(), None
    answer = post_response(browser, app, idp, "new.person@example.com", None)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/w/demo/members"
    created = [
        m for m in app.ctx.identity.members.all("demo") if m.user_name == "new.person@example.com"
    ]
    assert len(created) == 1


def test_metadata_url_is_fetched_for_check_and_save(app: Running, idp: TestIdp) -> None:
    document = idp.metadata_xml()

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metadata"
    try:
        owner = app.owner()
        checked = Page(submit_metadata(owner, None, "check", url=url))
        assert checked.status == 200
        assert checked.all("finding", checked.find("findings"))
        assert not checked.all("severity-error")
        assert checked.find("metadata_url").get("value") == url
        read_redirect(submit_metadata(owner, None, "save", url=url), idp)
        assert app.ctx.identity.saml.connections("demo").pending is not None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# -- Settings: SCIM, Integrations: Public API ----------------------------------------


def test_scim_page_and_switch(app: Running) -> None:
    owner = app.owner()
    scim = page(owner, "/w/demo/settings/scim")
    assert scim.find("scim-state").get("data-state") == "on"
    assert scim.text("scim-toggle") == "Turn provisioning off"
    assert scim.text("scim-base-url") == f"{app.base_url}/scim/v2"
    assert scim.text("unique-identifier") == "userName (the email address)"
    role = scim.text("role-attribute")
    assert "role" in role
    assert DEFAULT_ROLE_URN in role
    for value in ("admin", "maker", "contributor", "viewer"):
        assert value in role
    off = post_form(owner, "/w/demo/settings/scim", "/w/demo/settings/scim", enabled="off")
    assert off.status_code == 303
    after = page(owner, "/w/demo/settings/scim")
    assert after.find("scim-state").get("data-state") == "off"
    assert after.text("scim-toggle") == "Turn provisioning on"
    assert not app.ctx.identity.admin.get_tenant("demo").scim_enabled
    post_form(owner, "/w/demo/settings/scim", "/w/demo/settings/scim", enabled="on")
    assert app.ctx.identity.admin.get_tenant("demo").scim_enabled


def test_api_token_is_shown_once_works_and_can_be_revoked(app: Running) -> None:
    owner = app.owner()
    api = "/w/demo/integrations/api"
    created = Page(post_form(owner, api, f"{api}/tokens", name="okta"))
    assert created.status == 200
    secret = created.text("new-token")
    assert secret.startswith("pbi_")
    assert created.tree.xpath('//button[@class="copy"][@data-copy-target="#new-token"]')
    listed = page(owner, api)
    assert listed.find("new-token") is None
    assert secret not in listed.response.text
    okta = row(listed, "token", "data-name", "okta")
    assert cell(listed, okta, "status") == "Active"
    assert cell(listed, okta, "last-used") == "never"

    with scim_client(app, secret) as scim:
        assert scim.get("/Users").status_code == 200
        used = page(owner, api)
        assert cell(used, row(used, "token", "data-name", "okta"), "last-used") != "never"
        revoked = post_form(owner, api, f"{api}/tokens/okta/revoke")
        assert revoked.status_code == 303
        after = page(owner, api)
        gone = row(after, "token", "data-name", "okta")
        assert cell(after, gone, "status") == "Revoked"
        assert not after.all("revoke", gone)
        assert scim.get("/Users").status_code == 401
    nameless = Page(post_form(owner, api, f"{api}/tokens", name="  "))
    assert nameless.status == 400
    assert "token name" in nameless.text("token-error")


# -- Members -------------------------------------------------------------------------


def test_members_page_shows_who_the_idp_manages_and_edits_are_refused(app: Running) -> None:
    owner = app.owner()
    with scim_client(app) as scim:
        provisioned = provision(scim, "ada.lovelace@example.com", "maker")
    own = app.ctx.identity.members.add(
        "demo", "local@example.com", given_name="<script>alert(1)</script>", role="viewer"
    )
    listing = page(owner, "/w/demo/members")
    ada = row(listing, "member", "data-user-name", "ada.lovelace@example.com")
    assert cell(listing, ada, "name") == "Ada Lovelace"
    assert cell(listing, ada, "email") == "ada.lovelace@example.com"
    assert cell(listing, ada, "role") == "maker"
    assert cell(listing, ada, "status") == "Active"
    assert cell(listing, ada, "scim-managed") == "SCIM-managed"
    member = app.ctx.identity.members.get("demo", provisioned["id"])
    assert member.role_rule
    assert cell(listing, ada, "role-rule") == member.role_rule
    local = row(listing, "member", "data-user-name", "local@example.com")
    assert not listing.all("scim-managed", local)
    # What the IdP or an admin typed is shown as text, never run as markup.
    assert cell(listing, local, "name") == "<script>alert(1)</script>"
    assert "<script>alert(1)" not in listing.response.text

    path = f"/w/demo/members/{provisioned['id']}"
    refused = post_form(owner, path, path, given_name="Ada", family_name="Byron", role="admin")
    assert refused.status_code == 409
    reason = Page(refused).text("edit-refused")
    assert reason
    assert "identity provider" in reason.lower() or "idp" in reason.lower()
    assert app.ctx.identity.members.get("demo", provisioned["id"]).role == "maker"

    own_path = f"/w/demo/members/{own.id}"
    saved = post_form(
        owner, own_path, own_path, given_name="Linus", family_name="Local", role="contributor"
    )
    assert saved.status_code == 303
    edited = app.ctx.identity.members.get("demo", own.id)
    assert edited.display_name == "Linus Local"
    assert edited.role == "contributor"


def test_sso_sign_in_starts_a_new_member_session(app: Running, idp: TestIdp) -> None:
    owner = app.owner()
    activate(owner, app, idp)
    with scim_client(app) as scim:
        provision(scim, "grace.hopper@example.com", "admin")
        provision(scim, "viewer.only@example.com", "viewer")
    owner_cookie = owner.cookies.get("session")
    browser, answer = sso_sign_in(app, idp, "grace.hopper@example.com", client=owner)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/w/demo/members"
    assert "set-cookie" in answer.headers
    assert browser.cookies.get("session") != owner_cookie
    members = page(browser, "/w/demo/members")
    assert "Grace Hopper (admin)" in members.text("signed-in-as")
    assert page(browser, SSO).find("sp-values") is not None

    viewer, landed = sso_sign_in(app, idp, "viewer.only@example.com")
    assert landed.status_code == 303
    sent_back = viewer.get(landed.headers["location"])
    assert sent_back.status_code == 303
    assert sent_back.headers["location"] == "/login"
    assert "viewer" in page(viewer, "/login").text("not-admin")


def test_a_sign_in_started_in_another_browser_is_refused(app: Running, idp: TestIdp) -> None:
    """Login CSRF: the attacker's response, posted from the victim's browser, signs nobody in."""
    owner = app.owner()
    activate(owner, app, idp)
    with scim_client(app) as scim:
        provision(scim, "mallory@example.com", "admin")
    attacker, victim = app.client(), app.client()
    start = attacker.get("/saml/demo/login", params={"RelayState": "/w/demo/members"})
    redirect = read_redirect(start, idp)
    answer = post_response(victim, app, idp, "mallory@example.com", redirect.request_id)
    assert answer.status_code == 403
    assert "not started in this browser" in Page(answer).text("signin-error")
    assert "session" not in victim.cookies
    assert victim.get("/w/demo/members").headers["location"] == "/login"


def test_deactivated_member_is_refused_with_the_reason(app: Running, idp: TestIdp) -> None:
    owner = app.owner()
    activate(owner, app, idp)
    with scim_client(app) as scim:
        alan = provision(scim, "alan.turing@example.com", "contributor")
        off = scim.patch(
            f"/Users/{alan['id']}", json=patch({"op": "replace", "value": {"active": False}})
        )
        assert off.status_code == 200
    listing = page(owner, "/w/demo/members")
    row_ = row(listing, "member", "data-user-name", "alan.turing@example.com")
    assert cell(listing, row_, "status") == "Deactivated"
    browser, answer = sso_sign_in(app, idp, "alan.turing@example.com")
    assert answer.status_code == 403
    refused = Page(answer)
    assert "deactivated" in refused.text("signin-error")
    assert refused.find("sso-sign-in") is not None
    assert browser.get("/").headers["location"] == "/login"
