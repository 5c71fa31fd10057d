"""`pbidentity serve` over real HTTP: from an empty directory to Okta-shaped traffic."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx
import pytest

from tests.saml.idp import TestIdp


@attrs.frozen
class Server:
    """A running `pbidentity serve` and the token of its tenant."""

    base_url: str
    token: str
    database: str = ""


def _cli(database: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pbidentity.cli", "--database", database, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A tenant with SCIM on and a token, made with the CLI, then the server on a free port."""
    database = f"sqlite:///{tmp_path / 'served.db'}"
    _cli(database, "tenants", "create", "acme")
    _cli(database, "scim", "enable", "--tenant", "acme")
    token = (
        _cli(database, "tokens", "create", "--tenant", "acme", "--name", "okta")
        .strip()
        .splitlines()[-1]
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pbidentity.cli", "--database", database, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("SCIM base URL: "), first
        yield Server(
            base_url=first.removeprefix("SCIM base URL: ").strip(), token=token, database=database
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_okta_push_over_http(server: Server) -> None:
    """Lookup, create, duplicate, deactivate and read back over real HTTP, as Okta does."""
    headers = {
        "Authorization": f"Bearer {server.token}",
        "User-Agent": "Okta SCIM Client 1.0.0",
        "Accept": "application/scim+json",
    }
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
        probe = client.get("/Users", params={"startIndex": 1, "count": 2})
        assert probe.status_code == 200
        assert probe.json()["totalResults"] == 0
        lookup = client.get(
            "/Users", params={"filter": 'userName eq "jane@example.com"', "count": 100}
        )
        assert lookup.json()["Resources"] == []
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "jane@example.com",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"primary": True, "value": "jane@example.com", "type": "work"}],
            "active": True,
            "externalId": "00u1abcd",
            "password": "placeholder",
            "groups": [],
        }
        created = client.post(
            "/Users", json=body, headers={"Content-Type": "application/scim+json; charset=utf-8"}
        )
        assert created.status_code == 201
        user_id = created.json()["id"]
        assert client.post("/Users", json=body).status_code == 409
        deactivated = client.patch(
            f"/Users/{user_id}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            },
        )
        assert deactivated.status_code == 200
        again = client.get(f"/Users/{user_id}")
        assert again.status_code == 200
        assert again.json()["active"] is False
        unauthorised = httpx.get(
            f"{server.base_url}/Users", headers={"Authorization": "Bearer wrong"}
        )
        assert unauthorised.status_code == 401
        assert unauthorised.json()["status"] == "401"


def test_root_page_tells_where_scim_is(server: Server) -> None:
    """The server's root explains the SCIM base URL to whoever opens it in a browser."""
    root = server.base_url.removesuffix("/scim/v2") + "/"
    # The root of the reference app sends a stranger to its sign-in page.
    response = httpx.get(root, timeout=10, follow_redirects=True)
    assert response.status_code == 200
    assert "/scim/v2" in response.text


@contextmanager
def started(
    database: str, *options: str, command: Sequence[str] = ("-m", "pbidentity.cli")
) -> Iterator[dict[str, str]]:
    """Run `pbidentity serve` with ``options``; yield what it printed before serving.

    Each line up to "Press Ctrl+C to stop." is a label (before ": ") and a
    value. ``command`` is what the interpreter runs (``-c`` code can change
    the environment before calling the command line).
    """
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, *command, "--database", database, "serve", *options],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert process.stdout is not None
            lines: dict[str, str] = {}
            while (line := process.stdout.readline().rstrip("\n")) != "Press Ctrl+C to stop.":
                if not line:
                    log.seek(0)
                    pytest.fail(f"the server stopped before serving:\n{log.read()}")
                label, _, value = line.partition(": ")
                lines[label] = value
            yield lines
        finally:
            process.terminate()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


