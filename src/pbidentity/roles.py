"""The role-mapping policy: which role a member gets from what the IdP sent.

Three sources can carry a role:

* the member's own value ("User personal" in Okta): the role extension
  attribute, else the core ``roles`` attribute (Entra app roles): the primary
  one first, then the most privileged one the app knows, including Entra's
  form where the role is a JSON document serialised into a string;
* the SCIM groups the member belongs to, each mapped to a role by the tenant
  (by group id or displayName) with a priority, as Okta's group priority
  works: the highest priority wins; equal priorities go to the more
  privileged role unless the tenant prefers the less privileged one.

The tenant's :class:`RolePolicy` picks among them by mode (``user-personal``,
``group-based`` or ``hybrid``, where a personal value overrides the groups).
When nothing decides, a new member gets the default role (the least
privileged unless configured) and a member that already had a role set in
the app keeps it: a missing or empty role never means admin and never raises
anyone (the help article's "everyone looks like admin" pitfall right after
provisioning is switched on). :func:`RolePolicy.decide` is pure and returns a
:class:`RoleDecision` that says which rule chose the role, for logs, the audit
trail and the admin pages.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Literal

import attrs
import orjson

from pbidentity.domain import MemberRef
from pbidentity.domain import RoleDecision
from pbidentity.domain import RoleSource
from pbidentity.domain import fold
from pbidentity.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_ROLES",
    "GroupMapping",
    "RoleDecision",
    "RoleMode",
    "RolePolicy",
    "RoleSet",
    "RoleSource",
]

#: The default roles, from most to least privileged.
DEFAULT_ROLES = ("admin", "maker", "contributor", "viewer")

RoleMode = Literal["user-personal", "group-based", "hybrid"]


@attrs.frozen
class RoleSet:
    """The host app's roles, from most to least privileged; names compare case-insensitively."""

    names: tuple[str, ...] = DEFAULT_ROLES
    _by_key: Mapping[str, str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not self.names:
            raise ConfigurationError("the app needs at least one role")
        by_key = {fold(name.strip()): name for name in self.names}
        if len(by_key) != len(self.names):
            raise ConfigurationError(f"role names must differ (ignoring case): {self.names!r}")
        object.__setattr__(self, "_by_key", by_key)

    @property
    def most_privileged(self) -> str:
        """The role that administers the tenant (``admin`` by default)."""
        return self.names[0]

    @property
    def least_privileged(self) -> str:
        """The role a member gets when nothing else decides (``viewer`` by default)."""
        return self.names[-1]

    def canonical(self, value: str) -> str | None:
        """The app's spelling of ``value`` (``"Admin"`` -> ``"admin"``), or ``None`` if unknown."""
        return self._by_key.get(fold(value.strip()))

    def rank(self, role: str) -> int:
        """0 for the most privileged role, growing towards the least privileged."""
        return self.names.index(role)


@attrs.frozen(kw_only=True)
class GroupMapping:
    """A pushed SCIM group that gives its members a role.

    The group is named by its SCIM ``id`` or, more readably and surviving a
    re-push, by its displayName (case-insensitive). A higher ``priority`` wins,
    as the order of Okta's group assignments does.
    """

    role: str
    group_id: str | None = None
    group_name: str | None = None
    priority: int = 0

    def __attrs_post_init__(self) -> None:
        if (self.group_id is None) == (self.group_name is None):
            raise ConfigurationError(
                f"a group mapping to {self.role!r} names its group by id or by name (exactly one)"
            )

    def matches(self, group: MemberRef) -> bool:
        """Whether the mapping is about that group (``display`` is the group's displayName)."""
        if self.group_id is not None:
            return group.id == self.group_id
        return group.display is not None and fold(group.display) == fold(str(self.group_name))

    @property
    def label(self) -> str:
        """How the mapping names its group, for messages."""
        return f"group id {self.group_id}" if self.group_id else f"group {self.group_name!r}"


@attrs.frozen(kw_only=True)
class RolePolicy:
    """A tenant's rules for deciding each member's role."""

    mode: RoleMode = "hybrid"
    mappings: tuple[GroupMapping, ...] = ()
    #: The role of a new member nothing decides for; ``None`` means the least privileged.
    default_role: str | None = None
    #: Equal group priorities go to the less privileged role instead of the more privileged.
    prefer_less_privileged: bool = False
    #: Refuse any change that would leave the tenant without an active admin.
    admin_guard: bool = False
    #: The mappings by group id and by folded group name, each in the order
    #: of ``mappings``: a group change decides the roles of up to thousands
    #: of members, each looked up against every mapping otherwise.
    _by_id: Mapping[str, tuple[GroupMapping, ...]] = attrs.field(
        init=False, repr=False, eq=False, hash=False
    )
    _by_name: Mapping[str, tuple[GroupMapping, ...]] = attrs.field(
        init=False, repr=False, eq=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        by_id: dict[str, tuple[GroupMapping, ...]] = {}
        by_name: dict[str, tuple[GroupMapping, ...]] = {}
        for mapping in self.mappings:
            if mapping.group_id is not None:
                by_id[mapping.group_id] = (*by_id.get(mapping.group_id, ()), mapping)
            else:
                name = fold(str(mapping.group_name))
                by_name[name] = (*by_name.get(name, ()), mapping)
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_by_name", by_name)

    def mappings_of(self, group: MemberRef) -> tuple[GroupMapping, ...]:
        """The mappings about that group, in the policy's order (as ``GroupMapping.matches``)."""
        by_id = self._by_id.get(group.id, ())
        if group.display is None or not self._by_name:
            return by_id
        by_name = self._by_name.get(fold(group.display), ())
        if not by_id or not by_name:
            return by_id or by_name
        return tuple(m for m in self.mappings if m in by_id or m in by_name)

    def check(self, roles: RoleSet) -> RolePolicy:
        """The policy with role names in the app's spelling; ``ConfigurationError`` if unknown."""

        def known(role: str, where: str) -> str:
            found = roles.canonical(role)
            if found is None:
                raise ConfigurationError(
                    f"{where}: {role!r} is not one of the app's roles ({', '.join(roles.names)})"
                )
            return found

        mappings = tuple(
            attrs.evolve(m, role=known(m.role, f"the mapping of {m.label}")) for m in self.mappings
        )
        default = None if self.default_role is None else known(self.default_role, "default role")
        return attrs.evolve(self, mappings=mappings, default_role=default)

    @property
    def uses_groups(self) -> bool:
        """Whether group memberships can change a decision (so they must be read)."""
        return self.mode != "user-personal" and bool(self.mappings)

    def maps_any(self, groups: Iterable[MemberRef]) -> bool:
        """Whether any of these groups is mapped (a change to them re-decides roles)."""
        return self.uses_groups and any(self.mappings_of(g) for g in groups)

    def decide(
        self,
        roles: RoleSet,
        *,
        attribute: str | None = None,
        core_roles: Sequence[Any] | None = None,
        groups: Sequence[MemberRef] = (),
        current: RoleDecision | None = None,
    ) -> RoleDecision:
        """Decide a member's role.

        ``attribute`` is the role extension value (already one of ``roles``,
        or ``None``); ``core_roles`` the member's core ``roles`` elements;
        ``groups`` its groups; ``current`` the decision it has now (``None``
        for a new member).
        """
        if self.mode != "group-based":
            personal = _personal(roles, attribute, core_roles)
            if personal is not None:
                return personal
        if self.mode != "user-personal":
            by_group = self._by_group(roles, groups)
            if by_group is not None:
                return by_group
        return self._fallback(roles, current)

    def _by_group(self, roles: RoleSet, groups: Sequence[MemberRef]) -> RoleDecision | None:
        best: tuple[int, int, GroupMapping, MemberRef] | None = None
        for group in groups:
            for mapping in self.mappings_of(group):
                role = roles.canonical(mapping.role)
                if role is None:
                    # A mapping to a role the app no longer has (its role
                    # set changed since the policy was saved) maps nothing.
                    continue
                rank = roles.rank(role)
                # Higher priority first; on a tie the more privileged role
                # (lower rank) unless the tenant prefers the less privileged.
                key = (mapping.priority, rank if self.prefer_less_privileged else -rank)
                if best is None or key > best[:2] or (key == best[:2] and group.id < best[3].id):
                    best = (*key, mapping, group)
        if best is None:
            return None
        mapping, group = best[2], best[3]
        role = roles.names[best[1] if self.prefer_less_privileged else -best[1]]
        return RoleDecision(
            role=role,
            source="group",
            rule=f"group {group.display or group.id!r} (priority {mapping.priority}) "
            f"maps to {role}",
        )

    def _fallback(self, roles: RoleSet, current: RoleDecision | None) -> RoleDecision:
        kept = roles.canonical(current.role) if current is not None else None
        if current is not None and kept is not None and current.source in ("app", "kept"):
            # The member had a role in the app before the IdP managed it and
            # the IdP says nothing: keep it, never raise or drop it silently.
            return RoleDecision(
                role=kept,
                source="kept",
                rule=f"no role from the identity provider; kept {kept}, "
                "the role the member had in the app",
            )
        default = (
            roles.canonical(self.default_role) if self.default_role else None
        ) or roles.least_privileged
        return RoleDecision(
            role=default,
            source="default",
            rule=f"no role from the identity provider; the default role {default}",
        )


def _personal(
    roles: RoleSet, attribute: str | None, core_roles: Sequence[Any] | None
) -> RoleDecision | None:
    if attribute is not None and attribute.strip():
        role = roles.canonical(attribute)
        if role is not None:
            return RoleDecision(role=role, source="attribute", rule=f"role attribute {role}")
    known: list[tuple[bool, str]] = []
    for element in _role_elements(core_roles or ()):
        value = element.get("value") if isinstance(element, Mapping) else element
        role = roles.canonical(value) if isinstance(value, str) else None
        if role is not None:
            primary = isinstance(element, Mapping) and element.get("primary") in (True, "True")
            known.append((primary, role))
    if not known:
        return None
    primaries = [role for primary, role in known if primary]
    if primaries:
        role = min(primaries, key=roles.rank)
        return RoleDecision(role=role, source="roles", rule=f"primary app role {role}")
    role = min((role for _, role in known), key=roles.rank)
    return RoleDecision(
        role=role, source="roles", rule=f"app role {role}, the most privileged of the member's"
    )


def _role_elements(values: Iterable[Any]) -> Iterable[Any]:
    """The elements of core ``roles``, unwrapping Entra's JSON-in-a-string forms."""
    for value in values:
        inner = value.get("value") if isinstance(value, Mapping) else value
        if isinstance(inner, str) and inner.lstrip()[:1] in ("{", "["):
            try:
                parsed = orjson.loads(inner)
            except orjson.JSONDecodeError:
                yield value
                continue
            parsed_list = parsed if isinstance(parsed, list) else [parsed]
            for element in parsed_list:
                if isinstance(element, Mapping) and isinstance(value, Mapping):
                    # The outer element's primary flag holds for what it wraps.
                    yield {"primary": value.get("primary"), **element}
                else:
                    yield element
        else:
            yield value
