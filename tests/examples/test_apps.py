"""Both reference apps as host apps of the set-up portal, over real HTTP, with a signing test IdP.

Every test runs once per app (FastAPI on uvicorn, Flask on werkzeug): they
share their paths, field names and element ids, so one test drives both.
What is tested here is what a host app owns: its owner link, its sign-in
and session, the ``authorize`` hook that maps its admin to portal access,
its ``on_result`` that hands the portal's test sign-ins back to the portal,
and the set-up links it issues. The portal's own pages are tested in
``tests/portal``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.examples.harness import OWNER_TOKEN
from tests.examples.harness import AppKind
from tests.examples.harness import Page
from tests.examples.harness import Running
from tests.examples.harness import page
from tests.examples.harness import read_redirect
from tests.examples.harness import redeem_owner_link
from tests.examples.harness import serve
from tests.saml.idp import TestIdp
from tests.scim.helpers import ROLE
from tests.scim.helpers import USER
from tests.scim.helpers import patch
from tests.scim.helpers import user

SSO = "/portal/w/demo/sso"
SECTIONS = ("sso", "scim", "roles", "members", "audit")


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


def save_and_authorize(
    client: httpx.Client, app: Running, idp: TestIdp, **options: Any
) -> httpx.Response:
    """The portal's Save & authorize with ``idp``'s metadata, then the test sign-in: the answer."""
    sso = page(client, SSO)
    saved = client.post(
        f"{SSO}/metadata",
        data={"csrf": sso.csrf, "action": "save", "metadata_url": ""},
        files={"metadata_file": ("idp.xml", idp.metadata_xml(), "application/xml")},
    )
    redirect = read_redirect(saved, idp)
    assert redirect.relay_state == SSO
    return post_response(
        client, app, idp, "owner@example.com", redirect.request_id, redirect.relay_state, **options
    )


def activate(client: httpx.Client, app: Running, idp: TestIdp) -> None:
    """SSO active with ``idp``, set up in the portal by the signed-in admin."""
    answer = save_and_authorize(client, app, idp)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{SSO}?authorized=1"


def post_form(client: httpx.Client, form_page: str, action: str, **fields: Any) -> httpx.Response:
    """Submit a form of ``form_page`` to ``action`` with that page's CSRF token."""
    csrf = page(client, form_page).csrf
    return client.post(action, data={"csrf": csrf, **fields})


def scim_client(app: Running) -> httpx.Client:
    """An IdP's provisioning client, with a new token of the demo workspace."""
    secret = app.ctx.identity.admin.create_token("demo", f"idp-{id(app)}").secret
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
    app: Running,
    idp: TestIdp,
    email: str,
    client: httpx.Client | None = None,
    next_path: str = "/",
) -> tuple[httpx.Client, httpx.Response]:
    """A member's sign-in from the login page: the app, the IdP, and the ACS's answer."""
    client = client or app.client()
    start = client.get("/login/sso", params={"workspace": "demo", "next": next_path})
    assert start.status_code == 303
    assert start.headers["location"] == (f"/saml/demo/login?RelayState={quote(next_path, safe='')}")
    redirect = read_redirect(client.get(start.headers["location"]), idp)
    assert redirect.relay_state == next_path
    answer = post_response(client, app, idp, email, redirect.request_id, redirect.relay_state)
    return client, answer


def row(found: Page, css_class: str, attribute: str, value: str) -> Any:
    """The table row of that class whose ``attribute`` is ``value``."""
    rows = [r for r in found.all(css_class) if r.get(attribute) == value]
    assert len(rows) == 1, f"{len(rows)} rows {css_class} with {attribute}={value!r}"
    return rows[0]


def open_setup_link(client: httpx.Client, link: str) -> httpx.Response:
    """Open a set-up link as a browser does: its page, then its Continue button."""
    shown = client.get(link)
    assert shown.status_code == 200, shown.text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text))
    return client.post(f"{link.split('/setup?', maxsplit=1)[0]}/setup", data=fields)


# -- the owner's way in ------------------------------------------------------------------


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
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    home = page(browser, "/")
    assert "Owner" in home.text("signed-in-as")
    assert home.find("portal-link").get("href") == f"{app.base_url}/portal/"


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


# -- the portal behind the host's sign-in ------------------------------------------------