def test_serve_prints_the_urls_to_open_and_serves_the_reference_app(tmp_path: Path) -> None:
    """With --demo: the app, a one-time owner sign-in link, the portal's SSO page, SCIM, a token."""
    database = f"sqlite:///{tmp_path / 'demo.db'}"
    with started(database, "--port", "0", "--demo") as run:
        assert next(iter(run)) == "SCIM base URL"
        app = run["App"]
        assert app.startswith("http://127.0.0.1:")
        assert app.endswith("/")
        base = app.removesuffix("/")
        assert run["SCIM base URL"] == f"{base}/scim/v2"
        assert run["SSO settings"] == f"{base}/portal/w/demo/sso"
        owner = run["Owner sign-in"]
        assert owner.startswith(f"{base}/bootstrap?token=")
        assert owner.endswith("&workspace=demo")
        assert run["Owner sign-in link"] == (
            "works once, for demo, within 15 minutes; restart the app for a new one."
        )
        with httpx.Client(timeout=10) as browser:
            login = browser.get(f"{base}/login")
            assert login.status_code == 200
            assert 'id="sso-sign-in"' in login.text
            metadata = browser.get(f"{base}/saml/demo/metadata")
            assert metadata.status_code == 200
            assert f'entityID="{base}/saml/demo/metadata"' in metadata.text
            signed_in = _owner_sign_in(browser, owner)
            assert signed_in.status_code == 303
            assert signed_in.headers["location"] == "/"
            # Once: the same link in another browser is refused.
            assert httpx.get(owner, timeout=10).status_code == 403
            sso = browser.get(run["SSO settings"])
            assert sso.status_code == 200
            assert f"{base}/saml/demo/acs" in sso.text
        secret = run["Demo workspace token (shown once)"]
        users = httpx.get(
            f"{base}/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"}, timeout=10
        )
        assert users.status_code == 200
    with started(database, "--port", "0") as again:
        # A fresh owner token at each start: the old link no longer works.
        assert again["Owner sign-in"].partition("token=")[2] != owner.partition("token=")[2]
        stale = owner.replace(base, again["App"].removesuffix("/"))
        assert httpx.get(stale, timeout=10).status_code == 403
        assert "Demo workspace token (shown once)" not in again


def test_public_url_names_the_app_everywhere(tmp_path: Path) -> None:
    """--public-url names the app in every printed URL and SP value; it is served locally."""
    database = f"sqlite:///{tmp_path / 'public.db'}"
    with started(database, "--port", "0", "--demo", "--public-url", "https://app.example/") as run:
        assert run["App"] == "https://app.example/"
        assert run["SCIM base URL"] == "https://app.example/scim/v2"
        assert run["SSO settings"] == "https://app.example/portal/w/demo/sso"
        local = run["Listening on"]
        assert local.startswith("http://127.0.0.1:")
        metadata = httpx.get(f"{local}/saml/demo/metadata", timeout=10)
        assert 'entityID="https://app.example/saml/demo/metadata"' in metadata.text


def _owner_sign_in(browser: httpx.Client, link: str) -> httpx.Response:
    """Open the owner link and press its button: the answer to the button's POST."""
    shown = browser.get(link)
    assert shown.status_code == 200, shown.text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text))
    return browser.post(link.partition("?")[0], data=fields)


@contextmanager
def _owner(run: dict[str, str]) -> Iterator[Callable[[str], set[str]]]:
    """Sign in as the owner (over the local address: the public URL may be a tunnel's).

    Yields a function that checks IdP metadata whose SSO URL it is given on the
    portal's SSO page and returns the codes found.
    """
    public = run["App"].removesuffix("/")
    local = run.get("Listening on", public)
    sso = run["SSO settings"].replace(public, local)
    with httpx.Client(timeout=10) as browser:
        owner_link = run["Owner sign-in"].replace(public, local)
        assert _owner_sign_in(browser, owner_link).status_code == 303

        def checked_codes(sso_url: str) -> set[str]:
            metadata = TestIdp(sso_url=sso_url).metadata_xml()
            page = browser.get(sso)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            checked = browser.post(
                f"{sso}/metadata",
                data={"csrf": csrf.group(1), "action": "check"},
                files={"metadata_file": ("idp.xml", metadata, "application/xml")},
            )
            codes = set(re.findall(r'data-code="([^"]+)"', checked.text))
            # The portal's check answers 400 when one of its findings is an error.
            errors = {"sso.not_https", "sp.not_https"} & codes
            assert checked.status_code == (400 if errors else 200), checked.text
            return codes

        yield checked_codes


def test_dev_hosts_are_the_loopback_names_unless_given(tmp_path: Path) -> None:
    """Plain http is a warning for the dev hosts (by default the loopback names), else an error."""
    database = f"sqlite:///{tmp_path / 'dev.db'}"
    with started(database, "--port", "0", "--demo") as run, _owner(run) as checked_codes:
        codes = checked_codes("http://localhost/sso")
        assert {"sso.dev_http", "sp.dev_http"} <= codes
        assert not {"sso.not_https", "sp.not_https"} & codes
    with (
        started(database, "--port", "0", "--dev-host", "idp.test") as run,
        _owner(run) as checked_codes,
    ):
        assert "sso.not_https" in checked_codes("http://localhost/sso")
        codes = checked_codes("http://idp.test/sso")
        assert "sso.dev_http" in codes
        # The app's own address (127.0.0.1) is no development host any more.
        assert "sp.not_https" in codes


