"""The Role policy section: the policy as a form, its preview, then applying it over HTTP.

Members and groups are pushed over real SCIM; the portal is driven as a
browser drives it (its forms' fields, its CSRF token, its cookie).
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import httpx
import pytest

from pbidentity.policy import TenantPolicy
from pbidentity.roles import GroupMapping
from pbidentity.roles import RolePolicy
from pbidentity.scim import DEFAULT_ROLE_URN
from tests.portal.conftest import ORIGIN
from tests.portal.conftest import PORTAL
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.portal.conftest import csrf_of

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


@pytest.fixture
def pushed(world: World) -> dict[str, Any]:
    """Acme over SCIM: ada (role attribute admin), 4 engineers, 2 in sales, and their groups."""
    identity = world.identity
    identity.admin.set_scim_enabled("acme", True)
    token = identity.admin.create_token("acme", "okta").secret
    ids: dict[str, Any] = {}
    with httpx.Client(
        transport=httpx.WSGITransport(app=world.app),
        base_url=f"{ORIGIN}/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
    ) as scim:

        def user(name: str, **extra: Any) -> str:
            created = scim.post(
                "/Users",
                json={"schemas": [USER, DEFAULT_ROLE_URN], "userName": name, **extra},
            )
            assert created.status_code == 201, created.text
            return str(created.json()["id"])

        ids["ada"] = user("ada@acme.test", **{DEFAULT_ROLE_URN: {"role": "admin"}})
        ids["eng"] = [user(f"eng{i}@acme.test") for i in range(4)]
        ids["sales"] = [user(f"sales{i}@acme.test") for i in range(2)]
        for name, members in (("Engineering", ids["eng"]), ("Sales", ids["sales"])):
            group = scim.post(
                "/Groups",
                json={
                    "schemas": [GROUP],
                    "displayName": name,
                    "members": [{"value": m} for m in members],
                },
            )
            assert group.status_code == 201, group.text
            ids[name] = group.json()["id"]
    return ids


def policy_form(page: httpx.Response, **changes: str) -> dict[str, str]:
    """The policy form's fields as the page filled them, with ``changes`` typed over them."""
    found = re.search(r'<form method="post" action="[^"]*/preview".*?</form>', page.text, re.S)
    assert found, page.text
    form = found.group(0)
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None:
            continue
        kind = re.search(r'type="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if kind and kind.group(1) in ("checkbox", "radio"):
            if " checked" in tag:
                fields[name.group(1)] = html.unescape(value.group(1)) if value else "on"
            continue
        fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    for select in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', select[1]) or re.search(
            r'<option value="([^"]*)"', select[1]
        )
        fields[select[0]] = html.unescape(chosen.group(1)) if chosen else ""
    return {**fields, **changes}


def changes(page: httpx.Response) -> dict[tuple[str, str], int]:
    """The preview's table: members per (from, to)."""
    return {
        (html.unescape(old), html.unescape(new)): int(count)
        for old, new, count in re.findall(
            r'class="change" data-from="([^"]*)" data-to="([^"]*)" data-count="(\d+)"', page.text
        )
    }


def roles_of(world: World) -> dict[str, str | None]:
    """Every acme member's role, by userName."""
    return {m.user_name: m.role for m in world.identity.members.all("acme")}


def test_the_page_shows_the_stored_policy_and_the_workspace_groups(
    world: World, pushed: dict[str, Any]
) -> None:
    """Mode, mappings by name and by id in priority order, default, tie rule, guard, groups."""
    world.identity.admin.set_policy(
        "acme",
        TenantPolicy(
            roles=RolePolicy(
                mode="user-personal",
                mappings=(
                    GroupMapping(role="maker", group_name="Engineering", priority=1),
                    GroupMapping(role="contributor", group_id=pushed["Sales"], priority=7),
                ),
                default_role="contributor",
                prefer_less_privileged=True,
                admin_guard=True,
            )
        ),
    )
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
    assert page.status_code == 200
    assert 'aria-current="page">Role policy</a>' in page.text
    fields = policy_form(page)
    assert fields["mode"] == "user-personal"
    assert fields["default_role"] == "contributor"
    assert fields["tie"] == "less"
    assert fields["admin_guard"] == "on"
    assert (fields["group_0"], fields["by_0"], fields["role_0"], fields["priority_0"]) == (
        pushed["Sales"],
        "id",
        "contributor",
        "7",
    )
    assert (fields["group_1"], fields["by_1"], fields["role_1"]) == ("Engineering", "name", "maker")
    assert fields["group_2"] == ""
    assert fields["rows"] == "5"
    assert '<option value="Engineering">' in page.text
    assert f"<code>{pushed['Sales']}</code>" in page.text
    assert 'id="apply-policy"' not in page.text  # no applying before a preview


