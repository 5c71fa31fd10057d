"""Roles from a SAML sign-in, for workspaces without SCIM provisioning.

Before SCIM, an IdP's SAML app could give members a role through an
attribute statement (Okta's ``role``) or their groups. When the workspace's
connection reads roles (:class:`~pbidentity.domain.SamlRoles`), each sign-in
decides the member's role with the workspace's :class:`~pbidentity.roles.RolePolicy`,
as SCIM's values are decided: the role attribute as the member's own value,
the group names through the policy's group mappings by name. A sign-in that
names no role the app knows changes nothing: an unknown value is a finding,
never a demotion. Once SCIM provisioning is on, SCIM is authoritative and the
sign-in's role is ignored; the admin is told the statement can go.

Pure: this module reads values and decides; the sign-in part writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

import attrs

from pbidentity.domain import MemberRef
from pbidentity.domain import RoleDecision
from pbidentity.domain import SamlRoles
from pbidentity.domain import Tenant
from pbidentity.policy import TenantPolicy
from pbidentity.roles import RoleSet
from pbidentity.saml._types import Finding

__all__ = [
    "GROUP_ALIASES",
    "ROLE_ALIASES",
    "SignInRole",
    "authorize_findings",
    "decide_role",
    "role_attribute",
    "scim_authoritative",
]

#: Where IdPs put a role when the admin did not name the attribute: Okta's
#: usual statement name, and Entra's app role claim.
ROLE_ALIASES = ("role", "roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")

#: Where IdPs put group names: Okta's and Google's usual statement name,
#: Entra's group claim, AD FS's group claim, LDAP-backed IdPs' attribute.
GROUP_ALIASES = (
    "groups",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
    "http://schemas.xmlsoap.org/claims/Group",
    "memberOf",
)

#: Told to the admin when SCIM provisioning sets roles, as the help article advises.
_SCIM_AUTHORITATIVE = (
    "SCIM provisioning is on for this workspace, so it sets members' roles: the role the "
    "sign-in sends is ignored."
)


@attrs.frozen(kw_only=True)
class SignInRole:
    """What a sign-in says of the member's role."""

    #: The role to give; ``None``: the member keeps the role they have.
    decision: RoleDecision | None = None
    #: One sentence each, for the sign-in's trail.
    trail: tuple[str, ...] = ()
    #: What the admin should know (an unknown role value).
    findings: tuple[Finding, ...] = ()


def _values(attributes: Mapping[str, Sequence[str]], names: Sequence[str]) -> tuple[str, list[str]]:
    """The first of ``names`` the sign-in carries (ignoring case), with its non-blank values."""
    index: dict[str, tuple[str, Sequence[str]]] = {}
    for name, values in attributes.items():
        index.setdefault(name.casefold(), (name, values))
    for wanted in names:
        found = index.get(wanted.casefold())
        if found is not None:
            values = [v.strip() for v in found[1] if isinstance(v, str) and v.strip()]
            return found[0], values
    return names[0], []


def role_attribute(
    setting: SamlRoles, attributes: Mapping[str, Sequence[str]]
) -> tuple[str, list[str]]:
    """The attribute that holds the role in this sign-in, and its values (none: not sent)."""
    names = [setting.attribute, *(a for a in ROLE_ALIASES if a != setting.attribute)]
    return _values(attributes, names)


def _groups(setting: SamlRoles, attributes: Mapping[str, Sequence[str]]) -> list[str]:
    wanted = setting.groups_attribute
    if wanted is None:
        return []
    return _values(attributes, [wanted, *(a for a in GROUP_ALIASES if a != wanted)])[1]


def _unknown(name: str, value: str, roles: RoleSet, consequence: str) -> Finding:
    return Finding(
        code="roles.unknown",
        severity="warning",
        message=f"The sign-in's attribute '{name}' holds {value!r}, which is not one of the "
        f"app's roles ({', '.join(roles.names)}); {consequence}",
        where=f"attribute {name}",
        suggestion="In the IdP app, make the role statement send one of the app's roles.",
    )


