"""What an IT admin reads on the SSO, SCIM and Members pages, and each state they go through.

These assertions were the reference apps' own page tests before the apps
mounted the portal: the SP values and their copy buttons, every state of
the SSO status (none, pending, failed, active, rolled back) with its words,
the sign-in options, a metadata URL fetched over HTTP, the SCIM values,
tokens' last use and revocation, and the members table. Here the portal
sits in a host whose ``on_result`` hands the portal's test sign-ins back
to it first, as a host app does (``Portal.sign_in_result``); the IdP signs
real responses (:class:`~tests.saml.idp.TestIdp`).
"""

from __future__ import annotations

import re
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

from pbidentity import PbIdentity
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.portal import Portal
from pbidentity.saml import SamlConfig
from pbidentity.saml import SignInOutcome
from pbidentity.saml import default_result_page
from pbidentity.scim import DEFAULT_ROLE_URN
from pbidentity.wsgi import make_app
from tests.examples.harness import Page
from tests.examples.harness import read_redirect
from tests.portal.conftest import ORIGIN
from tests.portal.conftest import SECRET
from tests.portal.conftest import Clock
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.portal.conftest import csrf_of
from tests.portal.conftest import host_admin
from tests.saml.idp import CertificateSpec
from tests.saml.idp import TestIdp
from tests.scim.helpers import GROUP
from tests.scim.helpers import ROLE
from tests.scim.helpers import USER
from tests.scim.helpers import patch
from tests.scim.helpers import user

SSO = "/portal/w/acme/sso"
SCIM = "/portal/w/acme/scim"
DAY = timedelta(days=1)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Workspace acme, the portal under /portal in a host that hands test sign-ins back to it."""
    portal: Portal | None = None

    def on_result(request: Request, outcome: SignInOutcome) -> Response:
        answered = portal.sign_in_result(request, outcome) if portal else None
        return answered or default_result_page(outcome)

    # Real time: the test IdP stamps its responses with the wall clock.
    clock = Clock(datetime.now(UTC))
    identity = PbIdentity(
        f"sqlite:///{tmp_path / 'portal.db'}",
        saml=SamlConfig(public_url=ORIGIN, dev_hosts=frozenset({"127.0.0.1"})),
        on_result=on_result,
    )
    identity.admin.create_tenant("acme", "Acme")
    portal = Portal(identity, authorize=host_admin, secret=SECRET)
    yield World(identity, portal, clock, make_app(identity, mounts={"/portal": portal}))
    identity.close()


@pytest.fixture
def owner(world: World) -> Iterator[httpx.Client]:
    """The host app's admin of acme, in a browser of their own."""
    with world.client() as browser:
        browser.headers.update(admin())
        yield browser


@pytest.fixture
def idp() -> TestIdp:
    """The workspace's identity provider."""
    return TestIdp(entity_id="https://idp.example/app/exk1", sso_url="https://idp.example/sso")


def page(client: httpx.Client, path: str, status: int = 200) -> Page:
    """GET a page and check its status."""
    response = client.get(path)
    assert response.status_code == status, (response.status_code, response.text[:2000])
    return Page(response)


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
        f"{SSO}/metadata", data={"csrf": csrf, "action": action, "metadata_url": url}, files=files
    )


def post_response(
    client: httpx.Client,
    world: World,
    idp: TestIdp,
    in_response_to: str | None,
    relay_state: str | None,
    **options: Any,
) -> httpx.Response:
    """What the IdP's page posts to the ACS, then the finish step: the host's answer."""
    sp = world.identity.saml.service_provider("acme")
    form = idp.sign_in_form(
        sp=sp,
        name_id="it.admin@acme.test",
        relay_state=relay_state or "",
        in_response_to=in_response_to,
        **options,
    )
    posted = client.post("/saml/acme/acs", data=form)
    if posted.status_code != 303 or "/saml/acme/finish?code=" not in posted.headers["location"]:
        return posted
    return client.get(posted.headers["location"])


def activate(client: httpx.Client, world: World, idp: TestIdp) -> None:
    """Save & authorize ``idp``'s metadata, then pass the test sign-in."""
    redirect = read_redirect(submit_metadata(client, idp.metadata_xml(), "save"), idp)
    answer = post_response(client, world, idp, redirect.request_id, redirect.relay_state)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{SSO}?authorized=1"


def post_form(client: httpx.Client, form_page: str, action: str, **fields: str) -> httpx.Response:
    """Submit a form of ``form_page`` to ``action`` with that page's CSRF token."""
    return client.post(action, data={"csrf": page(client, form_page).csrf, **fields})