def test_a_public_url_elsewhere_makes_a_loopback_bind_no_development_host(tmp_path: Path) -> None:
    """Published through a tunnel, the app no longer trusts loopback metadata and SSO URLs."""
    database = f"sqlite:///{tmp_path / 'tunnel.db'}"
    # Plain http, so that the session cookie comes back over the local address.
    tunnel = "http://tunnel.example"
    with (
        started(database, "--port", "0", "--demo", "--public-url", tunnel) as run,
        _owner(run) as checked_codes,
    ):
        codes = checked_codes("http://localhost/sso")
        assert {"sso.not_https", "sp.not_https"} <= codes
        assert not {"sso.dev_http", "sp.dev_http"} & codes


def test_serve_without_the_reference_app_still_serves_scim_and_saml(server: Server) -> None:
    """Without FastAPI: SCIM and SAML over the WSGI server, and a note on why no pages."""
    database = server.database
    hide_fastapi = (
        "import sys; sys.modules['fastapi'] = None; "
        "from pbidentity.cli import main; sys.exit(main())"
    )
    with started(database, "--port", "0", command=("-c", hide_fastapi)) as run:
        base = run["SCIM base URL"].removesuffix("/scim/v2")
        assert run["Note"] == (
            "not the reference app: fastapi is not installed (pip install 'pbidentity[fastapi]')."
        )
        assert run["Set-up portal"].startswith(f"{base}/portal/setup?token=")
        assert run["Set-up link"] == (
            "works once, for acme, within 60 minutes; restart for a new one."
        )
        assert run["SAML"] == f"{base}/saml/<workspace>/metadata"
        metadata = httpx.get(f"{base}/saml/acme/metadata", timeout=10)
        assert metadata.status_code == 200
        assert f'entityID="{base}/saml/acme/metadata"' in metadata.text
        root = httpx.get(f"{base}/", timeout=10)
        assert root.status_code == 200
        assert "/scim/v2" in root.text
        users = httpx.get(
            f"{base}/scim/v2/Users",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        )
        assert users.status_code == 200


def _installed_copy(target: Path) -> Path:
    """The package as a wheel installs it (its tracked files), in a folder of no source tree."""
    root = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(
        ["git", "ls-files", "src/pbidentity"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    site = target / "site-packages"
    for name in tracked:
        destination = site / Path(name).relative_to("src")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((root / name).read_bytes())
    return site


@pytest.mark.slow
def test_serve_from_an_installed_package_serves_the_set_up_portal(tmp_path: Path) -> None:
    """Outside any source tree: SCIM, SAML and the portal, opened by the printed set-up link."""
    site = _installed_copy(tmp_path / "install")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    database = f"sqlite:///{workdir / 'served.db'}"
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r}); "
        "import pbidentity; "
        f"assert pbidentity.__file__.startswith({str(site)!r}), pbidentity.__file__; "
        "from pbidentity.cli import main; sys.exit(main())"
    )
    with started(database, "--port", "0", "--demo", command=("-c", code)) as run:
        base = run["SCIM base URL"].removesuffix("/scim/v2")
        assert run["Note"].startswith("not the reference app: the reference app (examples/")
        link = run["Set-up portal"]
        assert link.startswith(f"{base}/portal/setup?token=")
        assert run["Set-up link"].startswith("works once, for demo, within 60 minutes")
        with httpx.Client(timeout=10) as browser:
            shown = browser.get(link)
            assert shown.status_code == 200
            fields = dict(
                re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text)
            )
            opened = browser.post(f"{base}/portal/setup", data=fields)
            assert opened.status_code == 303
            sso = browser.get(f"{base}{opened.headers['location']}")
            assert sso.status_code == 200
            assert f'<code id="acs-url">{base}/saml/demo/acs</code>' in sso.text
            assert browser.get(f"{base}/portal/static/portal.css").status_code == 200
            members = browser.get(f"{base}/portal/w/demo/members")
            assert members.status_code == 200
            root = browser.get(f"{base}/")
            assert "/portal/" in root.text
            # The link worked once: its page now says so.
            assert browser.get(link).status_code == 410
