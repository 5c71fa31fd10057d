"""The members section: search, status filter, cursor pages, the member page's trail and lock."""

from __future__ import annotations

import re

import httpx

from pbidentity.scim import DEFAULT_ROLE_URN
from tests.portal.conftest import ORIGIN
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.portal.conftest import csrf_of


def _names(page: httpx.Response) -> list[str]:
    return re.findall(r'data-user-name="([^"]+)"', page.text)


def _next(page: httpx.Response) -> str | None:
    found = re.search(r'id="next-page" href="([^"]+)"', page.text)
    return found.group(1).replace("&amp;", "&") if found else None


def test_cursor_pages_walk_every_member_once_in_user_name_order(world: World) -> None:
    """120 members: pages of 50 by userName, each member once, and a link back to the first."""
    for index in range(120):
        world.identity.members.add("acme", f"user{index:03d}@acme.test")
    world.identity.members.add("beta", "user000@beta.test")
    seen: list[str] = []
    with world.client() as browser:
        url: str | None = "/portal/w/acme/members"
        pages = 0
        while url:
            page = browser.get(url, headers=admin())
            assert page.status_code == 200
            seen += _names(page)
            pages += 1
            assert ('id="first-page"' in page.text) == (pages > 1)
            url = _next(page)
    assert pages == 3
    assert seen == [f"user{index:03d}@acme.test" for index in range(120)]


def test_search_by_name_or_email_and_filter_by_status(world: World) -> None:
    """A name's start, an address's start and the status filter each narrow the list."""
    members = world.identity.members
    members.add("acme", "grace@acme.test", given_name="Grace", family_name="Hopper")
    members.add("acme", "alan@acme.test", given_name="Alan", family_name="Turing")
    gone = members.add("acme", "edsger@acme.test", given_name="Edsger", family_name="Dijkstra")
    members.edit("acme", gone.id, active=False)
    members.add("beta", "grace@beta.test", given_name="Grace")
    with world.client() as browser:

        def search(**params: str) -> list[str]:
            page = browser.get("/portal/w/acme/members", params=params, headers=admin())
            assert page.status_code == 200
            return _names(page)

        assert search(q="hopper") == ["grace@acme.test"]
        assert search(q="ALAN@") == ["alan@acme.test"]
        assert search(q="edsger", status="deactivated") == ["edsger@acme.test"]
        assert search(q="edsger", status="active") == []
        # A prefix of a name or address, never a fragment inside one.
        assert search(q="opper") == []
        assert search(q="acme.test") == []
        assert search(status="active") == ["alan@acme.test", "grace@acme.test"]
        assert search(q="nobody") == []
        assert (
            "No member matches."
            in browser.get("/portal/w/acme/members", params={"q": "nobody"}, headers=admin()).text
        )


def test_role_and_managed_filters_combine_with_search_status_and_pages(world: World) -> None:
    """Role, status and managed-by filters with a search: pages of 50 carry them all."""
    members = world.identity.members
    for index in range(130):
        member = members.add(
            "acme",
            f"kim{index:03d}@acme.test",
            given_name="Kim",
            role="maker" if index % 2 else "viewer",
        )
        if index % 5 == 0:
            members.edit("acme", member.id, active=False)
    members.add("acme", "lee@acme.test", given_name="Lee", role="maker")
    members.add("beta", "kim000@beta.test", given_name="Kim", role="maker")
    # SCIM-managed members: made by the identity provider.
    world.identity.admin.set_scim_enabled("acme", True)
    token = world.identity.admin.create_token("acme", "okta").secret
    with httpx.Client(
        transport=httpx.WSGITransport(app=world.app),
        base_url=f"{ORIGIN}/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
    ) as scim:
        for name in ("kim900@acme.test", "kim901@acme.test"):
            body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name}
            assert scim.post("/Users", json=body).status_code == 201

    def walk(**params: str) -> list[str]:
        seen: list[str] = []
        with world.client() as browser:
            page = browser.get("/portal/w/acme/members", params=params, headers=admin())
            while True:
                assert page.status_code == 200, page.text
                seen += _names(page)
                url = _next(page)
                if url is None:
                    return seen
                for key, value in params.items():
                    assert f"{key}={value}" in url  # the next page keeps the filters
                page = browser.get(url, headers=admin())

    makers = [f"kim{i:03d}@acme.test" for i in range(130) if i % 2]
    assert walk(role="maker", q="kim") == makers
    assert walk(role="maker", status="active", q="KI") == [
        name for name in makers if int(name[3:6]) % 5
    ]
    assert walk(role="viewer", status="deactivated") == [
        f"kim{i:03d}@acme.test" for i in range(0, 130, 10)
    ]
    assert walk(managed="yes") == ["kim900@acme.test", "kim901@acme.test"]
    assert walk(managed="no", q="lee") == ["lee@acme.test"]
    assert walk(managed="yes", role="maker") == []
    with world.client() as browser:
        page = browser.get(
            "/portal/w/acme/members", params={"role": "maker", "managed": "no"}, headers=admin()
        )
        assert re.search(r'<option value="maker" selected>', page.text)
        assert re.search(r'<option value="no" selected>', page.text)
        # A role no member has (an old one) is kept selected, and finds nobody.
        old = browser.get("/portal/w/acme/members", params={"role": "editor"}, headers=admin())
        assert re.search(r'<option value="editor" selected>', old.text)
        assert "No member matches." in old.text
        # Unknown filter values are ignored, not errors.
        odd = browser.get(
            "/portal/w/acme/members", params={"status": "x", "managed": "x"}, headers=admin()
        )
        assert len(_names(odd)) == 50