def test_the_hook_opens_every_portal_section_to_the_signed_in_admin(app: Running) -> None:
    """The owner reaches each section of their workspace, named as the app names them."""
    owner = app.owner()
    root = owner.get("/portal/")
    assert root.status_code == 303
    assert root.headers["location"] == SSO
    for section in SECTIONS:
        shown = page(owner, f"/portal/w/demo/{section}")
        assert "Owner" in shown.text("signed-in-as")
        assert shown.find("sign-out") is None  # the host's session is the host's to end
        assert shown.find("back-to-app").get("href") == "/"
    # What the admin does there is recorded under the app's own name for them.
    member = app.ctx.identity.members.add("demo", "ada@example.com", given_name="Ada")
    path = f"/portal/w/demo/members/{member.id}"
    saved = post_form(owner, path, path, given_name="Augusta", family_name="King", role="maker")
    assert saved.status_code == 303
    assert app.ctx.identity.members.get("demo", member.id).role == "maker"
    assert app.ctx.identity.members.audit_trail("demo")[-1].actor == "portal:owner"


def test_a_malformed_cookie_beside_the_session_does_not_close_the_portal(app: Running) -> None:
    """Another app's cookie on the same host, malformed: the hook reads the session as routes do."""
    owner = app.owner()
    cookie = f'other="unterminated; session={owner.cookies["session"]}; x y=1'
    for path in ("/", SSO):
        answer = httpx.get(f"{app.base_url}{path}", headers={"Cookie": cookie}, timeout=10)
        assert answer.status_code == 200, (path, answer.status_code)
        assert "Owner" in Page(answer).text("signed-in-as")


def test_strangers_are_sent_to_sign_in_and_back_to_the_portal_page(app: Running) -> None:
    """The portal sends a stranger to /login with next; SSO carries it back; no open redirect."""
    stranger = app.client()
    assert stranger.get("/").headers["location"] == "/login"
    sent = stranger.get("/portal/w/demo/members")
    assert sent.status_code == 303
    assert sent.headers["location"] == "/login?next=%2Fportal%2Fw%2Fdemo%2Fmembers"
    login = page(stranger, sent.headers["location"])
    form = login.tree.xpath('//form[@action="/login/sso"]')[0]
    assert form.get("method") == "get"
    assert form.xpath('.//input[@name="next"]/@value') == ["/portal/w/demo/members"]
    assert "Sign in with SSO" in login.text("sso-sign-in")
    assert "to open identity set-up" in login.text("signin-needed")
    assert login.find("signin-error") is None
    assert page(stranger, "/login").find("signin-needed") is None
    for elsewhere in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        start = stranger.get("/login/sso", params={"workspace": "demo", "next": elsewhere})
        assert start.headers["location"] == "/saml/demo/login?RelayState=%2F", elsewhere
        shown = page(stranger, f"/login?next={quote(elsewhere)}")
        assert shown.tree.xpath('//input[@name="next"]/@value') == ["/"]
    posted = stranger.post("/portal/w/demo/scim/switch", data={"enabled": "off", "csrf": "x"})
    assert posted.status_code == 403
    assert app.ctx.identity.admin.get_tenant("demo").scim_enabled


def test_an_admin_of_one_workspace_is_refused_another_and_signing_out_ends_it(
    app: Running,
) -> None:
    """The owner of demo gets 403 on another workspace's portal; after sign-out, /login."""
    app.ctx.identity.admin.create_tenant("other")
    owner = app.owner()
    refused = owner.get("/portal/w/other/members")
    assert refused.status_code == 403
    assert "workspace 'demo', not this one" in Page(refused).text("error")
    signed_out = post_form(owner, "/", "/logout")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"
    assert owner.get("/portal/w/demo/members").headers["location"].startswith("/login?next=")
    assert owner.get("/").headers["location"] == "/login"


def test_host_forms_without_the_sessions_csrf_token_are_refused(app: Running) -> None:
    """Sign-out, issuing and revoking links need this session's token: none, forged or another's."""
    owner = app.owner()
    foreign = page(app.owner(), "/").csrf
    issued = app.ctx.portal.links.issue("demo", created_by="test", sections=["sso"])
    for csrf in (None, "forged", foreign):
        fields = {"sections": "sso", "link": issued.link.id} | ({"csrf": csrf} if csrf else {})
        for action in ("/setup-links", "/setup-links/revoke"):
            refused = owner.post(action, data=fields)
            assert refused.status_code == 403, (action, csrf)
            assert "Reload the page" in Page(refused).text("error")
    (only,) = app.ctx.portal.links.list("demo")
    assert only.revoked is None
    assert owner.post("/logout").status_code == 403
    assert page(owner, "/").find("setup-links") is not None


