"""Roles over SAML for workspaces without SCIM: real signed responses, a real database.

A workspace's connection may read the member's role from a sign-in (the
``role`` attribute statement Okta's SAML app sent before SCIM, Entra's role
claim, or group names mapped by the role policy). Each case here goes through
``SamlService`` as the host app drives it, with responses signed by a
certificate made at test time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from pbidentity.admin import Admin
from pbidentity.domain import Event
from pbidentity.domain import Member
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.members import Members
from pbidentity.policy import TenantPolicy
from pbidentity.roles import GroupMapping
from pbidentity.roles import RolePolicy
from pbidentity.saml import Authorized
from pbidentity.saml import SamlConfig
from pbidentity.saml import SamlRoles
from pbidentity.saml import SamlService
from pbidentity.saml import SignIn
from pbidentity.saml import SignInFailure
from pbidentity.saml import SignInOutcome
from pbidentity.saml._validate import check_roles
from pbidentity.storage import Storage
from tests.saml.idp import TestIdp
from tests.saml.test_service import PUBLIC_URL
from tests.saml.test_service import activate
from tests.saml.test_service import finish
from tests.saml.test_service import post_form
from tests.saml.test_service import request_id
from tests.saml.test_service import sign_in_with
from tests.saml.test_service import sp

ENTRA_ROLE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
ENTRA_GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
ON = SamlRoles(enabled=True)


@pytest.fixture
def service(storage: Storage) -> SamlService:
    """Workspace ``acme`` with Jane (a viewer) and an active connection that reads roles."""
    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test", given_name="Jane", email="jane@acme.test")
    service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL))
    activate(service, the_idp())
    service.update_options("acme", roles=ON, unknown_members="create")
    return service


@functools.cache
def the_idp() -> TestIdp:
    """The workspace's IdP, one for the module (its certificate is slow to make)."""
    return TestIdp(entity_id="http://www.okta.com/exk1", sso_url="https://acme.okta.test/sso/saml")


def sign_in(
    service: SamlService, name_id: str, attributes: Mapping[str, Sequence[str]]
) -> SignInOutcome:
    """An SP-initiated sign-in of ``name_id`` carrying ``attributes``."""
    return sign_in_with(service, the_idp(), name_id, attributes=attributes)


def member(storage: Storage, email: str) -> Member:
    """The workspace's member ``email``, as stored."""
    [found] = [m for m in Members(storage).all("acme") if m.user_name == email]
    return found


def events(storage: Storage, kind: str) -> list[Event]:
    """The workspace's events of one type, oldest first."""
    return [e for e in Members(storage).audit_trail("acme") if e.type == kind]


def authorize_with(service: SamlService, attributes: Mapping[str, Sequence[str]]) -> Authorized:
    """Save the metadata again and pass the admin's test sign-in carrying ``attributes``."""
    idp = the_idp()
    saved = service.save_metadata_xml("acme", idp.metadata_xml())
    assert saved.saved, saved.report.render()
    redirect = service.begin_authorize("acme")
    outcome = service.consume(
        "acme",
        idp.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=request_id(redirect.url),
            attributes={"firstName": ["Jane"], **attributes},
        ),
    )
    assert isinstance(outcome, Authorized), outcome
    return outcome


# Just in time and at each sign-in -------------------------------------------------------------


