"""The Provisioning activity page: the workspace's SCIM requests, filtered, paged, escaped."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import httpx

from pbidentity.scim import ActivityConfig
from tests.portal.conftest import ORIGIN
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.scim.helpers import user

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def scim_client(world: World, workspace: str, name: str = "okta") -> httpx.Client:
    """An identity provider of ``workspace``: SCIM on, a new token named ``name``."""
    world.identity.admin.set_scim_enabled(workspace, True)
    secret = world.identity.admin.create_token(workspace, name).secret
    return httpx.Client(
        transport=httpx.WSGITransport(app=world.app),
        base_url=f"{ORIGIN}/scim/v2",
        headers={"Authorization": f"Bearer {secret}"},
    )


def statuses(page: httpx.Response) -> list[tuple[str, int]]:
    """The (method, status) of each request row, in page order."""
    rows = re.findall(r'data-status="(\d+)" data-method="(\w+)"', page.text)
    return [(method, int(status)) for status, method in rows]


def link(page: httpx.Response, link_id: str) -> str | None:
    """The href of the element with that id, unescaped."""
    found = re.search(rf'id="{link_id}" href="([^"]+)"', page.text)
    return html.unescape(found.group(1)) if found else None


def test_the_page_shows_each_request_newest_first_with_the_detail_sent(world: World) -> None:
    """Method, path, status, token and a failure's scimType and detail, in full, newest first."""
    with scim_client(world, "acme") as okta:
        created = okta.post("/Users", json=user("ada@acme.test"))
        assert created.status_code == 201
        refused = okta.post("/Users", json=user("ada@acme.test"))
        assert refused.status_code == 409
        assert okta.get("/Users", params={"filter": 'userName eq "ada@acme.test"'}).is_success
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim/activity", headers=admin())
    assert page.status_code == 200
    assert statuses(page) == [("GET", 200), ("POST", 409), ("POST", 201)]
    assert 'aria-current="page">Provisioning activity</a>' in page.text
    failed = page.text[page.text.index('data-status="409"') :]
    failed = failed[: failed.index("</tr>")]
    assert '<code class="scim-type">uniqueness</code>' in failed
    assert f'<span class="detail">{refused.json()["detail"]}</span>' in html.unescape(failed)
    assert refused.headers["x-request-id"] in failed
    assert "okta" in failed
    assert "/Users?filter=userName eq &#34;ada@acme.test&#34;</code>" in page.text
    assert "Requests are kept for 14 days, at most 10,000 of them." in page.text
    assert f'created <code class="resource">{created.json()["id"]}</code>' in page.text


def test_hostile_paths_and_details_are_text_and_other_workspaces_absent(world: World) -> None:
    """A path or detail carrying markup is shown escaped; beta's requests never show in acme's."""
    with scim_client(world, "acme") as okta:
        assert okta.get(f"/Users/{HOSTILE}").status_code == 404
    with scim_client(world, "beta", name="beta-okta") as spy:
        assert spy.get("/Groups/beta-only-group").status_code == 404
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim/activity", headers=admin())
        beta = browser.get("/portal/w/beta/scim/activity", headers=admin("beta"))
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "beta-only-group" not in page.text
    assert "beta-okta" not in page.text
    assert "beta-only-group" in beta.text
    assert "<script>alert(1)" not in beta.text


