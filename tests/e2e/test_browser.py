"""The help article "Setting up SCIM provisioning with Okta", clicked through in a real browser.

A reference app (FastAPI, then Flask: they share the page contract) runs on
127.0.0.1 with a SQLite file; a test IdP (:mod:`tests.e2e.idp_server`) runs
beside it under another site name, so that the browser's trips to the IdP
and back are cross-site, as they are with Okta. Chromium, driven by
Playwright, does what the article tells an admin to do: SSO from the IdP's
metadata URL with a test sign-in, provisioning on, an API token for Okta;
Okta's provisioning is then played over HTTP with that token, and the
members it made sign in (or are refused) through the IdP. Every page
visited is saved, full length, under ``artifacts/browser/<app>/``, so that a
reviewer (or a failed CI run) shows what each step looked like.

Without Chromium the tests are skipped locally and fail in CI.
"""

from __future__ import annotations

import contextlib
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

if TYPE_CHECKING:
    from playwright.sync_api import Browser
    from playwright.sync_api import Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
OWNER_TOKEN = "owner-" + "b00t" * 8
DEV_HOSTS = frozenset({"127.0.0.1", "localhost"})
HOW_TO_GET_CHROMIUM = (
    "the browser tests need Chromium: apt-get install chromium "
    "(or set PBIDENTITY_TEST_CHROMIUM to a Chrome or Chromium executable)"
)

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#: What Okta's SCIM client sends with every request (its custom SCIM app).
OKTA_HEADERS = {
    "User-Agent": "Okta SCIM Client 1.0.0",
    "Accept": "application/scim+json",
}
OKTA_JSON = {"Content-Type": "application/scim+json; charset=utf-8"}


@attrs.frozen
class Person:
    """Someone Okta provisions, with the role its admin put on the assignment (or none)."""

    email: str
    first: str
    last: str
    role: str | None
    okta_id: str


#: Grace is an admin by the role attribute; Katherine gets none (the default
#: role decides); Edsger is deactivated after provisioning.
GRACE = Person("grace.hopper@demo.test", "Grace", "Hopper", "admin", "00u1grace")
ALAN = Person("alan.turing@demo.test", "Alan", "Turing", "maker", "00u2alan")
KATHERINE = Person("katherine.johnson@demo.test", "Katherine", "Johnson", None, "00u3kath")
EDSGER = Person("edsger.dijkstra@demo.test", "Edsger", "Dijkstra", "contributor", "00u4eds")
PEOPLE = (GRACE, ALAN, KATHERINE, EDSGER)


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
def _serve_fastapi(database_url: str) -> Iterator[str]:
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
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def _serve_flask(database_url: str) -> Iterator[str]:
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
        yield base_url
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


# --------------------------------------------------------------------------- Okta's side


def _okta_user(person: Person) -> dict[str, Any]:
    """The body of Okta's POST /Users for an assignment, the role attribute set if any."""
    body: dict[str, Any] = {
        "schemas": [CORE_USER],
        "userName": person.email,
        "name": {"givenName": person.first, "familyName": person.last},
        "emails": [{"primary": True, "value": person.email, "type": "work"}],
        "displayName": f"{person.first} {person.last}",
        "locale": "en-US",
        "externalId": person.okta_id,
        "groups": [],
        "password": "placeholder-Okta-sends-one",
        "active": True,
    }
    if person.role is not None:
        body["schemas"].append(DEFAULT_ROLE_URN)
        body[DEFAULT_ROLE_URN] = {"role": person.role}
    return body


def provision_like_okta(scim_base_url: str, token: str) -> dict[str, str]:
    """Okta's push; returns the SCIM ids by email.

    As Okta does it: test the connection, look each person up then create
    them, push a group, deactivate one.
    """
    ids: dict[str, str] = {}
    headers = {**OKTA_HEADERS, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=scim_base_url, headers=headers, timeout=10) as client:
        probe = client.get("/Users", params={"startIndex": 1, "count": 2})
        assert probe.status_code == 200, probe.text
        for person in PEOPLE:
            lookup = client.get(
                "/Users",
                params={"filter": f'userName eq "{person.email}"', "startIndex": 1, "count": 100},
            )
            assert lookup.status_code == 200, lookup.text
            assert lookup.json()["Resources"] == []
            created = client.post("/Users", json=_okta_user(person), headers=OKTA_JSON)
            assert created.status_code == 201, created.text
            ids[person.email] = created.json()["id"]
        group = client.post(
            "/Groups",
            json={
                "schemas": [CORE_GROUP],
                "displayName": "Engineering",
                "members": [{"value": ids[p.email], "display": p.email} for p in PEOPLE],
            },
            headers=OKTA_JSON,
        )
        assert group.status_code == 201, group.text
        deactivated = client.patch(
            f"/Users/{ids[EDSGER.email]}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            },
            headers=OKTA_JSON,
        )
        assert deactivated.status_code == 200, deactivated.text
        assert deactivated.json()["active"] is False
    return ids


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
    page.locator(
        "form[action='/logout'] [type=submit], form[action='/logout'] button"
    ).first.click()
    page.wait_for_url(re.compile(r"/login$"))