def test_a_member_created_just_in_time_gets_the_role_the_sign_in_names(
    service: SamlService, storage: Storage
) -> None:
    """A new member's role is the sign-in's `role` value, decided by the policy, in one event."""
    outcome = sign_in(service, "new@acme.test", {"role": ["maker"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.created
    assert (outcome.member.role, outcome.member.role_source) == ("maker", "attribute")
    assert outcome.member.role_rule == "SAML sign-in: role attribute maker"
    assert "role maker from the sign-in (SAML sign-in: role attribute maker)" in outcome.trail
    stored = member(storage, "new@acme.test")
    assert stored.role == "maker"
    [created] = [e for e in events(storage, "member.created") if e.subject_id == stored.id]
    assert created.data["role"] == "maker"
    assert created.actor == "saml"
    assert events(storage, "member.role_changed") == []


def test_a_member_created_just_in_time_without_a_role_gets_the_least_privileged(
    service: SamlService,
) -> None:
    """No role in the sign-in: the just-in-time member gets the app's least privileged role."""
    outcome = sign_in(service, "new@acme.test", {"firstName": ["New"]})
    assert isinstance(outcome, SignIn), outcome
    assert (outcome.member.role, outcome.member.role_source) == ("viewer", "app")
    assert "the sign-in carries no 'role' attribute; the member keeps no role yet" in outcome.trail


def test_an_existing_members_role_changes_at_sign_in_with_a_decision_and_an_event(
    service: SamlService, storage: Storage
) -> None:
    """Jane, a viewer, signs in as admin: her role, its rule, the trail and one event say so."""
    outcome = sign_in(service, "jane@acme.test", {"role": ["Admin"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.role == "admin"
    assert "role changed from viewer to admin" in outcome.trail
    stored = member(storage, "jane@acme.test")
    assert (stored.role, stored.role_source, stored.role_rule) == (
        "admin",
        "attribute",
        "SAML sign-in: role attribute admin",
    )
    [changed] = events(storage, "member.role_changed")
    assert changed.subject_id == stored.id
    assert changed.actor == "saml"
    assert changed.data == {
        "old": "viewer",
        "new": "admin",
        "source": "attribute",
        "rule": "SAML sign-in: role attribute admin",
    }
    # The same role again writes nothing more.
    again = sign_in(service, "jane@acme.test", {"role": ["admin"]})
    assert isinstance(again, SignIn)
    assert member(storage, "jane@acme.test").version == stored.version
    assert len(events(storage, "member.role_changed")) == 1
    # And a sign-in that names no role keeps it.
    silent = sign_in(service, "jane@acme.test", {"firstName": ["Jane"]})
    assert isinstance(silent, SignIn)
    assert silent.member.role == "admin"


def test_several_role_values_give_the_most_privileged_the_app_knows(
    service: SamlService,
) -> None:
    """Entra's role claim, several values: the policy picks the most privileged known one."""
    outcome = sign_in(service, "jane@acme.test", {ENTRA_ROLE: ["Contributor", "Maker", "Owner"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.role == "maker"
    assert (
        outcome.member.role_rule
        == "SAML sign-in: app role maker, the most privileged of the member's"
    )
    [unknown] = outcome.findings
    assert unknown.code == "roles.unknown"
    assert "'Owner'" in unknown.message


def test_the_attribute_is_the_workspaces_choice(service: SamlService, storage: Storage) -> None:
    """A workspace naming its own attribute reads it first, before a `role` it did not name."""
    service.update_options("acme", roles=SamlRoles(enabled=True, attribute="appRole"))
    outcome = sign_in(service, "jane@acme.test", {"appRole": ["maker"], "role": ["admin"]})
    assert isinstance(outcome, SignIn), outcome
    assert member(storage, "jane@acme.test").role == "maker"


def test_roles_are_off_until_the_workspace_turns_them_on(storage: Storage) -> None:
    """Off by default: a role in the sign-in changes nothing, and the test sign-in says so."""
    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test", email="jane@acme.test")
    service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL))
    activate(service, the_idp())
    assert service.connections("acme").active.roles == SamlRoles()  # type: ignore[union-attr]
    outcome = sign_in(service, "jane@acme.test", {"role": ["admin"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.role == "viewer"
    assert events(storage, "member.role_changed") == []
    report = authorize_with(service, {"role": ["admin"]}).report
    [unread] = [f for f in report.findings if f.code.startswith("roles.")]
    assert (unread.code, unread.severity) == ("roles.not_read", "info")


# Group names through the role policy ------------------------------------------------------------


def group_policy(storage: Storage, mode: str = "group-based") -> None:
    """Engineering maps to maker (priority 10), Admins to admin (priority 1)."""
    Admin(storage).set_policy(
        "acme",
        TenantPolicy(
            roles=RolePolicy(
                mode=mode,  # type: ignore[arg-type]
                mappings=(
                    GroupMapping(role="maker", group_name="Engineering", priority=10),
                    GroupMapping(role="admin", group_name="Admins", priority=1),
                ),
            )
        ),
    )


def test_group_names_are_mapped_through_the_role_policy(
    service: SamlService, storage: Storage
) -> None:
    """The sign-in's group names go through the policy's mappings; the highest priority wins."""
    group_policy(storage)
    service.update_options("acme", roles=SamlRoles(enabled=True, groups_attribute="groups"))
    outcome = sign_in(service, "jane@acme.test", {"groups": ["Everyone", "admins", "Engineering"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.role == "maker"
    assert outcome.member.role_source == "group"
    assert outcome.member.role_rule == (
        "SAML sign-in: group 'Engineering' (priority 10) maps to maker"
    )
    # Group-based: a role attribute is not the member's own value here.
    only_role = sign_in(service, "new@acme.test", {"role": ["admin"], "groups": ["Everyone"]})
    assert isinstance(only_role, SignIn)
    assert only_role.member.role == "viewer"
    assert "decide nothing under the role policy" in " ".join(only_role.trail)


def test_groups_no_mapping_names_keep_a_role_a_sign_in_gave(
    service: SamlService, storage: Storage
) -> None:
    """A role from an earlier sign-in stays when the next one's groups map to nothing."""
    group_policy(storage)
    service.update_options("acme", roles=SamlRoles(enabled=True, groups_attribute="groups"))
    first = sign_in(service, "jane@acme.test", {"groups": ["Admins"]})
    assert isinstance(first, SignIn)
    assert (first.member.role, first.member.role_source) == ("admin", "group")
    later = sign_in(service, "jane@acme.test", {"groups": ["Everyone"]})
    assert isinstance(later, SignIn)
    stored = member(storage, "jane@acme.test")
    assert (stored.role, stored.role_source, stored.version) == (
        "admin",
        "group",
        first.member.version,
    )


def test_in_hybrid_mode_the_role_attribute_overrides_the_groups(
    service: SamlService, storage: Storage
) -> None:
    """Hybrid: the member's own value first, as with SCIM; groups when it names nothing."""
    group_policy(storage, "hybrid")
    service.update_options("acme", roles=SamlRoles(enabled=True, groups_attribute="groups"))
    both = sign_in(service, "jane@acme.test", {"role": ["contributor"], "groups": ["Admins"]})
    assert isinstance(both, SignIn)
    assert both.member.role == "contributor"
    groups_only = sign_in(service, "jane@acme.test", {"groups": ["Admins"]})
    assert isinstance(groups_only, SignIn)
    assert groups_only.member.role == "admin"


def test_entras_group_claim_is_read_as_the_groups_attribute(
    service: SamlService, storage: Storage
) -> None:
    """Entra's group claim URI (set to send names) stands for the `groups` attribute."""
    group_policy(storage)
    service.update_options("acme", roles=SamlRoles(enabled=True, groups_attribute="groups"))
    outcome = sign_in(service, "jane@acme.test", {ENTRA_GROUPS: ["Admins"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.role == "admin"


def test_a_group_mapped_by_scim_id_is_not_matched_by_a_sign_in_name(
    service: SamlService, storage: Storage
) -> None:
    """A mapping by SCIM group id names a pushed group, never a name a sign-in sends."""
    Admin(storage).set_policy(
        "acme",
        TenantPolicy(
            roles=RolePolicy(
                mode="group-based", mappings=(GroupMapping(role="admin", group_id="g1"),)
            )
        ),
    )
    service.update_options("acme", roles=SamlRoles(enabled=True, groups_attribute="groups"))
    outcome = sign_in(service, "jane@acme.test", {"groups": ["g1", "saml:g1"]})
    assert isinstance(outcome, SignIn)
    assert outcome.member.role == "viewer"


# Refusals and what stays ------------------------------------------------------------------------


def test_an_unknown_role_value_is_a_finding_and_the_member_keeps_their_role(
    service: SamlService, storage: Storage
) -> None:
    """`superuser` is no role of the app: a warning, the role unchanged, never a 500."""
    Members(storage).edit("acme", member(storage, "jane@acme.test").id, role="maker")
    outcome = sign_in(service, "jane@acme.test", {"role": ["superuser"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.role == "maker"
    [finding] = outcome.findings
    assert (finding.code, finding.severity, finding.where) == (
        "roles.unknown",
        "warning",
        "attribute role",
    )
    assert "'superuser'" in finding.message
    assert "keeps the role maker" in finding.message
    assert [e.data["new"] for e in events(storage, "member.role_changed")] == ["maker"]


def test_the_findings_reach_the_host_app_through_the_finish_step(
    service: SamlService, storage: Storage
) -> None:
    """Over HTTP the outcome is kept at the ACS and read back at the finish, findings and all."""
    seen: list[SignInOutcome] = []

    def on_result(request: Request, outcome: SignInOutcome) -> Response:
        seen.append(outcome)
        return Response(status=200)

    service.on_result = on_result
    login = service.handle(Request(method="GET", path="/acme/login", base_url=f"{PUBLIC_URL}/saml"))
    redirect_to = login.header("location") or ""
    response = the_idp().response(
        sp=sp(service),
        name_id="jane@acme.test",
        in_response_to=request_id(redirect_to),
        attributes={"role": ["root"]},
    )
    acs = post_form(service, "/acme/acs", {"SAMLResponse": response})
    assert acs.status == 303
    assert finish(service, acs, login.header("set-cookie")).status == 200
    [outcome] = seen
    assert isinstance(outcome, SignIn)
    assert [f.code for f in outcome.findings] == ["roles.unknown"]
    assert outcome.member.role == "viewer"


def test_a_look_alike_gets_no_role_and_is_refused(service: SamlService, storage: Storage) -> None:
    """The identity rules come first: a look-alike address is refused and the member untouched."""
    Members(storage).add("acme", "ceo@strasse.test", email="ceo@strasse.test")
    outcome = sign_in(service, "ceo@straße.test", {"role": ["admin"]})
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code == "member.lookalike"
    assert member(storage, "ceo@strasse.test").role == "viewer"
    assert events(storage, "member.role_changed") == []


def test_a_deactivated_member_gets_no_role(service: SamlService, storage: Storage) -> None:
    """A deactivated member is refused before any role is given."""
    Members(storage).add("acme", "gone@acme.test", active=False)
    outcome = sign_in(service, "gone@acme.test", {"role": ["admin"]})
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code == "member.deactivated"
    assert member(storage, "gone@acme.test").role == "viewer"


def test_a_sign_in_never_demotes_the_last_admin_under_the_guard(
    service: SamlService, storage: Storage
) -> None:
    """Admin guard on, the only admin signs in as viewer: signed in, still admin, told."""
    Admin(storage).set_policy("acme", TenantPolicy(roles=RolePolicy(admin_guard=True)))
    Members(storage).edit("acme", member(storage, "jane@acme.test").id, role="admin")
    outcome = sign_in(service, "jane@acme.test", {"role": ["viewer"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.role == "admin"
    assert [f.code for f in outcome.findings] == ["roles.last_admin"]
    assert member(storage, "jane@acme.test").role == "admin"


def test_a_member_scim_once_managed_takes_the_sign_ins_role_once_scim_is_off(
    service: SamlService, storage: Storage
) -> None:
    """SCIM switched off with its links kept: the sign-in decides, not SCIM's last values."""
    jane = member(storage, "jane@acme.test")
    with storage.transaction() as tx:
        linked = attrs.evolve(jane, scim_managed=True, role_attribute="viewer", version=2)
        tx.replace_member(linked, expected_version=jane.version)
    outcome = sign_in(service, "jane@acme.test", {"role": ["maker"]})
    assert isinstance(outcome, SignIn), outcome
    assert member(storage, "jane@acme.test").role == "maker"


# SCIM is authoritative ---------------------------------------------------------------------------


def test_with_scim_on_the_sign_in_role_is_ignored_and_the_admin_is_told(
    service: SamlService, storage: Storage
) -> None:
    """SCIM on: the role statement changes nothing; saving and the test sign-in say it can go."""
    Admin(storage).set_scim_enabled("acme", True)
    outcome = sign_in(service, "jane@acme.test", {"role": ["admin"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.role == "viewer"
    assert any("SCIM provisioning is on" in line for line in outcome.trail)
    assert events(storage, "member.role_changed") == []
    created = sign_in(service, "new@acme.test", {"role": ["admin"]})
    assert isinstance(created, SignIn)
    assert created.member.role == "viewer"
    saved = service.save_metadata_xml("acme", the_idp().metadata_xml())
    [info] = [f for f in saved.report.findings if f.code == "roles.scim_authoritative"]
    assert info.severity == "info"
    assert "remove the default-role attribute statement" in info.suggestion
    authorized = authorize_with(service, {"role": ["admin"]})
    [told] = [f for f in authorized.report.findings if f.code.startswith("roles.")]
    assert (told.code, told.severity) == ("roles.scim_authoritative", "info")


def test_with_scim_on_a_role_statement_is_reported_even_when_roles_are_off(
    storage: Storage,
) -> None:
    """The article's advice holds for every workspace on SCIM whose IdP still sends a role."""
    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test", email="jane@acme.test")
    Admin(storage).set_scim_enabled("acme", True)
    service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL))
    activate(service, the_idp())
    authorized = authorize_with(service, {ENTRA_ROLE: ["Admin"]})
    [told] = [f for f in authorized.report.findings if f.code.startswith("roles.")]
    assert told.code == "roles.scim_authoritative"
    assert told.where == f"attribute {ENTRA_ROLE}"
    quiet = authorize_with(service, {})
    assert [f for f in quiet.report.findings if f.code.startswith("roles.")] == []


# The admin's view -------------------------------------------------------------------------------


def test_the_test_sign_in_says_which_role_sign_ins_give(service: SamlService) -> None:
    """The test sign-in reports the role it would give, or that the IdP sends none."""
    given = authorize_with(service, {"role": ["maker"]})
    [info] = [f for f in given.report.findings if f.code.startswith("roles.")]
    assert (info.code, info.severity) == ("roles.from_signin", "info")
    assert "gives maker" in info.message
    missing = authorize_with(service, {})
    [warning] = [f for f in missing.report.findings if f.code.startswith("roles.")]
    assert (warning.code, warning.severity) == ("roles.not_sent", "warning")
    unknown = authorize_with(service, {"role": ["root"]})
    assert [f.code for f in unknown.report.findings if f.code.startswith("roles.")] == [
        "roles.unknown"
    ]


def test_the_setting_is_stored_and_carried_over_to_new_metadata(
    service: SamlService,
) -> None:
    """The setting is stored, applies to active and pending, and survives a re-import."""
    chosen = SamlRoles(enabled=True, attribute="appRole", groups_attribute="memberOf")
    current = service.update_options("acme", roles=chosen)
    assert current.active is not None
    assert current.active.roles == chosen
    assert service.connections("acme").active.roles == chosen  # type: ignore[union-attr]
    saved = service.save_metadata_xml("acme", the_idp().metadata_xml())
    assert saved.connection is not None
    assert saved.connection.roles == chosen
    off = service.save_metadata_xml("acme", the_idp().metadata_xml(), roles=SamlRoles())
    assert off.connection is not None
    assert off.connection.roles == SamlRoles()
    assert service.connections("acme").active.roles == chosen  # type: ignore[union-attr]


def test_saml_status_shows_the_roles_setting(
    service: SamlService, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pbidentity saml status` says where roles come from, in text and in JSON."""
    from pbidentity.cli import main

    service.update_options("acme", roles=SamlRoles(enabled=True, groups_attribute="groups"))
    status = ["--database", database_url, "saml", "status", "--tenant", "acme"]
    assert main([*status, "--public-url", PUBLIC_URL]) == 0
    assert (
        "  roles from sign-ins: attribute 'role', groups from 'groups'" in capsys.readouterr().out
    )
    assert main([*status, "--public-url", PUBLIC_URL, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["active"]["roles"] == {
        "enabled": True,
        "attribute": "role",
        "groups_attribute": "groups",
    }


def test_update_options_refuses_a_roles_value_of_another_type(service: SamlService) -> None:
    """A settings form passing a plain string gets an InputError, not a stored oddity."""
    from pbidentity.exceptions import InputError

    bad: Any = "role"
    with pytest.raises(InputError, match="SamlRoles"):
        service.update_options("acme", roles=bad)


@pytest.mark.parametrize(
    ("roles", "scim", "advertised", "codes"),
    [
        (ON, True, (), ["roles.scim_authoritative"]),
        (SamlRoles(), True, ("email", "role"), ["roles.scim_authoritative"]),
        (SamlRoles(), True, ("email",), []),
        (ON, False, (), []),
        (ON, False, ("email", "firstName"), ["roles.not_sent"]),
        (ON, False, ("email", "Role"), []),
        (SamlRoles(enabled=True, groups_attribute="groups"), False, ("groups",), []),
        (SamlRoles(), False, ("role",), []),
    ],
)
def test_the_validator_checks_the_role_statement_against_scim(
    roles: SamlRoles, scim: bool, advertised: tuple[str, ...], codes: list[str]
) -> None:
    """Save-time findings: SCIM makes a role statement information; a missing one is a warning."""
    assert [f.code for f in check_roles(roles, scim_enabled=scim, advertised=advertised)] == codes