def scim_client(world: World, secret: str | None = None) -> httpx.Client:
    """An IdP's provisioning client, with a new token of acme unless given one."""
    world.identity.admin.set_scim_enabled("acme", True)
    secret = secret or world.identity.admin.create_token("acme", "idp").secret
    return httpx.Client(
        transport=httpx.WSGITransport(app=world.app),
        base_url=f"{ORIGIN}/scim/v2",
        headers={"Authorization": f"Bearer {secret}"},
    )


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


# -- Single sign-on ------------------------------------------------------------------


def test_sso_page_shows_what_the_idp_needs(world: World, owner: httpx.Client) -> None:
    """ACS URL, audience, NameID format, attribute statements and SP metadata, each with a copy."""
    sso = page(owner, SSO)
    assert sso.text("acs-url") == f"{ORIGIN}/saml/acme/acs"
    assert sso.text("audience-uri") == f"{ORIGIN}/saml/acme/metadata"
    assert "EmailAddress" in sso.text("nameid-format")
    rows = sso.find("attribute-statements").xpath(".//tbody/tr")
    statements = {r.get("data-name"): [c.text_content() for c in r.xpath(".//code")] for r in rows}
    assert statements == {
        "email": ["email", "user.email"],
        "firstName": ["firstName", "user.firstName"],
        "lastName": ["lastName", "user.lastName"],
    }
    for r in rows:  # the IdP wants both typed: a copy button for each
        name = r.get("data-name")
        targets = r.xpath('.//button[@class="copy"]/@data-copy-target')
        assert targets == [f"#attribute-{name}", f"#attribute-{name}-value"]
    metadata_url = sso.find("sp-metadata").get("href")
    assert metadata_url == f"{ORIGIN}/saml/acme/metadata"
    metadata = owner.get(metadata_url)
    assert metadata.status_code == 200
    assert f'entityID="{ORIGIN}/saml/acme/metadata"' in metadata.text
    assert len(sso.all("copy", sso.find("sp-values"))) >= 5
    assert sso.find("sso-status").get("data-state") == "none"
    assert sso.text("sso-status") == "SSO is not set up"
    for absent in ("sso-outcome", "last-attempt", "findings", "rollback", "authorize-pending"):
        assert sso.find(absent) is None, absent


def test_check_then_save_and_authorize_activates_the_configuration(
    world: World, owner: httpx.Client, idp: TestIdp
) -> None:
    """Check saves nothing; a broken file is refused; the test sign-in makes it active."""
    checked = Page(submit_metadata(owner, idp.metadata_xml(), "check"))
    assert checked.status == 200
    assert checked.all("finding", checked.find("findings")), "the plain-http dev host at least"
    assert not checked.all("severity-error")
    assert checked.find("sso-status").get("data-state") == "none"

    broken = Page(submit_metadata(owner, b"<EntityDescriptor", "check"))
    assert broken.all("severity-error", broken.find("findings"))
    refused = Page(submit_metadata(owner, b"<EntityDescriptor", "save"))
    assert refused.status == 400
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

    answer = post_response(owner, world, idp, redirect.request_id, redirect.relay_state)
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


