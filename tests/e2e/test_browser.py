"""The whole Okta story, clicked through in a real browser, in both reference apps.

A reference app (FastAPI, then Flask: they share their pages) runs on
127.0.0.1 with a SQLite file and mounts pbidentity's set-up portal; a test
IdP (:mod:`tests.e2e.idp_server`) runs beside it under another site name,
so that the browser's trips to the IdP and back are cross-site, as they are
with Okta. The workspace holds 20,000 members before the story starts.
Chromium, driven by Playwright, plays the people of the story:

* the app's admin signs in and issues a set-up link;
* the customer's IT admin, who has no account, opens it in another browser:
  SSO from the IdP's metadata URL with Save & authorize (a test sign-in at
  the IdP), provisioning on, a token shown once and copied; Okta's push
  (:mod:`pbidentity.simulate` over HTTP with that token, then the people
  of the story), and one request refused, found with its detail in
  Provisioning activity; the role policy previewed and applied; Okta's users
  report imported to link the members from before SCIM (planned, applied,
  its conflict downloaded); a member searched among the 20,000; the audit
  trail of all of it;
* the members Okta made sign in to the app through the IdP, or are refused.

Each step is a method of :class:`OktaStory`, run in order by the test, so a
new step slots in where it belongs. Every step saves full-page screenshots
under ``$PBIDENTITY_SCREENSHOTS`` (default ``artifacts/browser``), ``<app>/``,
so that a reviewer (or a failed CI run) sees what each step looked like.

Without Chromium the tests are skipped locally and fail in CI.
"""

from __future__ import annotations

import contextlib
import csv
import html
import importlib
import io
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import NoReturn
from urllib.parse import parse_qsl

import attrs
import httpx
import pytest

from pbidentity.scim import DEFAULT_ROLE_URN
from pbidentity.simulate import run as simulate
from tests.e2e.idp_server import IdpServer
from tests.e2e.idp_server import running_idp
from tests.e2e.idp_server import service_provider_for
from tests.e2e.okta import ALAN
from tests.e2e.okta import EDSGER
from tests.e2e.okta import GRACE
from tests.e2e.okta import KATHERINE
from tests.e2e.okta import PEOPLE
from tests.e2e.okta import okta_assigns_again
from tests.e2e.okta import picked_file
from tests.e2e.okta import provision_like_okta
from tests.e2e.okta import users_report

if TYPE_CHECKING:
    from playwright.sync_api import Browser
    from playwright.sync_api import Page

ARTIFACTS = Path(
    os.environ.get("PBIDENTITY_SCREENSHOTS")
    or Path(__file__).resolve().parents[2] / "artifacts" / "browser"
)
OWNER_TOKEN = "owner-" + "b00t" * 8
DEV_HOSTS = frozenset({"127.0.0.1", "localhost"})
HOW_TO_GET_CHROMIUM = (
    "the browser tests need Chromium: apt-get install chromium "
    "(or set PBIDENTITY_TEST_CHROMIUM to a Chrome or Chromium executable)"
)

# --------------------------------------------------------------------------- the browser


def _unavailable(reason: str) -> NoReturn:
    """No browser: a skip on a workstation, a failure in CI, where it must run."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, the system's (Playwright's own browsers are not needed)."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the browser tests need Playwright: pip install playwright")
    executable = os.environ.get("PBIDENTITY_TEST_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if executable is None:
        _unavailable(f"no Chromium found; {HOW_TO_GET_CHROMIUM}")
    with sync_playwright() as playwright:
        failure = ""
        try:
            # Playwright passes --no-sandbox unless asked for the sandbox,
            # which Chromium cannot use as root (containers, CI).
            launched = playwright.chromium.launch(executable_path=executable, headless=True)
        except PlaywrightError as error:
            failure = str(error).strip().splitlines()[0]
        if failure:
            # Outside the except block: the reason alone, not a chained traceback.
            _unavailable(f"Chromium ({executable}) did not start: {failure}; {HOW_TO_GET_CHROMIUM}")
        try:
            yield launched
        finally:
            launched.close()


class Screenshots:
    """Full-page screenshots numbered in the order taken, into one directory per app."""

    def __init__(self, directory: Path) -> None:
        # Last run's pictures would pass for this run's: start empty.
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        self.directory = directory
        self.taken: list[Path] = []

    def __call__(self, page: Page, name: str) -> None:
        """Save the page as ``NN-name.png``."""
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


# --------------------------------------------------------------------------- the apps


def _listening_socket() -> socket.socket:
    """A socket bound to a free port, so that the app knows its public URL before it serves."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def _create_app(kind: str, database_url: str, public_url: str) -> Any:
    module = importlib.import_module(f"examples.{kind}_app")
    return module.create_app(
        database_url,
        public_url=public_url,
        dev_hosts=DEV_HOSTS,
        owner_token=OWNER_TOKEN,
        demo=True,
    )