def test_preview_shows_the_effect_without_saving_then_apply_does_it(
    world: World, pushed: dict[str, Any]
) -> None:
    """Map Engineering to maker: the preview counts 4 viewer→maker with rules; apply saves that."""
    before = roles_of(world)
    events_before = len(world.identity.members.audit_trail("acme", limit=1000))
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
        form = policy_form(page, group_0="Engineering", role_0="maker", priority_0="5")
        preview = browser.post("/portal/w/acme/roles/preview", data=form, headers=admin())
        assert preview.status_code == 200, preview.text
        assert changes(preview) == {("viewer", "maker"): 4}
        assert "group &#39;Engineering&#39; (priority 5) maps to maker" in preview.text
        assert 'id="apply-policy"' in preview.text
        assert roles_of(world) == before, "the preview saved something"
        assert len(world.identity.members.audit_trail("acme", limit=1000)) == events_before
        applied = browser.post(
            "/portal/w/acme/roles/apply", data=policy_form(preview), headers=admin()
        )
        assert applied.status_code == 303, applied.text
        assert applied.headers["location"].endswith("/portal/w/acme/roles?applied=4")
        after = browser.get(applied.headers["location"], headers=admin())
        assert "4 members changed role" in after.text
    roles = roles_of(world)
    assert {roles[f"eng{i}@acme.test"] for i in range(4)} == {"maker"}
    assert roles["ada@acme.test"] == "admin"
    assert {roles[f"sales{i}@acme.test"] for i in range(2)} == {"viewer"}
    trail = world.identity.members.audit_trail("acme", limit=1000)
    assert [e.actor for e in trail if e.type == "policy.changed"] == ["portal:user-acme"]
    assert sum(e.type == "member.role_changed" for e in trail) == 4


def test_apply_refuses_a_form_edited_after_its_preview(
    world: World, pushed: dict[str, Any]
) -> None:
    """Preview maker, then pick admin in the form and press Apply: a new preview, nothing saved."""
    before = roles_of(world)
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
        form = policy_form(page, group_0="Engineering", role_0="maker")
        preview = browser.post("/portal/w/acme/roles/preview", data=form, headers=admin())
        edited = policy_form(preview, role_0="admin")
        refused = browser.post("/portal/w/acme/roles/apply", data=edited, headers=admin())
        assert refused.status_code == 409
        assert "not the one previewed" in refused.text
        assert changes(refused) == {("viewer", "admin"): 4}
        assert roles_of(world) == before
        # The new preview's form applies what it shows.
        again = browser.post(
            "/portal/w/acme/roles/apply", data=policy_form(refused), headers=admin()
        )
        assert again.status_code == 303
    assert roles_of(world)["eng0@acme.test"] == "admin"


def test_apply_refuses_when_the_policy_changed_since_the_preview(
    world: World, pushed: dict[str, Any]
) -> None:
    """Another admin saves a policy between preview and apply: refused, the fresh preview shown."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
        form = policy_form(page, group_0="Sales", role_0="contributor")
        preview = browser.post("/portal/w/acme/roles/preview", data=form, headers=admin())
        world.identity.admin.set_policy(
            "acme", TenantPolicy(roles=RolePolicy(default_role="maker"))
        )
        stale = browser.post(
            "/portal/w/acme/roles/apply", data=policy_form(preview), headers=admin()
        )
        assert stale.status_code == 409
        assert "Someone changed the role policy since this preview" in stale.text
        assert world.identity.admin.get_policy("acme").roles.default_role == "maker"
        # Measured against the members as the other policy left them (all maker but ada).
        assert changes(stale) == {("maker", "viewer"): 4, ("maker", "contributor"): 2}


def test_the_admin_guard_refusal_is_a_form_error_not_a_500(
    world: World, pushed: dict[str, Any]
) -> None:
    """Group-based with the guard on would demote ada, the only admin: shown and refused."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
        form = policy_form(page, mode="group-based", admin_guard="on")
        preview = browser.post("/portal/w/acme/roles/preview", data=form, headers=admin())
        assert preview.status_code == 200
        assert 'id="preview-refusal"' in preview.text
        assert 'id="preview-admins-after">0<' in preview.text
        refused = browser.post(
            "/portal/w/acme/roles/apply", data=policy_form(preview), headers=admin()
        )
        assert refused.status_code == 409
        assert 'id="roles-error"' in refused.text
        assert "without an active admin" in refused.text
    assert roles_of(world)["ada@acme.test"] == "admin"
    assert world.identity.admin.get_policy("acme").roles.mode == "hybrid"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"role_0": "owner"}, "Mapping 1 (Engineering): choose one of admin"),
        ({"priority_0": "high"}, "the priority is a whole number, not &#39;high&#39;"),
        ({"priority_0": "99999999"}, "within ±1,000,000"),
        ({"mode": "anarchy"}, "Mode: choose hybrid"),
        ({"default_role": "root"}, "Default role: choose one of"),
        ({"rows": "x"}, "The form is out of date"),
        ({"rows": "100000"}, "at most 100 groups"),
    ],
)
def test_a_bad_field_is_a_400_page_that_says_which(
    world: World, pushed: dict[str, Any], change: dict[str, str], message: str
) -> None:
    """Each unreadable field: a 400 naming it, for preview and apply alike; nothing saved."""
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
        form = {**policy_form(page, group_0="Engineering", role_0="maker"), **change}
        for action in ("preview", "apply"):
            answer = browser.post(f"/portal/w/acme/roles/{action}", data=form, headers=admin())
            assert answer.status_code == 400, answer.text
            assert message in answer.text
    assert world.identity.admin.get_policy("acme") == TenantPolicy()