def test_a_cursor_from_another_search_is_refused(world: World) -> None:
    """A next-page cursor replayed with another search is a 400 that says to start again."""
    for index in range(60):
        world.identity.members.add("acme", f"user{index:03d}@acme.test")
    with world.client() as browser:
        first = browser.get("/portal/w/acme/members", headers=admin())
        cursor = re.search(r"cursor=([^\"&]+)", first.text)
        assert cursor
        replayed = browser.get(
            "/portal/w/acme/members",
            params={"q": "user0", "cursor": cursor.group(1)},
            headers=admin(),
        )
        assert replayed.status_code == 400
        for other in ({"role": "admin"}, {"managed": "no"}, {"status": "active"}):
            moved = browser.get(
                "/portal/w/acme/members",
                params={**other, "cursor": cursor.group(1)},
                headers=admin(),
            )
            assert moved.status_code == 400, other
        assert "start from the first page" in replayed.text
        junk = browser.get("/portal/w/acme/members", params={"cursor": "!!"}, headers=admin())
        assert junk.status_code == 400


def test_a_managed_members_page_shows_the_decision_trail_and_why_it_is_locked(
    world: World,
) -> None:
    """A SCIM-made member: the role attribute and rule in the trail, the lock, edits refused."""
    identity = world.identity
    identity.admin.set_scim_enabled("acme", True)
    token = identity.admin.create_token("acme", "okta").secret
    with httpx.Client(
        transport=httpx.WSGITransport(app=world.app),
        base_url=f"{ORIGIN}/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
    ) as scim:
        created = scim.post(
            "/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", DEFAULT_ROLE_URN],
                "userName": "alan@acme.test",
                "name": {"givenName": "Alan", "familyName": "Turing"},
                "emails": [{"value": "alan@acme.test", "primary": True}],
                DEFAULT_ROLE_URN: {"role": "maker"},
            },
        )
        assert created.status_code == 201, created.text
        member_id = created.json()["id"]
    with world.client() as browser:
        page = browser.get(f"/portal/w/acme/members/{member_id}", headers=admin())
        assert page.status_code == 200
        trail = re.search(r'<ol id="role-trail".*?</ol>', page.text, re.S)
        assert trail
        assert "hybrid" in trail.group(0)
        assert "role attribute &#39;maker&#39;" in trail.group(0)
        assert "Decided: maker" in trail.group(0)
        lock = re.search(r'<p id="lock-reason"[^>]*>(.*?)</p>', page.text, re.S)
        assert lock
        assert "managed by the identity provider" in lock.group(1)
        assert 'id="save-member"' not in page.text  # no form that could only be refused
        # What the identity provider owns is shown, read-only.
        assert '<dd class="family-name">Turing</dd>' in page.text
        assert '<dd class="given-name">Alan</dd>' in page.text
        assert 'id="given_name"' not in page.text
        # The form posted anyway (an old tab): refused by the guard, nothing saved.
        csrf = csrf_of(browser.get("/portal/w/acme/scim", headers=admin()))
        refused = browser.post(
            f"/portal/w/acme/members/{member_id}",
            data={"csrf": csrf, "given_name": "Al", "family_name": "", "role": "admin"},
            headers=admin(),
        )
        assert refused.status_code == 409
        assert 'id="edit-refused"' in refused.text
    assert identity.members.get("acme", member_id).role == "maker"


def test_an_app_member_is_edited_from_their_page(world: World) -> None:
    """A member the app manages: no lock, and the form saves the name and the role."""
    member = world.identity.members.add("acme", "ada@acme.test", given_name="Ada")
    with world.client() as browser:
        page = browser.get(f"/portal/w/acme/members/{member.id}", headers=admin())
        assert 'id="lock-reason"' not in page.text
        saved = browser.post(
            f"/portal/w/acme/members/{member.id}",
            data={
                "csrf": csrf_of(page),
                "given_name": "Augusta",
                "family_name": "King",
                "role": "maker",
            },
            headers=admin(),
        )
        assert saved.status_code == 303
    edited = world.identity.members.get("acme", member.id)
    assert edited.role == "maker"
    assert edited.attributes["name"]["givenName"] == "Augusta"
    events = world.identity.members.audit_trail("acme")
    assert events[-1].actor == "portal:user-acme"
