"""The typed models of pbidentity.models, built from domain values alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest
from scim2_models import Context

from pbidentity._converter import converter
from pbidentity.domain import DEFAULT_ROLE_URN
from pbidentity.domain import Event
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import member_snapshot
from pbidentity.models import ENTERPRISE_URN
from pbidentity.models import MemberProfile
from pbidentity.models import RoleExtension
from pbidentity.models import group_profile
from pbidentity.models import member_document
from pbidentity.models import profile_model
from pbidentity.models import role_extension
from pbidentity.scim._schema import user_resource

NOW = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)
CUSTOM_URN = "urn:okta:acme_app:1.0:user:custom"
ROOT = Path(__file__).parent.parent.parent


def member(**changes: object) -> Member:
    """An Entra-shaped member: a corp.local address, the enterprise extension, a role."""
    values: dict[str, object] = {
        "tenant_id": "t-1",
        "id": "m-1",
        "attributes": {
            "userName": "ada@corp.local",
            "externalId": "0a21f0f2",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@corp.local", "primary": True, "type": "work"}],
            "active": True,
            ENTERPRISE_URN: {"department": "R&D", "manager": {"value": "m-0"}},
        },
        "role_attribute": "maker",
        "role": "admin",
        "role_source": "group",
        "created": NOW,
        "last_modified": NOW,
        "version": 3,
    }
    values.update(changes)
    return Member(**values)  # type: ignore[arg-type]


def test_a_member_value_gives_its_whole_profile() -> None:
    """Core, enterprise and role extension attributes, typed, with id and meta."""
    profile = member().profile
    assert isinstance(profile, MemberProfile)
    assert (profile.id, profile.user_name, profile.external_id) == (
        "m-1",
        "ada@corp.local",
        "0a21f0f2",
    )
    assert profile.emails is not None
    assert profile.emails[0].value == "ada@corp.local"  # no email validator refuses it
    assert profile.enterprise is not None
    assert profile.enterprise.department == "R&D"
    assert profile.enterprise.manager is not None
    assert profile.enterprise.manager.value == "m-0"
    assert profile.role_extension is not None
    assert profile.role_extension.role == "maker"
    assert profile.meta is not None
    assert (profile.meta.created, profile.meta.version) == (NOW, 'W/"3"')


def test_a_member_without_extensions_has_none() -> None:
    """No enterprise block and no role the IdP sent: both extensions are ``None``."""
    attributes = {"userName": "bob@example.com"}
    profile = member(attributes=attributes, role_attribute=None).profile
    assert profile.enterprise is None
    assert profile.role_extension is None
    dumped = profile.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    assert dumped["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User"]


def test_the_role_extension_is_built_once_per_urn() -> None:
    """One class per URN, each a RoleExtension named so, and one profile class per URN."""
    custom = role_extension(CUSTOM_URN)
    assert custom is role_extension(CUSTOM_URN)
    assert role_extension(DEFAULT_ROLE_URN) is RoleExtension
    assert issubclass(custom, RoleExtension)
    assert custom.__name__ == "RoleExtension"
    assert custom.__schema__ == CUSTOM_URN
    assert profile_model(CUSTOM_URN) is profile_model(CUSTOM_URN)
    assert profile_model(CUSTOM_URN) is not profile_model(DEFAULT_ROLE_URN)


def test_a_custom_urn_carries_the_role() -> None:
    """A member read with the app's URN puts the role under it, in the document and the model."""
    value = member(role_urn=CUSTOM_URN)
    assert member_document(value)[CUSTOM_URN] == {"role": "maker"}
    profile = value.profile
    assert type(profile.role_extension) is role_extension(CUSTOM_URN)
    dumped = profile.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    assert dumped[CUSTOM_URN] == {"role": "maker"}
    assert dumped["schemas"] == [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        ENTERPRISE_URN,
        CUSTOM_URN,
    ]
    # The URN is no part of the member's identity: the same member, read another way.
    assert value == member()


def test_the_scim_service_validates_with_the_profile_model() -> None:
    """What SCIM accepts for a User is what a profile can hold: one model, per URN."""
    assert user_resource(CUSTOM_URN).model is profile_model(CUSTOM_URN)
    assert user_resource().model is profile_model(DEFAULT_ROLE_URN)


def test_a_group_value_and_its_members_give_a_group_profile() -> None:
    """The group's name, externalId and members (id and display) with meta."""
    group = Group(
        tenant_id="t-1",
        id="g-1",
        attributes={"displayName": "Engineering", "externalId": "okta-g"},
        created=NOW,
        last_modified=NOW,
    )
    profile = group_profile(group, [MemberRef(id="m-1", display="Ada"), MemberRef(id="m-2")])
    assert (profile.id, profile.display_name, profile.external_id) == (
        "g-1",
        "Engineering",
        "okta-g",
    )
    assert profile.members is not None
    assert [(m.value, m.display, m.type) for m in profile.members] == [
        ("m-1", "Ada", "User"),
        ("m-2", None, "User"),
    ]
    assert group_profile(group, None).members is None


def test_mypy_sees_the_profile_types(tmp_path: Path) -> None:
    """Under mypy --strict profile attributes have their types: a wrong use is an error."""
    pytest.importorskip("mypy")
    code = tmp_path / "host_app.py"
    code.write_text(
        textwrap.dedent(
            """
            from pbidentity.domain import Member

            def use(member: Member) -> None:
                profile = member.profile
                assert profile.enterprise is not None and profile.role_extension is not None
                department: int = profile.enterprise.department
                role: int = profile.role_extension.role
                user_name: int = profile.user_name
                assert profile.emails
                email: int = profile.emails[0].value
                manager: int = profile.enterprise.manager
            """
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(code),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    found = [
        line.split(": error: ", 1)[1] for line in result.stdout.splitlines() if ": error: " in line
    ]
    expected = (
        'Incompatible types in assignment (expression has type "{}", variable has type "int")'
    )
    assert found == [
        expected.format("str | None") + "  [assignment]",
        expected.format("str | None") + "  [assignment]",
        expected.format("str | None") + "  [assignment]",
        expected.format("str | None") + "  [assignment]",
        expected.format("Manager | None") + "  [assignment]",
    ], result.stdout + result.stderr


def test_the_urn_a_value_was_read_with_is_no_part_of_its_json() -> None:
    """The CLI's JSON (audit trail, members) shows what a member or event is, not its reading."""
    value = member(role_urn=CUSTOM_URN)
    assert "role_urn" not in converter.unstructure(value)
    event = Event(
        id="e-1",
        tenant_id="t-1",
        type="member.created",
        subject_id="m-1",
        actor="app",
        occurred=NOW,
        data={"userName": "ada@corp.local", "member": member_snapshot(value)},
        role_urn=CUSTOM_URN,
    )
    unstructured = converter.unstructure(event)
    assert "role_urn" not in unstructured
    assert unstructured["data"]["member"]["roleAttribute"] == "maker"
    assert event.member == value
    assert event.profile is not None
    assert event.profile.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)[CUSTOM_URN] == {
        "role": "maker"
    }