def _wait_until(ready: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start within {timeout:.0f} s")
        time.sleep(0.02)


@contextmanager
def _serve_fastapi(database_url: str) -> Iterator[tuple[str, Any]]:
    import uvicorn

    sock = _listening_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = _create_app("fastapi", database_url, base_url)
    config = uvicorn.Config(app, log_level="warning", ws="none", access_log=False)
    server = uvicorn.Server(config)
    # A thread, not a process: the app's errors land in this test's output.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_until(lambda: server.started or not thread.is_alive(), "uvicorn")
        assert thread.is_alive(), "uvicorn stopped at start-up (see the log above)"
        yield base_url, app.state.context
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def _serve_flask(database_url: str) -> Iterator[tuple[str, Any]]:
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            """Keep the test output clean."""

    sock = _listening_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = _create_app("flask", database_url, base_url)
    # werkzeug duplicates the descriptor: the original is closed at the end.
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=Quiet, fd=sock.fileno()
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield base_url, app.extensions["reference_app"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        sock.close()
        # Flask has no shutdown hook (FastAPI's lifespan closes its storage).
        services = app.extensions.get("reference_app")
        if services is not None:
            services.close()


SERVERS = {"fastapi": _serve_fastapi, "flask": _serve_flask}


# --------------------------------------------------------------------------- the pages


def _path(page: Page) -> str:
    return re.sub(r"^https?://[^/]+", "", page.url).split("?")[0]


def _text_of(page: Page, selector: str) -> str:
    """An element's own text (an input's value), without what its copy button says."""
    value: str = page.locator(selector).evaluate(
        """e => e.value !== undefined ? e.value : Array.from(e.childNodes)
               .filter(n => n.nodeName !== 'BUTTON').map(n => n.textContent).join('')"""
    )
    return value.strip()


def _sign_in_at_idp(page: Page, idp: IdpServer, email: str) -> None:
    """The IdP's page: type the address, sign in; the browser posts the response to the ACS."""
    from playwright.sync_api import expect

    expect(page.locator("#idp-email")).to_be_visible()
    assert page.url.startswith(idp.base_url), page.url
    page.fill("#idp-email", email)
    page.click("#idp-sign-in")
    # The IdP answers with a form that posts itself to the app's ACS, which
    # answers with a redirect: wait until the browser is back at the app.
    page.wait_for_url(lambda url: not url.startswith(idp.base_url))


def _sign_out(page: Page) -> None:
    page.click("#sign-out")
    page.wait_for_url(re.compile(r"/login$"))


def _start_sso(page: Page, app: str, workspace: str) -> None:
    page.goto(f"{app}/login")
    page.get_by_label("Workspace").fill(workspace)
    page.click("#sso-sign-in")


# --------------------------------------------------------------------------- the story

#: Members the workspace has before the story: a large one, for the members search.
SEEDED_MEMBERS = 20_000
IT_ADMIN = "it.admin@demo.test"
#: Two of the seeded members Okta's report names, linked by the import.
LINKED = ("seed00042", "seed00043")
#: An Okta user whose login is one seeded member's and whose email is another's.
CONFLICTED = ("seed00100", "seed00101")
#: Okta's users report for the link import: the story's four (unchanged, Okta
#: made them), two new hires (created), two members from before SCIM (linked),
#: and one person who is two members of the app (a conflict).
OKTA_USERS_REPORT = users_report(
    [
        *(
            (p.email, p.first, p.last, p.email, "ACTIVE", p.okta_id)
            for p in (GRACE, ALAN, KATHERINE)
        ),
        (EDSGER.email, EDSGER.first, EDSGER.last, EDSGER.email, "DEPROVISIONED", EDSGER.okta_id),
        *(
            (f"{login}@demo.test", first, last, f"{email}@demo.test", status, okta_id)
            for login, first, last, email, status, okta_id in (
                ("ada.lovelace", "Ada", "Lovelace", "ada.lovelace", "ACTIVE", "00u5ada"),
                ("barbara.liskov", "Barbara", "Liskov", "barbara.liskov", "STAGED", "00u6barb"),
                ("member00042", "Member", "00042", "member00042", "ACTIVE", "00u7m42"),
                ("member00043", "Member", "00043", "member00043", "ACTIVE", "00u7m43"),
                ("member00100", "Member", "00100", "member00101", "ACTIVE", "00u9split"),
            )
        ),
    ]
)


def seed_members(identity: Any, workspace: str, count: int) -> None:
    """``count`` members the app made before SSO and SCIM, written through storage in batches."""
    from pbidentity.domain import Member

    tenant_id = identity.admin.get_tenant(workspace).id
    now = datetime.now(UTC)
    rule = "no role from the identity provider; the default role viewer"
    for first in range(0, count, 5000):
        batch = []
        for i in range(first, min(first + 5000, count)):
            email = f"member{i:05d}@demo.test"
            attributes = {
                "userName": email,
                "active": True,
                "name": {"givenName": "Member", "familyName": f"{i:05d}"},
                "displayName": f"Member {i:05d}",
                "emails": [{"value": email, "primary": True, "type": "work"}],
            }
            batch.append(
                Member(
                    tenant_id=tenant_id,
                    id=f"seed{i:05d}",
                    attributes=attributes,
                    role="viewer",
                    role_source="default",
                    role_rule=rule,
                    scim_managed=False,
                    created=now,
                    last_modified=now,
                )
            )
        with identity.storage.transaction() as tx:
            tx.add_members(batch)


@attrs.define
class OktaStory:
    """One run of the story in one app: the people's browsers and what each step left behind.

    Each public method is one step, in the order the test calls them; a step
    leaves what later ones need (the token, the SCIM ids) on the story.
    """

    browser: Browser
    app: str
    ctx: Any
    idp: IdpServer
    shot: Screenshots
    #: The app's admin's browser, then the IT admin's (who has no account), then members'.
    page: Page | None = None
    host_page: Page | None = None
    it_admin_page: Page | None = None
    setup_link: str = ""
    token: str = ""
    ids: dict[str, str] = attrs.field(factory=dict)

    @property
    def current(self) -> Page:
        """The page of whoever acts now."""
        assert self.page is not None, "no browser opened yet"
        return self.page

    def new_page(self) -> Page:
        """A browser of its own (its own cookies), as another person's."""
        context = self.browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(10_000)
        self.page = context.new_page()
        return self.page

    # -- the app's admin -----------------------------------------------------------------

    def host_admin_signs_in(self) -> None:
        """The owner link printed at start signs the app's admin in; home offers the portal."""
        from playwright.sync_api import expect

        page = self.host_page = self.new_page()
        page.goto(f"{self.app}/bootstrap?token={OWNER_TOKEN}&workspace=demo")
        expect(page.locator("#owner-sign-in")).to_contain_text("works once")
        page.click("#owner-continue")
        page.wait_for_url(f"{self.app}/")
        expect(page.locator("#signed-in-as")).to_contain_text("Owner")
        expect(page.locator("#portal-link")).to_be_visible()
        self.shot(page, "host-home")

    def host_admin_issues_a_set_up_link(self) -> None:
        """Every section ticked, the link shown once, copied exactly."""
        from playwright.sync_api import expect

        page = self.current
        page.click("#issue-setup-link")
        link = page.locator("#setup-link")
        expect(link).to_be_visible()
        self.setup_link = _text_of(page, "#setup-link")
        assert self.setup_link.startswith(f"{self.app}/portal/setup?token=")
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.app)
        page.click("button.copy[data-copy-target='#setup-link']")
        assert page.evaluate("navigator.clipboard.readText()") == self.setup_link
        self.shot(page, "host-setup-link")

    # -- the customer's IT admin ----------------------------------------------------------

    def it_admin_opens_the_link(self) -> None:
        """Another browser, no account in the app: the link's page, Continue, the SSO page."""
        from playwright.sync_api import expect

        page = self.it_admin_page = self.new_page()
        page.goto(self.setup_link)
        expect(page.locator("#setup-open")).to_contain_text("works once")
        self.shot(page, "setup-link-page")
        page.click("#setup-continue")
        page.wait_for_url(f"{self.app}/portal/w/demo/sso")
        expect(page.locator("#signed-in-as")).to_contain_text("Set-up link")
        expect(page.locator("#back-to-app")).to_have_count(0)
        expect(page.locator("#sso-status")).to_have_attribute("data-state", "none")
        sp = self.ctx.identity.saml.service_provider("demo")
        assert _text_of(page, "#acs-url") == sp.acs_url
        assert _text_of(page, "#audience-uri") == sp.entity_id
        expect(page.locator("#nameid-format")).to_contain_text("EmailAddress")
        statements = page.locator("#attribute-statements")
        for name, value in sp.attribute_statements:
            expect(statements).to_contain_text(name)
            expect(statements).to_contain_text(value)
        assert page.locator("#sp-metadata").get_attribute("href") == sp.metadata_url
        self.shot(page, "sso-values")

    def sso_from_metadata_then_save_and_authorize(self) -> None:
        """The IdP's metadata URL checked (plain http: a warning on a dev host), then authorized."""
        from playwright.sync_api import expect

        page = self.current
        page.get_by_label("Manifest URL").fill(self.idp.metadata_url)
        page.click("#check")
        expect(page.locator("#findings li.finding").first).to_be_visible()
        expect(page.locator("#findings li.finding.severity-error")).to_have_count(0)
        expect(page.locator("#findings li.finding.severity-warning").first).to_be_visible()
        expect(page.locator("#findings")).to_contain_text("sso.dev_http")
        expect(page.locator("#findings")).to_contain_text("sp.dev_http")
        expect(page.locator("#sso-status")).to_have_attribute("data-state", "none")
        self.shot(page, "sso-check")
        page.get_by_label("Manifest URL").fill(self.idp.metadata_url)
        page.click("#save-authorize")
        expect(page.locator("#idp-email")).to_be_visible()
        self.shot(page, "idp-test-sign-in")
        _sign_in_at_idp(page, self.idp, IT_ADMIN)
        authorize = self.idp.sign_ins[-1]
        assert authorize.in_response_to is not None
        assert authorize.relay_state == "/portal/w/demo/sso"
        assert _path(page) == "/portal/w/demo/sso"
        assert "authorized=1" in page.url
        expect(page.locator("#sso-status")).to_have_attribute("data-state", "active")
        expect(page.locator("#sso-status")).to_contain_text(self.idp.idp.entity_id)
        outcome = page.locator("#sso-outcome")
        expect(outcome).to_contain_text("The test sign-in succeeded")
        # The IT admin is no member of the workspace: the report says so.
        expect(outcome).to_contain_text("test.member")
        self.shot(page, "sso-authorized")
        # Sign-ins started from an Okta tile, tried at the very end of the story.
        page.check("#allow_idp_initiated")
        page.click("#save-options")
        expect(page.locator("#allow_idp_initiated")).to_be_checked()
        expect(page.locator("#sso-status")).to_have_attribute("data-state", "active")

    def scim_on(self) -> None:
        """Provisioning on, and the values Okta needs."""
        from playwright.sync_api import expect

        page = self.current
        page.get_by_role("link", name="Provisioning (SCIM)").click()
        page.wait_for_url(f"{self.app}/portal/w/demo/scim")
        expect(page.locator("#scim-state")).to_have_attribute("data-state", "off")
        expect(page.locator("#scim-toggle")).to_have_text("Turn provisioning on")
        page.click("#scim-toggle")
        expect(page.locator("#scim-state")).to_have_attribute("data-state", "on")
        expect(page.locator("#scim-toggle")).to_have_text("Turn provisioning off")
        assert _text_of(page, "#scim-base-url") == f"{self.app}/scim/v2"
        expect(page.locator("#unique-identifier")).to_contain_text("userName")
        role_attribute = page.locator("#role-attribute")
        for text in ("role", DEFAULT_ROLE_URN, "admin", "maker", "contributor", "viewer"):
            expect(role_attribute).to_contain_text(text)
        self.shot(page, "scim-on")

    def token_created_and_shown_once(self) -> None:
        """A token named okta: shown once, copied exactly, never shown again."""
        from playwright.sync_api import expect

        page = self.current
        page.get_by_label("Name of a new token").fill("okta")
        page.press("#token-name", "Enter")
        expect(page.locator("#new-token")).to_be_visible()
        self.token = _text_of(page, "#new-token")
        assert self.token.startswith("pbi_")
        assert " " not in self.token
        # The copy button must copy the secret exactly, or Okta's test fails.
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.app)
        page.click("button.copy[data-copy-target='#new-token']")
        assert page.evaluate("navigator.clipboard.readText()") == self.token
        expect(page.locator("#tokens tr.token[data-name=okta]")).to_contain_text("Active")
        self.shot(page, "scim-token-once")
        page.goto(f"{self.app}/portal/w/demo/scim")
        expect(page.locator("#new-token")).to_have_count(0)
        assert self.token not in page.content()

    def okta_pushes(self) -> None:
        """Okta's whole conversation (the simulator), then the story's people and their group."""
        from playwright.sync_api import expect

        simulated = simulate(
            "okta-custom", f"{self.app}/scim/v2", self.token, users=3, out=io.StringIO()
        )
        assert simulated.ok, "\n".join(step.line() for step in simulated.steps)
        self.ids = provision_like_okta(f"{self.app}/scim/v2", self.token)
        page = self.current
        page.reload()
        last_used = page.locator("#tokens tr.token[data-name=okta] .last-used")
        expect(last_used).not_to_have_text("never")
        self.shot(page, "scim-token-used")

    def a_failing_request_shows_in_provisioning_activity(self) -> None:
        """Okta assigns Alan twice (409): the activity page shows it and what Okta was told."""
        from playwright.sync_api import expect

        taken = okta_assigns_again(f"{self.app}/scim/v2", self.token, ALAN)
        page = self.current
        page.get_by_role("link", name="Provisioning activity").click()
        page.wait_for_url(f"{self.app}/portal/w/demo/scim/activity")
        rows = page.locator("#requests tr.request")
        # Newest first: Okta's refused create on top, the push that went well below it.
        expect(rows.first).to_have_attribute("data-status", "409")
        assert rows.count() > 10
        self.shot(page, "activity-all")
        page.get_by_label("Failures only").check()
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"/scim/activity\?failures=on"))
        # Alan's refused create, then the two refusals the simulated conversation
        # asks for on purpose (a duplicate create, the group it deleted read again):
        # every answer of 400 and more, whoever expected it.
        expect(rows).to_have_count(3)
        for row, (status, method, path) in zip(
            rows.all(),
            [("409", "POST", "/Users"), ("404", "GET", "/Groups/"), ("409", "POST", "/Users")],
            strict=True,
        ):
            expect(row).to_have_attribute("data-status", status)
            expect(row).to_have_attribute("data-method", method)
            expect(row.locator(".path")).to_contain_text(path)
        refused = rows.first
        expect(refused).to_have_attribute("data-method", "POST")
        expect(refused.locator(".path")).to_have_text("/Users")
        expect(refused.locator(".scim-type")).to_have_text("uniqueness")
        expect(refused.locator(".detail")).to_have_text(taken)
        expect(refused.locator(".token")).to_have_text("okta")
        assert self.token not in page.content()
        self.shot(page, "activity-failure")
        # Refused, so nothing changed: Alan is one member, Okta's, as before.
        everyone = self.ctx.identity.members.all("demo")
        alans = [member.id for member in everyone if member.user_name == ALAN.email]
        assert alans == [self.ids[ALAN.email]]

    def role_policy_previewed_then_applied(self) -> None:
        """Engineering mapped to contributor: the preview says who moves and why, then apply."""
        from playwright.sync_api import expect

        page = self.current
        identity = self.ctx.identity
        page.get_by_role("link", name="Role policy").click()
        page.wait_for_url(f"{self.app}/portal/w/demo/roles")
        expect(page.locator("#groups")).to_contain_text("Engineering")
        page.get_by_label("Group of mapping 1", exact=True).fill("Engineering")
        page.get_by_label("Role of mapping 1").select_option("contributor")
        page.get_by_label("Priority of mapping 1").fill("5")
        self.shot(page, "roles-form")
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
        assert identity.members.get("demo", self.ids[KATHERINE.email]).role == "viewer"
        self.shot(page, "roles-preview")
        page.click("#apply-policy")
        page.wait_for_url(re.compile(r"/roles\?applied=1$"))
        expect(page.locator("#roles-notice")).to_contain_text("1 member changed role")
        self.shot(page, "roles-applied")
        assert identity.members.get("demo", self.ids[KATHERINE.email]).role == "contributor"

    def link_import_planned_then_applied(self) -> None:
        """Okta's users report: a plan (creates, links, a conflict), applied, conflicts as CSV."""
        from playwright.sync_api import expect

        page = self.current
        members = self.ctx.identity.members
        page.get_by_role("link", name="Provisioning (SCIM)").click()
        page.wait_for_url(f"{self.app}/portal/w/demo/scim")
        page.click("#link-import-link")
        page.wait_for_url(f"{self.app}/portal/w/demo/scim/import")
        expect(page.locator("#no-imports")).to_be_visible()
        self.shot(page, "import-upload")
        page.set_input_files("#export", files=[picked_file("okta-users.csv", OKTA_USERS_REPORT)])
        page.click("#upload")
        page.wait_for_url(f"{self.app}/portal/w/demo/scim/import/*")
        here = page.url
        expect(page.locator("#plan")).to_have_attribute("data-state", "planned")
        for action, count in {
            "create": "2",
            "link": "2",
            "reactivate": "0",
            "unchanged": "4",
            "conflict": "1",
        }.items():
            expect(page.locator(f"#count-{action}")).to_have_text(count)
        conflict = page.locator("#plan-steps tr.step[data-action=conflict]")
        expect(conflict).to_contain_text(f"member {CONFLICTED[0]} by userName")
        expect(conflict).to_contain_text(f"member {CONFLICTED[1]} by email")
        self.shot(page, "import-plan-conflicts")
        page.click("#list-changes")
        expect(page.locator("#plan-steps tr.step[data-action=create]")).to_have_count(2)
        expect(page.locator("#plan-steps tr.step[data-action=link]")).to_have_count(2)
        self.shot(page, "import-plan-changes")
        # A dry run: nothing changed yet.
        assert not members.get("demo", LINKED[0]).scim_managed
        page.click("#apply")
        expect(page.locator("#result")).to_have_attribute("data-state", "applied")
        assert page.url.split("?")[0] == here
        for name, count in {
            "created": "2",
            "linked": "2",
            "reactivated": "0",
            "unchanged": "4",
            "skipped": "1",
        }.items():
            expect(page.locator(f"#result-{name}")).to_have_text(count)
        expect(page.locator("#skipped")).to_contain_text("member00100@demo.test")
        self.shot(page, "import-result")
        for member_id, okta_id in zip(LINKED, ("00u7m42", "00u7m43"), strict=True):
            linked = members.get("demo", member_id)
            assert (linked.scim_managed, linked.external_id) == (True, okta_id)
        with page.expect_download() as download:
            page.click("#download-conflicts")
        rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text("utf-8-sig"))))
        assert rows[0] == ["identity", "externalId", "email", "reason", "candidates"]
        assert [row[:3] for row in rows[1:]] == [
            ["member00100@demo.test", "00u9split", "member00101@demo.test"]
        ]
        assert rows[1][4].split() == list(CONFLICTED)

    def members_searched_in_a_large_workspace(self) -> None:
        """Among 20,000 and more: pages of members, then one found by name from the keyboard."""
        from playwright.sync_api import expect

        page = self.current
        page.get_by_role("link", name="Members").click()
        page.wait_for_url(f"{self.app}/portal/w/demo/members")
        expect(page.locator("#members tr.member").first).to_be_visible()
        expect(page.locator("#next-page")).to_be_visible()
        self.shot(page, "members-large")
        page.get_by_label("Name or email").focus()
        page.keyboard.type("alan.turing")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"q=alan.turing"))
        rows = page.locator("#members tr.member")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-user-name", ALAN.email)
        expect(rows.first.locator(".scim-managed")).to_have_text("SCIM-managed")
        expect(rows.first.locator(".role")).to_have_text("maker")
        self.shot(page, "members-search")
        # What Okta's push left: each person's role, the rule that decided it, the status.
        expected = {
            GRACE: ("admin", "role attribute admin", "Active"),
            KATHERINE: ("contributor", "group 'Engineering'", "Active"),
            EDSGER: ("contributor", "role attribute contributor", "Deactivated"),
        }
        for person, (role, rule, state) in expected.items():
            page.get_by_label("Name or email").fill(person.email)
            page.get_by_label("Name or email").press("Enter")
            found = page.locator(f"#members tr.member[data-user-name='{person.email}']")
            expect(found.locator(".role")).to_have_text(role)
            expect(found.locator(".role-rule")).to_contain_text(rule)
            expect(found.locator(".status")).to_have_text(state)
            expect(found.locator(".name")).to_contain_text(f"{person.first} {person.last}")
        # Of the 20,000 the app made, the link import handed two to the identity provider.
        page.get_by_label("Name or email").fill("member000")
        page.get_by_label("Managed by").select_option("yes")
        page.click("#search")
        page.wait_for_url(re.compile(r"managed=yes"))
        expect(rows).to_have_count(2)
        for row, member_id in zip(rows.all(), LINKED, strict=True):
            expect(row).to_have_attribute("data-id", member_id)
            expect(row.locator(".scim-managed")).to_have_text("SCIM-managed")
        self.shot(page, "members-linked")
        page.get_by_label("Managed by").select_option("")
        page.get_by_label("Name or email").fill("alan.turing")
        page.get_by_label("Name or email").press("Enter")
        rows.first.locator(".name a").click()
        page.wait_for_url(f"{self.app}/portal/w/demo/members/{self.ids[ALAN.email]}")
        expect(page.locator("#role-trail")).to_contain_text("role attribute 'maker'")
        expect(page.locator("#lock-reason")).to_contain_text("identity provider")
        self.shot(page, "member-trail")

    def audit_trail_shows_what_happened(self) -> None:
        """The policy saved by the link's holder, Okta's changes by its token, filterable."""
        from playwright.sync_api import expect

        page = self.current
        (link,) = self.ctx.portal.links.list("demo")
        page.get_by_role("link", name="Audit trail").click()
        page.wait_for_url(f"{self.app}/portal/w/demo/audit")
        events = page.locator("#events tr.event")
        expect(events.first).to_be_visible()
        policy = page.locator("#events tr.event[data-type='policy.changed']")
        expect(policy).to_have_count(1)
        expect(policy.locator(".actor")).to_have_text(f"link:{link.id}")
        moved = page.locator("#events tr.event[data-type='member.role_changed']").first
        expect(moved.locator(".subject")).to_have_text(KATHERINE.email)
        expect(moved.locator(".subject")).to_have_attribute("data-id", self.ids[KATHERINE.email])
        expect(page.locator("#events")).to_contain_text("saml.activated")
        # The link import, newest: two members linked and two created, by the link's holder.
        seen = events.evaluate_all(
            """rows => rows.map(row => [row.dataset.type,
                   row.querySelector('.actor').textContent.trim(),
                   row.querySelector('.subject').textContent.trim()])"""
        )
        imported = [
            (kind, subject)
            for kind, actor, subject in seen
            if actor == f"link:{link.id}" and kind in ("member.linked", "member.created")
        ]
        assert imported == [
            ("member.linked", "member00043@demo.test"),
            ("member.linked", "member00042@demo.test"),
            ("member.created", "barbara.liskov@demo.test"),
            ("member.created", "ada.lovelace@demo.test"),
        ], imported
        self.shot(page, "audit")
        page.get_by_label("Actor").fill("token:okta")
        page.click("#filter")
        page.wait_for_url(re.compile(r"actor=token%3Aokta"))
        expect(events.first).to_be_visible()
        for actor in page.locator("#events tr.event .actor").all_inner_texts():
            assert actor == "token:okta", actor
        expect(page.locator("#events tr.event[data-type='member.created']").first).to_be_visible()
        self.shot(page, "audit-okta")

    def the_link_is_spent_then_revoked(self) -> None:
        """Opened once, refused in another browser; the app's admin revokes it, its session ends."""
        from playwright.sync_api import expect

        other = self.new_page()
        other.goto(self.setup_link)
        expect(other.locator("#error")).to_contain_text("not valid")
        self.shot(other, "link-spent")
        host, it_admin = self.host_page, self.it_admin_page
        assert host is not None
        assert it_admin is not None
        host.goto(f"{self.app}/")
        (link,) = self.ctx.portal.links.list("demo")
        listed = host.locator(f"#setup-link-list tr.setup-link[data-id='{link.id}']")
        expect(listed.locator(".state")).to_contain_text("Opened")
        self.shot(host, "host-links")
        listed.locator("button.revoke").click()
        expect(listed.locator(".state")).to_contain_text("Revoked")
        it_admin.reload()
        it_admin.wait_for_url(re.compile(r"/login\?next="))

    # -- the members Okta made, signing in to the app -------------------------------------

    def members_sign_in_or_are_refused(self) -> None:
        """Grace (admin) reaches the portal; Alan (maker) does not; Edsger (deactivated) cannot."""
        from playwright.sync_api import expect

        page = self.new_page()
        page.goto(f"{self.app}/portal/w/demo/members")
        page.wait_for_url(re.compile(r"/login\?next="))
        expect(page.locator("#signin-needed")).to_contain_text("identity set-up")
        self.shot(page, "member-sign-in")
        page.get_by_label("Workspace").fill("demo")
        page.click("#sso-sign-in")
        _sign_in_at_idp(page, self.idp, GRACE.email)
        assert self.idp.sign_ins[-1].relay_state == "/portal/w/demo/members"
        assert _path(page) == "/portal/w/demo/members"
        expect(page.locator("#signed-in-as")).to_contain_text("Grace Hopper")
        self.shot(page, "admin-member-in-portal")
        page.click("#back-to-app")
        page.wait_for_url(f"{self.app}/")
        _sign_out(page)

        _start_sso(page, self.app, "demo")
        _sign_in_at_idp(page, self.idp, ALAN.email)
        assert _path(page) == "/"
        expect(page.locator("#not-admin")).to_contain_text("maker")
        expect(page.locator("#open-portal")).to_have_count(0)
        self.shot(page, "non-admin-home")

        page = self.new_page()
        sp = service_provider_for(f"{self.app}/saml/demo/acs")
        _start_sso(page, self.app, "demo")
        with page.expect_response(lambda r: r.url == sp.acs_url) as acs:
            _sign_in_at_idp(page, self.idp, EDSGER.email)
        assert acs.value.status == 403
        expect(page.locator("#signin-error")).to_contain_text("deactivated")
        self.shot(page, "signin-refused")
        page.goto(f"{self.app}/")
        assert _path(page) == "/login"

    def login_csrf_is_refused(self) -> None:
        """An attacker's IdP response, posted from the victim's browser, signs nobody in."""
        from playwright.sync_api import expect

        sp = service_provider_for(f"{self.app}/saml/demo/acs")
        mallory = self.new_page()
        mallory.route(sp.acs_url, lambda route: route.abort())
        _start_sso(mallory, self.app, "demo")
        expect(mallory.locator("#idp-email")).to_be_visible()
        mallory.fill("#idp-email", ALAN.email)
        with mallory.expect_request(lambda r: r.url == sp.acs_url) as stolen:
            mallory.click("#idp-sign-in")
        fields = parse_qsl(stolen.value.post_data or "")
        assert {name for name, _ in fields} == {"SAMLResponse", "RelayState"}
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(n)}" value="{html.escape(v)}">'
            for n, v in fields
        )
        page = self.new_page()
        with page.expect_response(lambda r: "/saml/demo/finish" in r.url) as finished:
            # The attacker's page, on no site of the app's: a cross-site POST.
            page.set_content(f'<form method="post" action="{sp.acs_url}">{inputs}</form>')
            page.locator("form").evaluate("form => form.submit()")
        assert finished.value.status == 403
        expect(page.locator("#signin-error")).to_contain_text("not started in this browser")
        self.shot(page, "login-csrf-refused")
        page.goto(f"{self.app}/")
        assert _path(page) == "/login"

    def okta_tile_signs_grace_in(self) -> None:
        """IdP-initiated (allowed in the SSO step): Grace from the Okta tile lands at home."""
        from playwright.sync_api import expect

        sp = service_provider_for(f"{self.app}/saml/demo/acs")
        page = self.new_page()
        page.goto(self.idp.start_url(sp.acs_url))
        _sign_in_at_idp(page, self.idp, GRACE.email)
        from_tile = self.idp.sign_ins[-1]
        assert from_tile.in_response_to is None
        assert from_tile.relay_state == ""
        assert _path(page) == "/"
        expect(page.locator("#signed-in-as")).to_contain_text("Grace Hopper (admin)")
        self.shot(page, "idp-initiated-home")


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SERVERS))
def test_the_okta_story_end_to_end(kind: str, browser: Browser, tmp_path: Path) -> None:
    """The whole story: set-up link, SSO, SCIM, activity, roles, link import, members, audit."""
    started = time.monotonic()
    people = {p.email: (p.first, p.last) for p in PEOPLE}
    with (
        SERVERS[kind](f"sqlite:///{tmp_path / 'app.db'}") as (app, ctx),
        running_idp(people=people, host="localhost") as idp,
    ):
        seeding = time.monotonic()
        seed_members(ctx.identity, "demo", SEEDED_MEMBERS)
        timings = [f"seed {time.monotonic() - seeding:.1f}"]
        # A workspace whose provisioning its IT admin has yet to turn on.
        ctx.identity.admin.set_scim_enabled("demo", False)
        story = OktaStory(browser, app, ctx, idp, Screenshots(ARTIFACTS / kind))
        try:
            for step in (
                story.host_admin_signs_in,
                story.host_admin_issues_a_set_up_link,
                story.it_admin_opens_the_link,
                story.sso_from_metadata_then_save_and_authorize,
                story.scim_on,
                story.token_created_and_shown_once,
                story.okta_pushes,
                story.a_failing_request_shows_in_provisioning_activity,
                story.role_policy_previewed_then_applied,
                story.link_import_planned_then_applied,
                story.members_searched_in_a_large_workspace,
                story.audit_trail_shows_what_happened,
                story.the_link_is_spent_then_revoked,
                story.members_sign_in_or_are_refused,
                story.login_csrf_is_refused,
                story.okta_tile_signs_grace_in,
            ):
                began = time.monotonic()
                step()
                timings.append(f"{step.__name__} {time.monotonic() - began:.1f}")
        except BaseException:
            # What the browser showed when it went wrong is the first thing to look at;
            # a page that cannot be captured any more must not hide the failure.
            if story.page is not None:
                with contextlib.suppress(Exception):
                    story.shot(story.page, "failed")
            raise
        finally:
            for open_context in browser.contexts:
                open_context.close()
    elapsed = time.monotonic() - started
    print(f"{kind}: {len(story.shot.taken)} screenshots in {story.shot.directory}, {elapsed:.1f} s")
    print(f"{kind} seconds per step: {', '.join(timings)}")


