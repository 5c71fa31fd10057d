"""The set-up portal clicked through in a real browser, mounted in a Flask and a FastAPI host app.

Each host app is what a real one adds to mount the portal: a
:class:`~pbidentity.PbIdentity`, a :class:`~pbidentity.portal.Portal` whose
``authorize`` hook knows nobody (no one is signed in to the host here), and
the adapter's ``init_app`` with the portal under ``/portal``. The customer's
IT admin has no account: the host hands them a set-up link. Chromium then
does the Okta story: the link, SSO from the IdP's metadata URL with Save &
authorize (a test sign-in at the local IdP), SCIM provisioning on, a token
shown once and copied, Okta's push over HTTP, and the members it made,
searched from the keyboard. Every step is saved as a full-page screenshot
under ``$PBIDENTITY_SCREENSHOTS`` (default ``artifacts/browser``),
``portal-<framework>/``.

Without Chromium the tests are skipped locally and fail in CI.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import pytest

import pbidentity.fastapi
import pbidentity.flask
from pbidentity import PbIdentity
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.portal import Portal
from pbidentity.saml import SamlConfig
from pbidentity.saml import SignInOutcome
from pbidentity.saml import default_result_page
from pbidentity.scim import DEFAULT_ROLE_URN
from tests.e2e.idp_server import running_idp
from tests.e2e.test_browser import ALAN
from tests.e2e.test_browser import DEV_HOSTS
from tests.e2e.test_browser import KATHERINE
from tests.e2e.test_browser import PEOPLE
from tests.e2e.test_browser import Screenshots
from tests.e2e.test_browser import _listening_socket
from tests.e2e.test_browser import _path
from tests.e2e.test_browser import _sign_in_at_idp
from tests.e2e.test_browser import _text_of
from tests.e2e.test_browser import _wait_until
from tests.e2e.test_browser import browser
from tests.e2e.test_browser import provision_like_okta

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["browser"]

SECRET = "portal-browser-test-" + "s" * 32
SCREENSHOTS = Path(
    os.environ.get("PBIDENTITY_SCREENSHOTS")
    or Path(__file__).resolve().parents[2] / "artifacts" / "browser"
)


def _identity(database_url: str, public_url: str) -> tuple[PbIdentity, Portal]:
    """What a host app builds: the identity, and the portal that answers its test sign-ins."""
    portal: Portal | None = None

    def on_result(request: Request, outcome: SignInOutcome) -> Response:
        # The portal's own test sign-ins go back to its page; the rest is the host's.
        answered = portal.sign_in_result(request, outcome) if portal else None
        return answered or default_result_page(outcome)

    identity = PbIdentity(
        database_url,
        saml=SamlConfig(public_url=public_url, dev_hosts=DEV_HOSTS),
        on_result=on_result,
    )
    identity.admin.create_tenant("demo", "Demo workspace")
    # Nobody is signed in to these hosts: the set-up link is the only way in.
    portal = Portal(identity, authorize=lambda request: None, secret=SECRET)
    return identity, portal


@contextmanager
def _serve_flask(database_url: str) -> Iterator[tuple[str, Portal]]:
    import flask
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            """Keep the test output clean."""

    sock = _listening_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    identity, portal = _identity(database_url, base_url)
    app = flask.Flask("portal_host")
    pbidentity.flask.init_app(app, identity, mounts={"/portal": portal})
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=Quiet, fd=sock.fileno()
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield base_url, portal
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        sock.close()
        identity.close()


@contextmanager
def _serve_fastapi(database_url: str) -> Iterator[tuple[str, Portal]]:
    import uvicorn
    from fastapi import FastAPI

    sock = _listening_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    identity, portal = _identity(database_url, base_url)
    app = FastAPI()
    pbidentity.fastapi.init_app(app, identity, mounts={"/portal": portal})
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_until(lambda: server.started or not thread.is_alive(), "uvicorn")
        assert thread.is_alive(), "uvicorn stopped at start-up (see the log above)"
        yield base_url, portal
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        identity.close()


HOSTS = {"flask": _serve_flask, "fastapi": _serve_fastapi}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(HOSTS))
def test_it_admin_sets_up_okta_through_a_set_up_link(
    kind: str, browser: Browser, tmp_path: Path
) -> None:
    """Link, SSO Save & authorize, SCIM on, a token once, Okta's push, members searched."""
    from playwright.sync_api import expect

    shot = Screenshots(SCREENSHOTS / f"portal-{kind}")
    people = {p.email: (p.first, p.last) for p in PEOPLE}
    with (
        HOSTS[kind](f"sqlite:///{tmp_path / 'host.db'}") as (app, portal),
        running_idp(people=people, host="localhost") as idp,
    ):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        page = context.new_page()
        try:
            # -- 1. The host app hands the IT admin a set-up link; opening it spends it.
            link = portal.links.issue(
                "demo", created_by="owner", sections=["sso", "scim", "roles", "members"]
            ).url(f"{app}/portal")
            page.goto(link)
            expect(page.locator("#setup-open")).to_contain_text("works once")
            shot(page, "setup-link")
            page.click("#setup-continue")
            page.wait_for_url(f"{app}/portal/w/demo/sso")
            expect(page.locator("#sso-status")).to_have_attribute("data-state", "none")
            sp = portal.identity.saml.service_provider("demo")
            assert _text_of(page, "#acs-url") == sp.acs_url
            assert _text_of(page, "#audience-uri") == sp.entity_id
            shot(page, "sso-values")

            # -- 2. The IdP's metadata URL, checked, then Save & authorize.
            page.get_by_label("Manifest URL").fill(idp.metadata_url)
            page.click("#check")
            expect(page.locator("#findings")).to_be_visible()
            expect(page.locator("#findings li.finding.severity-error")).to_have_count(0)
            shot(page, "sso-check")
            page.get_by_label("Manifest URL").fill(idp.metadata_url)
            page.click("#save-authorize")
            _sign_in_at_idp(page, idp, "it.admin@demo.test")
            assert _path(page) == "/portal/w/demo/sso"
            assert "authorized=1" in page.url
            expect(page.locator("#sso-status")).to_have_attribute("data-state", "active")
            expect(page.locator("#sso-outcome")).to_contain_text("The test sign-in succeeded")
            shot(page, "sso-authorized")

            # -- 3. Provisioning on, and the values Okta needs.
            page.get_by_role("link", name="Provisioning (SCIM)").click()
            page.wait_for_url(f"{app}/portal/w/demo/scim")
            expect(page.locator("#scim-state")).to_have_attribute("data-state", "off")
            page.click("#scim-toggle")
            expect(page.locator("#scim-state")).to_have_attribute("data-state", "on")
            assert _text_of(page, "#scim-base-url") == f"{app}/scim/v2"
            expect(page.locator("#role-attribute")).to_contain_text(DEFAULT_ROLE_URN)

            # -- 4. A token for Okta, shown once, copied exactly.
            page.get_by_label("Name of a new token").fill("okta")
            page.press("#token-name", "Enter")
            expect(page.locator("#new-token")).to_be_visible()
            token = _text_of(page, "#new-token")
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app)
            page.click("button.copy[data-copy-target='#new-token']")
            assert page.evaluate("navigator.clipboard.readText()") == token
            expect(page.locator("#tokens tr.token[data-name=okta]")).to_contain_text("Active")
            shot(page, "scim-token-once")
            page.goto(f"{app}/portal/w/demo/scim")
            expect(page.locator("#new-token")).to_have_count(0)
            assert token not in page.content()

            # -- 5. Okta pushes four people and a group, and deactivates one.
            ids = provision_like_okta(f"{app}/scim/v2", token)
            page.reload()
            expect(page.locator("#tokens tr.token[data-name=okta] .last-used")).not_to_have_text(
                "never"
            )
            shot(page, "scim-token-used")

            # -- 6. Members: everyone Okta made; searched from the keyboard.
            page.get_by_role("link", name="Members").click()
            page.wait_for_url(f"{app}/portal/w/demo/members")
            expect(page.locator("#members tr.member")).to_have_count(len(PEOPLE))
            shot(page, "members")
            page.get_by_label("Name or email").focus()
            page.keyboard.type("turing")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r"q=turing"))
            rows = page.locator("#members tr.member")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-user-name", ALAN.email)
            expect(rows.first.locator(".scim-managed")).to_have_text("SCIM-managed")
            shot(page, "members-search")
            rows.first.locator(".name a").click()
            page.wait_for_url(f"{app}/portal/w/demo/members/{ids[ALAN.email]}")
            expect(page.locator("#role-trail")).to_contain_text("role attribute 'maker'")
            expect(page.locator("#lock-reason")).to_contain_text("identity provider")
            shot(page, "member-trail")

            # -- 7. Role policy: map Engineering, preview who moves and why, then apply.
            page.get_by_role("link", name="Role policy").click()
            page.wait_for_url(f"{app}/portal/w/demo/roles")
            expect(page.locator("#groups")).to_contain_text("Engineering")
            page.get_by_label("Group of mapping 1", exact=True).fill("Engineering")
            page.get_by_label("Role of mapping 1").select_option("contributor")
            page.get_by_label("Priority of mapping 1").fill("5")
            shot(page, "roles-form")
            page.click("#preview-policy")
            # Hybrid: the others' own role attribute wins; Katherine has none, so her group decides.
            change = page.locator("#preview-changes tr.change")
            expect(change).to_have_count(1)
            expect(change).to_have_attribute("data-count", "1")
            expect(change.locator(".from")).to_have_text("viewer")
            expect(change.locator(".to")).to_have_text("contributor")
            expect(change.locator(".example")).to_contain_text(
                "group 'Engineering' (priority 5) maps to contributor"
            )
            assert portal.identity.members.get("demo", ids[KATHERINE.email]).role == "viewer"
            shot(page, "roles-preview")
            page.click("#apply-policy")
            page.wait_for_url(re.compile(r"/roles\?applied=1$"))
            expect(page.locator("#roles-notice")).to_contain_text("1 member changed role")
            shot(page, "roles-applied")
            assert portal.identity.members.get("demo", ids[KATHERINE.email]).role == "contributor"

            # -- 8. The link is spent: another browser cannot open it.
            other = browser.new_context().new_page()
            other.goto(link)
            expect(other.locator("#error")).to_contain_text("not valid")
            shot(other, "link-spent")
        except BaseException:
            with contextlib.suppress(Exception):
                shot(page, "failed")
            raise
        finally:
            for open_context in browser.contexts:
                open_context.close()
    print(f"portal-{kind}: {len(shot.taken)} screenshots in {shot.directory}")