def test_failed_test_sign_in_shows_why_then_discard(
    world: World, owner: httpx.Client, idp: TestIdp
) -> None:
    """A test sign-in for another audience: back on the page with the finding; then discarded."""
    redirect = read_redirect(submit_metadata(owner, idp.metadata_xml(), "save"), idp)
    answer = post_response(
        owner,
        world,
        idp,
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


def test_rollback_goes_back_to_the_previous_configuration(
    world: World, owner: httpx.Client, idp: TestIdp
) -> None:
    """Two activations, then rollback: the first IdP is active again, and forth is offered."""
    activate(owner, world, idp)
    rotated = TestIdp(entity_id="https://idp.example/app/exk2", sso_url="https://idp.example/sso2")
    activate(owner, world, rotated)
    after = page(owner, SSO)
    assert f"Active: {rotated.entity_id}" in after.text("sso-status")
    assert after.find("rollback") is not None
    answer = post_form(owner, SSO, f"{SSO}/rollback")
    assert answer.status_code == 303
    back = page(owner, SSO)
    assert f"Active: {idp.entity_id}" in back.text("sso-status")
    assert back.find("rollback") is not None  # and forth again, if need be


def test_an_expired_certificate_beside_a_valid_one_saves_and_is_not_shown_as_the_end(
    world: World, owner: httpx.Client
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
    checked = Page(submit_metadata(owner, rolled.metadata_xml(), "check"))
    assert not checked.all("severity-error")
    assert "will be ignored" in checked.text("findings")
    activate(owner, world, rolled)
    status = page(owner, SSO).text("sso-status")
    assert f"Active: {rolled.entity_id}, since" in status
    assert "expires 2099-12-31" in status


def test_sign_in_options_are_saved_and_shown(
    world: World, owner: httpx.Client, idp: TestIdp
) -> None:
    """IdP-started sign-ins and creating unknown people: saved, then shown checked and selected."""
    activate(owner, world, idp)
    tile = post_response(world.client(), world, idp, None, None)
    assert tile.status_code == 403
    assert "started at the identity provider" in tile.text
    saved = post_form(
        owner, SSO, f"{SSO}/options", allow_idp_initiated="on", unknown_members="create"
    )
    assert saved.status_code == 303
    options = page(owner, SSO)
    assert options.find("allow_idp_initiated").get("checked") is not None
    assert options.tree.xpath('//select[@name="unknown_members"]/option[@selected]/@value') == [
        "create"
    ]
    active = world.identity.saml.connections("acme").active
    assert active is not None
    assert active.allow_idp_initiated
    assert post_response(world.client(), world, idp, None, None).status_code == 200
    assert [m.user_name for m in world.identity.members.all("acme")] == ["it.admin@acme.test"]


def test_metadata_url_is_fetched_for_check_and_save(
    world: World, owner: httpx.Client, idp: TestIdp
) -> None:
    """The Manifest URL is fetched over HTTP for Check and for Save & authorize."""
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
        checked = Page(submit_metadata(owner, None, "check", url=url))
        assert checked.status == 200
        assert checked.all("finding", checked.find("findings"))
        assert not checked.all("severity-error")
        assert checked.find("metadata_url").get("value") == url
        read_redirect(submit_metadata(owner, None, "save", url=url), idp)
        assert world.identity.saml.connections("acme").pending is not None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_header_links_the_hosts_admin_back_to_the_app_and_no_one_else(
    world: World, owner: httpx.Client
) -> None:
    """With home_url: the host's admin gets a way back; a set-up link's holder has no app."""
    assert page(owner, SSO).find("back-to-app") is None  # no home_url: no link
    world.portal.home_url = "/dashboard"
    assert page(owner, SSO).find("back-to-app").get("href") == "/dashboard"
    token = world.portal.links.issue("acme", created_by="ada").token
    with world.client() as holder:
        shown = holder.get("/portal/setup", params={"token": token})
        opened = holder.post("/portal/setup", data={"token": token, "csrf": csrf_of(shown)})
        assert opened.status_code == 303
        held = page(holder, SSO)
        assert held.find("sign-out") is not None
        assert held.find("back-to-app") is None


# -- Provisioning (SCIM) -------------------------------------------------------------


def test_scim_page_says_what_okta_needs_and_the_switch_says_what_it_does(
    world: World, owner: httpx.Client
) -> None:
    """Base URL, unique identifier, role attribute and values; the button names the next state."""
    world.identity.admin.set_scim_enabled("acme", True)
    scim = page(owner, SCIM)
    assert scim.find("scim-state").get("data-state") == "on"
    assert scim.text("scim-toggle") == "Turn provisioning off"
    assert scim.text("scim-base-url") == f"{ORIGIN}/scim/v2"
    assert scim.text("unique-identifier") == "userName (the email address)"
    role = scim.text("role-attribute")
    assert "role" in role
    assert DEFAULT_ROLE_URN in role
    for value in ("admin", "maker", "contributor", "viewer"):
        assert value in role
    assert post_form(owner, SCIM, f"{SCIM}/switch", enabled="off").status_code == 303
    after = page(owner, SCIM)
    assert after.find("scim-state").get("data-state") == "off"
    assert after.text("scim-toggle") == "Turn provisioning on"


def test_a_new_token_has_a_copy_button_and_its_row_says_when_it_was_used(
    world: World, owner: httpx.Client
) -> None:
    """Copy for the secret; last used "never" until the IdP calls; a revoked row has no button."""
    world.identity.admin.set_scim_enabled("acme", True)
    created = Page(post_form(owner, SCIM, f"{SCIM}/tokens", name="okta"))
    secret = created.text("new-token")
    assert secret.startswith("pbi_")
    assert created.tree.xpath('//button[@class="copy"][@data-copy-target="#new-token"]')
    listed = page(owner, SCIM)
    assert cell(listed, row(listed, "token", "data-name", "okta"), "last-used") == "never"
    with scim_client(world, secret) as scim:
        assert scim.get("/Users").status_code == 200
    used = page(owner, SCIM)
    assert cell(used, row(used, "token", "data-name", "okta"), "last-used") != "never"
    post_form(owner, SCIM, f"{SCIM}/tokens/revoke", name="okta")
    after = page(owner, SCIM)
    gone = row(after, "token", "data-name", "okta")
    assert cell(after, gone, "status") == "Revoked"
    assert not after.all("revoke", gone)
    nameless = Page(post_form(owner, SCIM, f"{SCIM}/tokens", name="  "))
    assert nameless.status == 400
    assert "token name" in nameless.text("token-error")


# -- Members -------------------------------------------------------------------------


def test_members_table_shows_who_the_idp_manages_their_role_rule_and_status(
    world: World, owner: httpx.Client
) -> None:
    """Name, email, role and its rule, status and the SCIM-managed badge; names are text."""
    with scim_client(world) as scim:
        body = user("ada.lovelace@example.com", schemas=[USER, ROLE], **{ROLE: {"role": "maker"}})
        ada_id = scim.post("/Users", json=body).json()["id"]
        gone = user("alan.turing@example.com", schemas=[USER, ROLE], **{ROLE: {"role": "viewer"}})
        alan_id = scim.post("/Users", json=gone).json()["id"]
        off = patch({"op": "replace", "value": {"active": False}})
        assert scim.patch(f"/Users/{alan_id}", json=off).status_code == 200
    world.identity.members.add(
        "acme", "local@example.com", given_name="<script>alert(1)</script>", role="viewer"
    )
    listing = page(owner, "/portal/w/acme/members")
    ada = row(listing, "member", "data-user-name", "ada.lovelace@example.com")
    assert cell(listing, ada, "name") == "Ada Lovelace"
    assert cell(listing, ada, "email") == "ada.lovelace@example.com"
    assert cell(listing, ada, "role") == "maker"
    assert cell(listing, ada, "status") == "Active"
    assert cell(listing, ada, "scim-managed") == "SCIM-managed"
    member = world.identity.members.get("acme", ada_id)
    assert member.role_rule
    assert cell(listing, ada, "role-rule") == member.role_rule
    alan = row(listing, "member", "data-user-name", "alan.turing@example.com")
    assert cell(listing, alan, "status") == "Deactivated"
    local = row(listing, "member", "data-user-name", "local@example.com")
    assert not listing.all("scim-managed", local)
    # What the IdP or an admin typed is shown as text, never run as markup.
    assert cell(listing, local, "name") == "<script>alert(1)</script>"
    assert "<script>alert(1)" not in listing.response.text
    assert re.search(r"&lt;script&gt;alert\(1\)", listing.response.text)


# -- Audit trail ---------------------------------------------------------------------


def test_the_audit_trail_names_members_and_groups_even_once_deleted(
    world: World, owner: httpx.Client
) -> None:
    """Each row names its member by userName (a deleted one too) and its group by name."""
    with scim_client(world) as scim:
        ada_id = scim.post("/Users", json=user("ada@example.com")).json()["id"]
        gone_id = scim.post("/Users", json=user("gone@example.com")).json()["id"]
        group = {"schemas": [GROUP], "displayName": "Engineering", "members": [{"value": ada_id}]}
        group_id = scim.post("/Groups", json=group).json()["id"]
        assert scim.delete(f"/Users/{gone_id}").status_code == 204
        # An update's event records what changed, not who: the name comes from the member.
        renamed = patch({"op": "replace", "path": "displayName", "value": "Ada L."})
        assert scim.patch(f"/Users/{ada_id}", json=renamed).status_code == 200
    audit = page(owner, "/portal/w/acme/audit")
    subjects = {
        (r.get("data-type"), cell(audit, r, "subject")): audit.all("subject", r)[0].get("data-id")
        for r in audit.all("event")
    }
    assert subjects[("member.created", "ada@example.com")] == ada_id
    assert subjects[("member.updated", "ada@example.com")] == ada_id
    assert subjects[("member.created", "gone@example.com")] == gone_id
    assert subjects[("member.deleted", "gone@example.com")] == gone_id
    assert subjects[("group.created", "Engineering")] == group_id
    assert "link:</code> whoever opened that set-up link" in audit.response.text