def test_save_and_authorize_in_the_portal_comes_back_to_the_portal_page(
    app: Running, idp: TestIdp
) -> None:
    """The host's on_result hands the portal's test sign-ins back: succeeded, then failed."""
    owner = app.owner()
    activate(owner, app, idp)
    done = page(owner, f"{SSO}?authorized=1")
    assert done.find("sso-status").get("data-state") == "active"
    assert "The test sign-in succeeded" in done.text("sso-outcome")
    rotated = TestIdp(entity_id="https://idp.example/app/exk2", sso_url="https://idp.example/sso")
    failed = save_and_authorize(
        owner, app, rotated, audience="https://another-app.example/metadata"
    )
    assert failed.status_code == 303
    assert failed.headers["location"] == f"{SSO}?failed=1"
    assert page(owner, SSO).find("sso-status").get("data-state") == "failed"
    active = app.ctx.identity.saml.connections("demo").active
    assert active is not None
    assert active.idp.entity_id == idp.entity_id


# -- set-up links --------------------------------------------------------------------------


def test_an_admin_issues_a_set_up_link_that_opens_its_sections_in_another_browser(
    app: Running,
) -> None:
    """Shown once with a copy button; opens SSO and SCIM only, once, with no account."""
    owner = app.owner()
    issued = post_form(owner, "/", "/setup-links", sections=["sso", "scim", "bogus"])
    assert issued.status_code == 201
    shown = Page(issued)
    link = shown.text("setup-link")
    assert link.startswith(f"{app.base_url}/portal/setup?token=")
    assert shown.tree.xpath('//button[@class="copy"][@data-copy-target="#setup-link"]')
    assert issued.headers["cache-control"] == "no-store"
    assert page(owner, "/").find("setup-link") is None  # never shown again
    (record,) = app.ctx.portal.links.list("demo")
    assert record.sections == ("sso", "scim")
    assert record.created_by == "Owner (owner)"

    it_admin = app.client()
    opened = open_setup_link(it_admin, link)
    assert opened.status_code == 303
    assert opened.headers["location"] == SSO
    held = page(it_admin, SSO)
    assert held.find("acs-url") is not None
    assert held.find("back-to-app") is None  # no account in the app to go back to
    assert page(it_admin, "/portal/w/demo/scim").find("scim-toggle") is not None
    assert it_admin.get("/portal/w/demo/roles").status_code == 403
    assert it_admin.get("/").headers["location"] == "/login"  # no account in the app
    again = app.client().get(link)
    assert again.status_code == 410
    nothing = post_form(owner, "/", "/setup-links")
    assert nothing.status_code == 400
    assert "Choose what the link opens" in Page(nothing).text("setup-link-error")


def test_the_home_page_lists_the_links_and_revoking_one_ends_its_session(app: Running) -> None:
    """Not opened, then opened; revoked: the IT admin's next request is refused, no 500."""
    owner = app.owner()
    link = Page(post_form(owner, "/", "/setup-links", sections=["scim"])).text("setup-link")
    (record,) = app.ctx.portal.links.list("demo")
    listed = row(page(owner, "/"), "setup-link", "data-id", record.id)
    assert "Not opened yet" in listed.text_content()
    it_admin = app.client()
    assert open_setup_link(it_admin, link).status_code == 303
    assert it_admin.get("/portal/w/demo/scim").status_code == 200
    home = page(owner, "/")
    opened = row(home, "setup-link", "data-id", record.id)
    assert "Opened" in opened.text_content()
    assert "Provisioning (SCIM)" in opened.text_content()
    assert home.all("revoke", opened)
    revoked = post_form(owner, "/", "/setup-links/revoke", link=record.id)
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/"
    gone = row(page(owner, "/"), "setup-link", "data-id", record.id)
    assert "Revoked" in gone.text_content()
    assert not page(owner, "/").all("revoke", gone)
    ended = it_admin.get("/portal/w/demo/scim")
    assert ended.status_code == 303
    assert ended.headers["location"].startswith("/login?next=")
    unknown = post_form(owner, "/", "/setup-links/revoke", link="no-such-link")
    assert unknown.status_code == 404
    assert "no set-up link" in Page(unknown).text("error")
    # The audit trail names the app's admin who issued and revoked it.
    trail = app.ctx.identity.members.audit_trail(
        "demo", types={"setup_link.issued", "setup_link.revoked"}
    )
    assert [(e.type, e.subject_id, e.actor) for e in trail] == [
        ("setup_link.issued", record.id, "portal:owner"),
        ("setup_link.revoked", record.id, "portal:owner"),
    ]


# -- members signing in ------------------------------------------------------------------