def test_idp_server_round_trip_is_accepted(tmp_path: Path) -> None:
    """Without a browser: the test IdP's response to a real AuthnRequest activates the config.

    Keeps the test IdP honest where Chromium is missing (the browser test is
    then skipped): metadata over HTTP, the sign-in page, the signed response.
    """
    from pbidentity.admin import Admin
    from pbidentity.saml import Authorized
    from pbidentity.saml import SamlConfig
    from pbidentity.saml import SamlService
    from pbidentity.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'idp.db'}")
    try:
        Admin(storage).create_tenant("demo")
        service = SamlService(
            storage, SamlConfig(public_url="http://127.0.0.1:8000", dev_hosts=DEV_HOSTS)
        )
        with running_idp() as idp, httpx.Client(timeout=10) as client:
            saved = service.save_metadata_url("demo", idp.metadata_url)
            assert saved.saved, saved.report
            start = service.begin_authorize("demo", relay_state="/w/demo/settings/sso")
            page = client.get(start.url)
            assert page.status_code == 200
            assert 'id="idp-email"' in page.text
            assert 'id="idp-sign-in"' in page.text
            form = {
                name: html.unescape(value)
                for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', page.text)
            }
            answer = client.post(f"{idp.base_url}/sign-in", data={**form, "email": "a@demo.test"})
            posted = {
                name: html.unescape(value)
                for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', answer.text)
            }
            assert f'action="{service.service_provider("demo").acs_url}"' in answer.text
            assert posted["RelayState"] == "/w/demo/settings/sso"
            outcome = service.consume("demo", posted["SAMLResponse"], posted["RelayState"])
        assert isinstance(outcome, Authorized), outcome
        assert idp.sign_ins[-1].in_response_to == start.request_id
    finally:
        storage.close()
