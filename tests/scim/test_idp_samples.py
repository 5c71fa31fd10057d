"""The recorded IdP requests of tests/data, replayed over HTTP in the order each IdP sends them.

Each sample is named after its source (``okta-*``, ``entra-*``, ``onelogin-*``,
``jumpcloud-*``); the ids it carries are the IdP's and are replaced by the ids of
the resources created here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pbidentity.members import Members
from pbidentity.storage import Storage
from tests.conftest import Workspace
from tests.scim.helpers import ROLE
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user

DATA = Path(__file__).parent.parent / "data"


def sample(name: str, **ids: str) -> Any:
    """A recorded request body, with the recorded ids replaced (``recorded=new``)."""
    text = (DATA / name).read_text(encoding="utf-8")
    for recorded, new in ids.items():
        text = text.replace(recorded.replace("_", "-"), new)
    return json.loads(text)


def test_okta_conversation(acme: Workspace, storage: Storage) -> None:
    """Create, PUT echoing read-only fields, path-less deactivate, group rename with its id."""
    created = acme.client.post("/Users", json=sample("okta-create-user.json"))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    echo = sample("okta-put-user-echo.json")
    echo["id"] = user_id
    echo["userName"] = created.json()["userName"]
    put = acme.client.put(f"/Users/{user_id}", json=echo)
    assert put.status_code == 200, put.text
    assert put.json()["id"] == user_id
    assert put.json()["name"]["givenName"] == echo["name"]["givenName"]
    deactivated = acme.client.patch(f"/Users/{user_id}", json=sample("okta-oin-deactivate.json"))
    assert deactivated.status_code == 200
    assert deactivated.json()["active"] is False
    assert acme.client.get(f"/Users/{user_id}").json()["active"] is False
    group = create_group(acme.client, "Test", user_id)
    rename = sample("okta-group-rename.json", abf4dd94_a4c0_4f67_89c9_76b03340cb9b=group["id"])
    assert acme.client.patch(f"/Groups/{group['id']}", json=rename).status_code == 204
    renamed = acme.client.get(f"/Groups/{group['id']}").json()
    assert renamed["displayName"] == "Test SCIMv2"
    assert [m["value"] for m in renamed["members"]] == [user_id]


def test_entra_conversation(acme: Workspace, storage: Storage) -> None:
    """Create with app roles, string booleans, multi-valued updates, manager, removal by value."""
    created = acme.client.post("/Users", json=sample("entra-create-user.json"))
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/scim+json")
    user_id = created.json()["id"]
    assert created.json()[ROLE] == {"role": "maker"}
    # The role extension is the personal value; Entra's app role is only used without it.
    assert Members(storage).get("acme", user_id).role == "maker"
    manager = create_user(acme.client, "manager@contoso.com")
    steps = [
        sample("entra-update-multivalued.json"),
        sample("entra-add-manager.json", **{"2819c223_7f76_453a_919d_ab1234567891": manager["id"]}),
        sample("entra-aadoptscim062020-pathless-replace.json"),
        sample("entra-legacy-string-boolean.json"),
    ]
    for body in steps:
        response = acme.client.patch(f"/Users/{user_id}", json=body)
        assert response.status_code == 200, (body, response.text)
    final = acme.client.get(f"/Users/{user_id}").json()
    assert final["active"] is False
    enterprise = final["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
    assert enterprise["manager"]["value"] == manager["id"]
    kept = create_user(acme.client, "kept@contoso.com")
    group = create_group(acme.client, "Contoso", user_id, kept["id"])
    removal = sample(
        "entra-legacy-remove-members.json", **{"2819c223_7f76_453a_919d_413861904646": user_id}
    )
    assert acme.client.patch(f"/Groups/{group['id']}", json=removal).status_code == 204
    members = acme.client.get(f"/Groups/{group['id']}").json()["members"]
    assert [m["value"] for m in members] == [kept["id"]]


def test_entra_app_role_decides_without_a_role_attribute(acme: Workspace, storage: Storage) -> None:
    """Entra's core roles, as recorded, give the member its role when nothing else does."""
    body = sample("entra-create-user.json")
    del body["urn:ietf:params:scim:schemas:extension:pbidentity:2.0:User"]
    created = acme.client.post("/Users", json=body)
    assert created.status_code == 201, created.text
    member = Members(storage).get("acme", created.json()["id"])
    assert (member.role, member.role_source) == ("admin", "roles")


def test_onelogin_template_user(acme: Workspace) -> None:
    """An admin-written template with an odd schema URN and string booleans is accepted."""
    created = acme.client.post("/Users", json=sample("onelogin-template-user.json"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["active"] is True
    assert body["emails"][0]["primary"] is True


def test_jumpcloud_conversation(acme: Workspace) -> None:
    """Repeated member adds are idempotent; a path-less rename renames."""
    user = create_user(acme.client, "jc@example.com")
    group = create_group(acme.client, "Engineering")
    add = sample(
        "jumpcloud-repeated-member-add.json", **{"5d6f0a3c_1b2e_4c7d_8e9f_0a1b2c3d4e5f": user["id"]}
    )
    url = f"/Groups/{group['id']}"
    assert acme.client.patch(url, json=add).status_code == 204
    etag = acme.client.get(url).headers["etag"]
    assert acme.client.patch(url, json=add).status_code == 204
    # The repeated add changed nothing, so the version did not move.
    assert acme.client.get(url).headers["etag"] == etag
    assert acme.client.patch(url, json=sample("jumpcloud-rename-pathless.json")).status_code == 204
    renamed = acme.client.get(url).json()
    assert renamed["displayName"] == "Engineering (renamed)"
    assert [m["value"] for m in renamed["members"]] == [user["id"]]


def test_empty_and_null_values_are_pushed_without_error(acme: Workspace) -> None:
    """OneLogin and JumpCloud push empty strings and nulls for unset fields: accepted."""
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "empty@example.com",
        "displayName": None,
        "title": "",
        "nickName": None,
        "name": {"givenName": "Em", "familyName": "Pty", "middleName": None},
        "emails": [{"value": "empty@example.com", "primary": True, "type": "work"}],
        "phoneNumbers": None,
        "active": True,
    }
    created = acme.client.post("/Users", json=body)
    assert created.status_code == 201, created.text
    user = created.json()
    assert "displayName" not in user
    assert "nickName" not in user
    assert "phoneNumbers" not in user
    assert "middleName" not in user["name"]
    nulls = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "title", "value": None},
            {"op": "replace", "value": {"nickName": "", "displayName": None}},
        ],
    }
    patched = acme.client.patch(f"/Users/{user['id']}", json=nulls)
    assert patched.status_code == 200, patched.text
    assert "title" not in patched.json()
    assert "displayName" not in patched.json()