def test_filters_narrow_to_failures_a_token_a_method_or_a_status(world: World) -> None:
    """Failures only, a token, a method and a status each narrow the table; combined, all apply."""
    with scim_client(world, "acme") as okta, scim_client(world, "acme", "entra") as entra:
        assert okta.post("/Users", json=user("ada@acme.test")).status_code == 201
        assert okta.get("/Users/missing").status_code == 404
        assert entra.post("/Users", json=user("ada@acme.test")).status_code == 409
        assert entra.get("/Groups").status_code == 200
    url = "/portal/w/acme/scim/activity"
    with world.client() as browser:

        def shown(**params: str) -> list[tuple[str, int]]:
            page = browser.get(url, headers=admin(), params=params)
            assert page.status_code == 200, page.text
            return statuses(page)

        assert shown(failures="on") == [("POST", 409), ("GET", 404)]
        assert shown(token="entra") == [("GET", 200), ("POST", 409)]
        assert shown(token="entra", failures="on") == [("POST", 409)]
        assert shown(method="POST") == [("POST", 409), ("POST", 201)]
        assert shown(status="404") == [("GET", 404)]
        assert shown(status="500") == []
        filtered = browser.get(url, headers=admin(), params={"failures": "on"})
        assert 'id="failures" name="failures" type="checkbox" value="on" checked' in filtered.text
        assert (
            "No request matches these filters."
            in browser.get(url, headers=admin(), params={"status": "418"}).text
        )
        for bad in ({"method": "BREW"}, {"status": "abc"}, {"status": "99"}, {"token": "x" * 101}):
            refused = browser.get(url, headers=admin(), params=bad)
            assert refused.status_code == 400, bad
            assert "Traceback" not in refused.text


def test_pages_follow_the_cursor_from_newest_to_oldest(world: World) -> None:
    """120 requests: pages of 50, 50, 20 by the older links, filters kept; a bad cursor is 400."""
    with scim_client(world, "acme") as okta:
        for index in range(120):
            assert okta.get(f"/Users/missing-{index:03}").status_code == 404
    url = "/portal/w/acme/scim/activity"
    seen: list[str] = []
    with world.client() as browser:
        page = browser.get(url, headers=admin(), params={"failures": "on"})
        while True:
            assert page.status_code == 200
            seen.extend(re.findall(r"/Users/(missing-\d+)</code>", page.text))
            older = link(page, "older-page")
            if older is None:
                break
            assert "failures=on" in older
            page = browser.get(older, headers=admin())
        assert link(page, "newest-page") == f"{url}?failures=on"
        for bad in ("nonsense", "2026-12-07T12:00:00_x", "2026-13-07T12:00:00+00:00_abc"):
            refused = browser.get(url, headers=admin(), params={"before": bad})
            assert refused.status_code == 400, bad
    assert seen == [f"missing-{index:03}" for index in reversed(range(120))]


def test_an_empty_workspace_says_what_to_do_and_the_scim_page_links_here(world: World) -> None:
    """No requests yet: the page says how to send one from Okta; the SCIM page and nav link here."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim/activity", headers=admin())
        scim = browser.get("/portal/w/acme/scim", headers=admin())
    assert page.status_code == 200
    assert "No requests yet" in page.text
    assert "Test API Credentials" in page.text
    assert 'id="activity-link" href="/portal/w/acme/scim/activity"' in scim.text
    assert 'href="/portal/w/acme/scim/activity" id="nav-activity"' in scim.text


def test_only_the_scim_section_opens_the_page(world: World) -> None:
    """An admin whose access leaves SCIM out gets a 403, not the activity."""
    with scim_client(world, "acme") as okta:
        assert okta.get("/Users/secret-path").status_code == 404
    issued = world.portal.links.issue("acme", created_by="user-acme", sections=("sso",))
    with world.client() as browser:
        token = dict(parse_qsl(urlsplit(issued.url("/portal")).query))["token"]
        shown = browser.get("/portal/setup", params={"token": token})
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text))
        assert browser.post("/portal/setup", data=fields).status_code == 303
        refused = browser.get("/portal/w/acme/scim/activity")
        sso = browser.get("/portal/w/acme/sso")
    assert refused.status_code == 403
    assert "secret-path" not in refused.text
    assert "nav-activity" not in sso.text


def test_kept_bodies_show_redacted(world: World) -> None:
    """With keep_bodies the page shows the request body, its password redacted."""
    assert world.identity.scim.activity is not None
    world.identity.scim.activity.config = ActivityConfig(keep_bodies=True)
    with scim_client(world, "acme") as okta:
        body = user("ada@acme.test", password="Hunter2-secret")
        assert okta.post("/Users", json=body).status_code == 201
    with world.client() as browser:
        page = browser.get("/portal/w/acme/scim/activity", headers=admin())
    assert "Hunter2-secret" not in page.text
    assert "&#34;password&#34;:&#34;[redacted]&#34;" in page.text
    assert '<details><summary>Request body</summary><pre class="body request-body">' in page.text