def _start_sso(page: Page, app: str, workspace: str) -> None:
    page.goto(f"{app}/login")
    page.fill("input[name=workspace]", workspace)
    page.click("#sso-sign-in")


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SERVERS))
def test_okta_article_end_to_end(kind: str, browser: Browser, tmp_path: Path) -> None:
    """SSO set up and authorized, provisioning on, Okta's push, then members sign in or not."""
    from playwright.sync_api import expect

    shot = Screenshots(ARTIFACTS / kind)
    database_url = f"sqlite:///{tmp_path / 'app.db'}"
    started = time.monotonic()
    people = {p.email: (p.first, p.last) for p in PEOPLE}
    with (
        SERVERS[kind](database_url) as app,
        running_idp(people=people, host="localhost") as idp,
    ):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        page = context.new_page()
        sp = service_provider_for(f"{app}/saml/demo/acs")
        try:
            # -- 1. The admin opens the app and Settings -> SSO: the values for Okta.
            page.goto(f"{app}/bootstrap?token={OWNER_TOKEN}&workspace=demo")
            expect(page.locator("#owner-sign-in")).to_contain_text("works once")
            page.click("#owner-continue")
            page.wait_for_url(f"{app}/w/demo/settings/sso")
            expect(page.locator("#sso-status")).to_have_attribute("data-state", "none")
            assert _text_of(page, "#acs-url") == sp.acs_url
            assert _text_of(page, "#audience-uri") == sp.entity_id
            expect(page.locator("#nameid-format")).to_contain_text("EmailAddress")
            statements = page.locator("#attribute-statements")
            for name, value in sp.attribute_statements:
                expect(statements).to_contain_text(name)
                expect(statements).to_contain_text(value)
            assert page.locator("#sp-metadata").get_attribute("href") == sp.metadata_url
            shot(page, "sso-settings")

            # -- 2. Okta's metadata URL, checked: plain http warns on a dev host, no error.
            page.get_by_label("Manifest URL").fill(idp.metadata_url)
            page.click("#check")
            findings = page.locator("#findings li.finding")
            expect(findings.first).to_be_visible()
            expect(page.locator("#findings li.finding.severity-error")).to_have_count(0)
            warnings = page.locator("#findings li.finding.severity-warning")
            expect(warnings.first).to_be_visible()
            expect(page.locator("#findings")).to_contain_text("sso.dev_http")
            expect(page.locator("#findings")).to_contain_text("sp.dev_http")
            expect(page.locator("#sso-status")).to_have_attribute("data-state", "none")
            shot(page, "sso-check")

            # -- 3. Save & authorize: off to the IdP for the test sign-in, and back.
            page.get_by_label("Manifest URL").fill(idp.metadata_url)
            page.click("#save-authorize")
            expect(page.locator("#idp-email")).to_be_visible()
            shot(page, "idp-test-sign-in")
            _sign_in_at_idp(page, idp, "owner@demo.test")
            authorize = idp.sign_ins[-1]
            assert authorize.in_response_to is not None
            assert authorize.relay_state == "/w/demo/settings/sso"
            assert _path(page) == "/w/demo/settings/sso"
            assert "authorized=1" in page.url
            status = page.locator("#sso-status")
            expect(status).to_have_attribute("data-state", "active")
            expect(status).to_contain_text(idp.idp.entity_id)
            outcome = page.locator("#sso-outcome")
            expect(outcome).to_contain_text("The test sign-in succeeded")
            # The owner is no member of the workspace: the report says so.
            expect(outcome).to_contain_text("test.member")
            shot(page, "sso-authorized")
            # Sign-ins started from an Okta tile, tried at the very end.
            page.check("input[name=allow_idp_initiated]")
            page.click("#save-options")
            expect(page.locator("input[name=allow_idp_initiated]")).to_be_checked()
            expect(page.locator("#sso-status")).to_have_attribute("data-state", "active")
            shot(page, "sso-options")

            # -- 4. Settings -> SCIM provisioning: on, and the values for Okta.
            page.get_by_role("link", name="Settings: SCIM provisioning", exact=True).click()
            page.wait_for_url(f"{app}/w/demo/settings/scim")
            if page.locator("#scim-state").get_attribute("data-state") == "on":
                # The demo workspace may start with provisioning on: off first,
                # so that the article's step (turning it on) is still clicked.
                expect(page.locator("#scim-toggle")).to_have_text(
                    re.compile("Turn provisioning off")
                )
                page.click("#scim-toggle")
            expect(page.locator("#scim-state")).to_have_attribute("data-state", "off")
            expect(page.locator("#scim-toggle")).to_have_text(re.compile("Turn provisioning on"))
            page.click("#scim-toggle")
            expect(page.locator("#scim-state")).to_have_attribute("data-state", "on")
            expect(page.locator("#scim-toggle")).to_have_text(re.compile("Turn provisioning off"))
            assert _text_of(page, "#scim-base-url") == f"{app}/scim/v2"
            expect(page.locator("#unique-identifier")).to_contain_text("userName")
            role_attribute = page.locator("#role-attribute")
            for text in ("role", DEFAULT_ROLE_URN, "admin", "maker", "contributor", "viewer"):
                expect(role_attribute).to_contain_text(text)
            shot(page, "scim-settings")

            # -- 5. Integrations -> Public API: a token named okta, shown once.
            page.get_by_role("link", name="Integrations: Public API", exact=True).first.click()
            page.wait_for_url(f"{app}/w/demo/integrations/api")
            page.fill("input[name=name]", "okta")
            page.press("input[name=name]", "Enter")
            expect(page.locator("#new-token")).to_be_visible()
            token = _text_of(page, "#new-token")
            assert token
            assert " " not in token
            row = page.locator("#tokens tr.token[data-name=okta]")
            expect(row).to_contain_text("Active")
            # The copy button must copy the secret exactly, or Okta's test fails.
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app)
            page.click("button.copy[data-copy-target='#new-token']")
            assert page.evaluate("navigator.clipboard.readText()") == token
            shot(page, "api-token")

            # -- 6. Okta provisions: four people, a group, one deactivated.
            ids = provision_like_okta(f"{app}/scim/v2", token)

            # -- 7. Members: Okta's people, SCIM-managed, with the role and why.
            page.get_by_role("link", name="Members", exact=True).click()
            page.wait_for_url(f"{app}/w/demo/members")
            expected = {
                GRACE: ("admin", "role attribute admin", "Active"),
                ALAN: ("maker", "role attribute maker", "Active"),
                KATHERINE: ("viewer", "default role", "Active"),
                EDSGER: ("contributor", "role attribute contributor", "Deactivated"),
            }
            for person, (role, rule, state) in expected.items():
                member = page.locator(f"#members tr.member[data-user-name='{person.email}']")
                expect(member).to_have_count(1)
                expect(member.locator(".scim-managed")).to_have_text("SCIM-managed")
                expect(member.locator(".role")).to_have_text(role)
                expect(member.locator(".role-rule")).to_contain_text(rule)
                expect(member.locator(".status")).to_have_text(state)
                expect(member.locator(".email")).to_contain_text(person.email)
                expect(member.locator(".name")).to_contain_text(f"{person.first} {person.last}")
            shot(page, "members")

            # -- 8. A managed member cannot be edited in the app: Okta owns it.
            alan_row = page.locator(f"#members tr.member[data-user-name='{ALAN.email}']")
            alan_row.locator(".name a").click()
            page.wait_for_url(f"{app}/w/demo/members/{ids[ALAN.email]}")
            page.fill("input[name=given_name]", "Al")
            page.select_option("select[name=role]", "admin")
            with page.expect_response(
                lambda r: r.request.method == "POST" and "/members/" in r.url
            ) as refused:
                page.click("#save-member")
            assert refused.value.status == 409
            expect(page.locator("#edit-refused")).to_be_visible()
            expect(page.locator("#edit-refused")).not_to_be_empty()
            shot(page, "member-edit-refused")
            page.goto(f"{app}/w/demo/members")
            expect(alan_row.locator(".role")).to_have_text("maker")
            expect(alan_row.locator(".name")).to_contain_text("Alan Turing")

            # -- 9. The admin signs out.
            _sign_out(page)
            expect(page.locator("#signin-error")).to_have_count(0)
            page.goto(f"{app}/w/demo/members")
            assert _path(page) == "/login"
            shot(page, "signed-out")

            # -- 10. Grace (admin by Okta's role attribute) signs in with SSO.
            _start_sso(page, app, "demo")
            shot(page, "idp-member-sign-in")
            _sign_in_at_idp(page, idp, GRACE.email)
            sp_initiated = idp.sign_ins[-1]
            assert sp_initiated.relay_state == "/w/demo/members"
            assert sp_initiated.in_response_to is not None
            assert _path(page) == "/w/demo/members"
            expect(page.locator("#members")).to_be_visible()
            shot(page, "member-signed-in")
            _sign_out(page)

            # -- 11. Alan (maker, not an admin): signed in, but the admin pages are not his.
            _start_sso(page, app, "demo")
            _sign_in_at_idp(page, idp, ALAN.email)
            assert _path(page) == "/login"
            expect(page.locator("#signin-error")).to_have_count(0)
            expect(page.locator("#not-admin")).to_contain_text("maker")
            shot(page, "non-admin-signed-in")

            # -- 12. Edsger, deactivated by Okta: refused, with the reason.
            fresh = browser.new_context(viewport={"width": 1280, "height": 900})
            fresh.set_default_timeout(10_000)
            page = fresh.new_page()
            _start_sso(page, app, "demo")
            with page.expect_response(lambda r: r.url == sp.acs_url) as acs:
                _sign_in_at_idp(page, idp, EDSGER.email)
            assert acs.value.status == 403
            error = page.locator("#signin-error")
            expect(error).to_be_visible()
            expect(error).to_contain_text("deactivated")
            shot(page, "signin-refused")
            page.goto(f"{app}/w/demo/members")
            assert _path(page) == "/login"

            # -- 12b. Login CSRF: the attacker starts a sign-in, signs in at the IdP as
            # themself, and has the victim's browser post that response to the ACS.
            attacker = browser.new_context(viewport={"width": 1280, "height": 900})
            attacker.set_default_timeout(10_000)
            mallory = attacker.new_page()
            mallory.route(sp.acs_url, lambda route: route.abort())
            _start_sso(mallory, app, "demo")
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
            victim = browser.new_context(viewport={"width": 1280, "height": 900})
            victim.set_default_timeout(10_000)
            page = victim.new_page()
            with page.expect_response(lambda r: "/saml/demo/finish" in r.url) as finished:
                # The attacker's page, on no site of the app's: a cross-site POST.
                page.set_content(f'<form method="post" action="{sp.acs_url}">{inputs}</form>')
                page.locator("form").evaluate("form => form.submit()")
            assert finished.value.status == 403
            expect(page.locator("#signin-error")).to_contain_text("not started in this browser")
            shot(page, "login-csrf-refused")
            page.goto(f"{app}/w/demo/members")
            assert _path(page) == "/login"

            # -- 13. Grace again, from the Okta tile (IdP-initiated, allowed in step 3).
            page.goto(idp.start_url(sp.acs_url))
            _sign_in_at_idp(page, idp, GRACE.email)
            from_tile = idp.sign_ins[-1]
            assert from_tile.in_response_to is None
            assert from_tile.relay_state == ""
            assert _path(page) == "/w/demo/members"
            expect(page.locator("#members")).to_be_visible()
            shot(page, "idp-initiated-signed-in")

            # -- 14. Okta's whole conversation (the simulator) through the same app and token.
            simulated = simulate("okta-custom", f"{app}/scim/v2", token, users=3, out=io.StringIO())
            assert simulated.ok, "\n".join(step.line() for step in simulated.steps)
        except BaseException:
            # What the browser showed when it went wrong is the first thing to look at;
            # a page that cannot be captured any more must not hide the failure.
            with contextlib.suppress(Exception):
                shot(page, "failed")
            raise
        finally:
            for open_context in browser.contexts:
                open_context.close()
    elapsed = time.monotonic() - started
    print(f"{kind}: {len(shot.taken)} screenshots in {shot.directory}, {elapsed:.1f} s")


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