def test_sso_sign_in_starts_a_new_member_session(app: Running, idp: TestIdp) -> None:
    """An admin by the IdP's role reaches the portal; a viewer is told the pages are not theirs."""
    owner = app.owner()
    activate(owner, app, idp)
    with scim_client(app) as scim:
        provision(scim, "grace.hopper@example.com", "admin")
        provision(scim, "viewer.only@example.com", "viewer")
    owner_cookie = owner.cookies.get("session")
    browser, answer = sso_sign_in(
        app, idp, "grace.hopper@example.com", client=owner, next_path="/portal/w/demo/members"
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/portal/w/demo/members"
    assert "set-cookie" in answer.headers
    assert browser.cookies.get("session") != owner_cookie
    members = page(browser, "/portal/w/demo/members")
    assert "Grace Hopper" in members.text("signed-in-as")
    assert "Grace Hopper (admin)" in page(browser, "/").text("signed-in-as")

    viewer, landed = sso_sign_in(app, idp, "viewer.only@example.com")
    assert landed.status_code == 303
    assert landed.headers["location"] == "/"
    home = page(viewer, "/")
    assert "viewer" in home.text("not-admin")
    assert home.find("setup-links") is None
    assert viewer.get(SSO).headers["location"].startswith("/login?next=")
    assert viewer.post("/setup-links", data={"csrf": home.csrf}).headers["location"] == "/login"


def test_a_member_demoted_by_the_idp_loses_the_portal_at_their_next_request(
    app: Running, idp: TestIdp
) -> None:
    """The hook reads the role on every request: Okta lowers it, the portal closes at once."""
    owner = app.owner()
    activate(owner, app, idp)
    with scim_client(app) as scim:
        grace = provision(scim, "grace.hopper@example.com", "admin")
        browser, _ = sso_sign_in(app, idp, "grace.hopper@example.com")
        assert browser.get(SSO).status_code == 200
        lowered = scim.patch(
            f"/Users/{grace['id']}",
            json=patch({"op": "replace", "path": f"{ROLE}:role", "value": "viewer"}),
        )
        assert lowered.status_code == 200, lowered.text
    assert browser.get(SSO).headers["location"].startswith("/login?next=")


def test_the_idp_starts_a_sign_in_that_creates_the_member(app: Running, idp: TestIdp) -> None:
    """Options saved in the portal: an Okta tile's sign-in creates the member and lands at home."""
    owner = app.owner()
    activate(owner, app, idp)
    tile = post_response(app.client(), app, idp, "new.person@example.com", None)
    assert tile.status_code == 403
    assert "started at the identity provider" in Page(tile).text("signin-error")
    saved = post_form(
        owner, SSO, f"{SSO}/options", allow_idp_initiated="on", unknown_members="create"
    )
    assert saved.status_code == 303
    answer = post_response(app.client(), app, idp, "new.person@example.com", None)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    created = [
        m for m in app.ctx.identity.members.all("demo") if m.user_name == "new.person@example.com"
    ]
    assert len(created) == 1


def test_a_sign_in_started_in_another_browser_is_refused(app: Running, idp: TestIdp) -> None:
    """Login CSRF: the attacker's response, posted from the victim's browser, signs nobody in."""
    owner = app.owner()
    activate(owner, app, idp)
    with scim_client(app) as scim:
        provision(scim, "mallory@example.com", "admin")
    attacker, victim = app.client(), app.client()
    start = attacker.get("/saml/demo/login", params={"RelayState": "/"})
    redirect = read_redirect(start, idp)
    answer = post_response(victim, app, idp, "mallory@example.com", redirect.request_id)
    assert answer.status_code == 403
    assert "not started in this browser" in Page(answer).text("signin-error")
    assert "session" not in victim.cookies
    assert victim.get("/").headers["location"] == "/login"


def test_deactivated_member_is_refused_with_the_reason(app: Running, idp: TestIdp) -> None:
    """Okta deactivates Alan: his sign-in is refused on the login page, saying why."""
    owner = app.owner()
    activate(owner, app, idp)
    with scim_client(app) as scim:
        alan = provision(scim, "alan.turing@example.com", "contributor")
        off = scim.patch(
            f"/Users/{alan['id']}", json=patch({"op": "replace", "value": {"active": False}})
        )
        assert off.status_code == 200
    browser, answer = sso_sign_in(app, idp, "alan.turing@example.com")
    assert answer.status_code == 403
    refused = Page(answer)
    assert "deactivated" in refused.text("signin-error")
    assert refused.find("sso-sign-in") is not None
    assert browser.get("/").headers["location"] == "/login"