def test_removing_a_mapping_and_keeping_linking_and_deprovisioning(
    world: World, pushed: dict[str, Any]
) -> None:
    """A removed row is dropped, the rules saved; linking and on_delete are kept as they were."""
    identity = world.identity
    identity.admin.set_policy(
        "acme",
        TenantPolicy(
            roles=RolePolicy(
                mappings=(
                    GroupMapping(role="maker", group_name="Engineering", priority=2),
                    GroupMapping(role="contributor", group_name="Sales", priority=1),
                )
            ),
            on_delete="deactivate",
        ),
    )
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
        assert policy_form(page)["group_0"] == "Engineering"
        preview = browser.post(
            "/portal/w/acme/roles/preview",
            data=policy_form(page, remove_0="on", tie="less", admin_guard="on"),
            headers=admin(),
        )
        assert changes(preview) == {("maker", "viewer"): 4}
        applied = browser.post(
            "/portal/w/acme/roles/apply", data=policy_form(preview), headers=admin()
        )
        assert applied.status_code == 303
    saved = identity.admin.get_policy("acme")
    assert [m.group_name for m in saved.roles.mappings] == ["Sales"]
    assert saved.on_delete == "deactivate"
    assert (saved.roles.prefer_less_privileged, saved.roles.admin_guard) == (True, True)


def test_csrf_and_workspace_isolation(world: World, pushed: dict[str, Any]) -> None:
    """No CSRF token, another workspace's token, another workspace's page: 403, nothing saved."""
    world.identity.admin.set_policy("beta", TenantPolicy(roles=RolePolicy(default_role="maker")))
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
        form = policy_form(page, group_0="Engineering", role_0="admin")
        preview = browser.post("/portal/w/acme/roles/preview", data=form, headers=admin())
        ready = policy_form(preview)
        no_token = {k: v for k, v in ready.items() if k != "csrf"}
        assert (
            browser.post("/portal/w/acme/roles/apply", data=no_token, headers=admin()).status_code
            == 403
        )
        beta_token = csrf_of(browser.get("/portal/w/beta/roles", headers=admin("beta")))
        forged = {**ready, "csrf": beta_token}
        assert (
            browser.post("/portal/w/acme/roles/apply", data=forged, headers=admin()).status_code
            == 403
        )
        # Acme's admin cannot open or post to beta's page.
        assert browser.get("/portal/w/beta/roles", headers=admin()).status_code == 403
        assert (
            browser.post("/portal/w/beta/roles/apply", data=ready, headers=admin()).status_code
            == 403
        )
        beta_page = browser.get("/portal/w/beta/roles", headers=admin("beta"))
        assert "Engineering" not in beta_page.text  # acme's groups are not listed there
    assert world.identity.admin.get_policy("acme") == TenantPolicy()
    assert world.identity.admin.get_policy("beta").roles.default_role == "maker"
    assert roles_of(world)["eng0@acme.test"] == "viewer"


def test_group_names_and_rules_are_escaped(world: World, pushed: dict[str, Any]) -> None:
    """A group named like markup is text in the groups list, the form and the preview's rules."""
    identity = world.identity
    token = identity.admin.create_token("acme", "okta-2").secret
    evil = '<script>alert("x")</script>'
    with httpx.Client(
        transport=httpx.WSGITransport(app=world.app),
        base_url=f"{ORIGIN}/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
    ) as scim:
        created = scim.post(
            "/Groups",
            json={"schemas": [GROUP], "displayName": evil, "members": [{"value": pushed["ada"]}]},
        )
        assert created.status_code == 201
    with world.client() as browser:
        page = browser.get("/portal/w/acme/roles", headers=admin())
        form = policy_form(page, mode="group-based", group_0=evil, role_0="admin")
        preview = browser.post("/portal/w/acme/roles/preview", data=form, headers=admin())
    for answer in (page, preview):
        assert evil not in answer.text
        assert "&lt;script&gt;" in answer.text
    assert policy_form(preview)["group_0"] == evil


def test_a_set_up_link_opens_the_section_only_when_it_includes_it(
    world: World, pushed: dict[str, Any]
) -> None:
    """A link for SSO and SCIM does not open the role policy; one with roles does."""
    for sections, status in ((("scim",), 403), (("scim", "roles"), 200)):
        issued = world.portal.links.issue("acme", created_by="user-acme", sections=sections)
        with world.client() as browser:
            token = dict(parse_qsl(urlsplit(issued.url(PORTAL)).query))["token"]
            shown = browser.get("/portal/setup", params={"token": token})
            assert shown.status_code == 200, shown.text
            fields = dict(
                re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text)
            )
            assert browser.post("/portal/setup", data=fields).status_code == 303
            page = browser.get("/portal/w/acme/roles")
            assert page.status_code == status
            assert ('href="/portal/w/acme/roles"' in page.text) == (status == 200)