def decide_role(
    setting: SamlRoles,
    tenant: Tenant,
    roles: RoleSet,
    attributes: Mapping[str, Sequence[str]],
    current: RoleDecision | None,
) -> SignInRole:
    """The member's role as this sign-in decides it (``current``: the role they have, if any)."""
    if not setting.enabled:
        return SignInRole()
    if tenant.scim_enabled:
        return SignInRole(trail=(f"role not read from the sign-in: {_SCIM_AUTHORITATIVE[:-1]}",))
    name, values = role_attribute(setting, attributes)
    groups = _groups(setting, attributes)
    known = [role for role in (roles.canonical(v) for v in values) if role is not None]
    kept = "keeps no role yet" if current is None else f"keeps the role {current.role}"
    findings = tuple(
        _unknown(name, v, roles, f"the member {kept}.")
        for v in values
        if roles.canonical(v) is None
    )
    if not known and not groups:
        said = "names no role the app knows" if values else f"carries no '{name}' attribute"
        return SignInRole(trail=(f"the sign-in {said}; the member {kept}",), findings=findings)
    # The sign-in's group names, as groups named by displayName: a mapping
    # by SCIM group id never matches one (the prefix is no id pbidentity makes).
    refs = [MemberRef(id=f"saml:{group}", display=group) for group in groups]
    decision = TenantPolicy.of(tenant).roles.decide(
        roles,
        attribute=known[0] if len(known) == 1 else None,
        core_roles=known if len(known) > 1 else None,
        groups=refs,
        current=current,
    )
    if decision.source in ("default", "kept"):
        # Group names no mapping names, or a role the policy's mode does not
        # read: the sign-in decided nothing, so nothing changes.
        return SignInRole(
            trail=(
                f"the sign-in's role values decide nothing under the role policy; the member "
                f"{kept}",
            ),
            findings=findings,
        )
    decision = attrs.evolve(decision, rule=f"SAML sign-in: {decision.rule}")
    return SignInRole(
        decision=decision,
        trail=(f"role {decision.role} from the sign-in ({decision.rule})",),
        findings=findings,
    )


def authorize_findings(
    setting: SamlRoles,
    tenant: Tenant,
    roles: RoleSet,
    attributes: Mapping[str, Sequence[str]],
) -> list[Finding]:
    """What the admin's test sign-in tells of roles: used, ignored under SCIM, or unused."""
    name, values = role_attribute(setting, attributes)
    sends_role = bool(values)
    if tenant.scim_enabled:
        if not (setting.enabled or sends_role):
            return []
        return [scim_authoritative(name)]
    if not setting.enabled:
        if not sends_role:
            return []
        return [
            Finding(
                code="roles.not_read",
                severity="info",
                message=f"The IdP sends a role in the attribute '{name}', which this workspace "
                "does not read: members keep the roles the app gives them.",
                where=f"attribute {name}",
                suggestion="Turn on roles from SAML sign-ins to give members that role.",
            )
        ]
    outcome = decide_role(setting, tenant, roles, attributes, None)
    findings = list(outcome.findings)
    if outcome.decision is not None:
        findings.append(
            Finding(
                code="roles.from_signin",
                severity="info",
                message=f"Sign-ins give members their role: this one gives {outcome.decision.role} "
                f"({outcome.decision.rule}).",
                where=f"attribute {name}",
            )
        )
    elif not values and not _groups(setting, attributes):
        wanted = f"'{name}'" + (
            f" nor '{setting.groups_attribute}'" if setting.groups_attribute else ""
        )
        findings.append(
            Finding(
                code="roles.not_sent",
                severity="warning",
                message=f"Roles come from sign-ins, but the IdP sends no {wanted} attribute: "
                "members keep the roles they have.",
                where=f"attribute {name}",
                suggestion=f"Add an attribute statement named '{setting.attribute}' holding the "
                "member's role in the IdP app.",
            )
        )
    return findings


def scim_authoritative(name: str) -> Finding:
    """The information that SCIM sets roles, so the IdP's role statement can go."""
    return Finding(
        code="roles.scim_authoritative",
        severity="info",
        message=_SCIM_AUTHORITATIVE,
        where=f"attribute {name}",
        suggestion="You can remove the default-role attribute statement from the IdP's SAML "
        "app: SCIM provisioning updates members' roles from now on.",
    )
