"""Typed views of members and groups for the host app: scim2-models ``User`` and ``Group``.

The domain keeps a member's profile as one canonical SCIM document
(:attr:`pbidentity.domain.Member.attributes`); this module gives the host app
the same profile as a validated, typed scim2-models resource, the one the SCIM
endpoint serves for that member::

    profile = member.profile  # a MemberProfile, validated once and cached
    profile.user_name, profile.name.given_name, profile.emails[0].value
    profile.enterprise.department, profile.enterprise.manager.value
    profile.role_extension.role  # the role the identity provider sent

:class:`MemberProfile` is the core ``User`` with the Enterprise User
extension and the app's role extension. The role extension's URN is the
host app's choice (:attr:`pbidentity.scim.ScimConfig.role_urn`), so its model
is built per URN by :func:`role_extension`; every per-URN class derives from
:class:`RoleExtension`, which is what type checkers see. The SCIM service
validates request bodies with the same classes (:func:`profile_model`), so
what it accepts is what a profile holds.

A group's typed view, :class:`GroupProfile`, holds its members too
(:meth:`pbidentity.members.Members.group`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any
from typing import ClassVar
from typing import TypeVar
from typing import cast

from pydantic import Field
from pydantic import ValidationError
from scim2_models import URN
from scim2_models import CaseExact
from scim2_models import Email
from scim2_models import EnterpriseUser
from scim2_models import Extension
from scim2_models import Group
from scim2_models import Mutability
from scim2_models import Resource
from scim2_models import Returned
from scim2_models import User

from pbidentity.domain import DEFAULT_ROLE_URN
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import InputError

if TYPE_CHECKING:
    from pbidentity.domain import Group as GroupValue
    from pbidentity.domain import Member
    from pbidentity.domain import MemberRef

__all__ = [
    "CORE_GROUP_URN",
    "CORE_USER_URN",
    "DEFAULT_ROLE_URN",
    "ENTERPRISE_URN",
    "EnterpriseUser",
    "GroupProfile",
    "MemberProfile",
    "RoleExtension",
    "group_document",
    "group_profile",
    "member_document",
    "member_profile",
    "profile_model",
    "role_extension",
]

CORE_USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

_Resource = TypeVar("_Resource", bound="Resource[Any]")

_ROLE_DESCRIPTION = (
    "The member's role in the app. Its canonical values are the roles the app defines; "
    "a missing or empty value leaves the role to the app's own policy."
)


class RoleExtension(Extension):
    """The app's role for a member, set by the identity provider."""

    __schema__: ClassVar[URN] = URN(DEFAULT_ROLE_URN)

    role: Annotated[str | None, Mutability.read_write, CaseExact.false, Returned.default] = Field(
        default=None, description=_ROLE_DESCRIPTION
    )


@functools.cache
def role_extension(urn: str = DEFAULT_ROLE_URN) -> type[RoleExtension]:
    """The role extension model whose schema is ``urn`` (Okta's Profile Editor namespace).

    Built once per URN and kept, so that ``User[EnterpriseUser | ext]`` stays
    the same class for the lifetime of the process. Every class is named
    ``RoleExtension`` (scim2-models names a resource's extension field after
    its class) and derives from :class:`RoleExtension`.

    :raises ConfigurationError: if ``urn`` is not a URN, or is one of the
        standard schema URNs.
    """
    try:
        checked = URN(urn)
    except ValueError as exc:
        raise ConfigurationError(f"the role extension URN {urn!r} is invalid: {exc}") from exc
    if urn.lower() in {CORE_USER_URN.lower(), CORE_GROUP_URN.lower(), ENTERPRISE_URN.lower()}:
        raise ConfigurationError(f"the role extension URN {urn!r} is a standard schema URN")
    if urn == DEFAULT_ROLE_URN:
        return RoleExtension
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": "RoleExtension",
        "__doc__": RoleExtension.__doc__,
        "__schema__": checked,
    }
    return cast("type[RoleExtension]", type("RoleExtension", (RoleExtension,), namespace))


class _LenientEmail(Email):
    """An email whose value is any string.

    scim2-models checks ``emails.value`` with email-validator, which refuses
    special-use domains such as ``corp.local``: the user principal names of
    many hybrid Active Directory tenants that Entra ID provisions. The IdP is
    the authority on its users' addresses; refusing them would fail the
    provisioning run, so they are stored as sent.
    """

    value: str | None = None


class MemberProfile(User[Any]):
    """A member's whole SCIM profile: core User, Enterprise User and the app's role extension.

    The core attributes are the scim2-models ``User`` fields (``user_name``,
    ``name``, ``emails``, ``active``...); the two extensions are reached
    through :attr:`enterprise` and :attr:`role_extension`. Email values are
    any string, as the identity provider sent them (see the SCIM service).
    """

    emails: list[_LenientEmail] | None = None  # type: ignore[assignment]

    @property
    def enterprise(self) -> EnterpriseUser | None:
        """The Enterprise User extension (department, manager, employeeNumber...), if sent."""
        # scim2-models names the extension field after the extension's class.
        return cast("EnterpriseUser | None", getattr(self, "EnterpriseUser", None))

    @property
    def role_extension(self) -> RoleExtension | None:
        """The app's role extension as the identity provider last sent it, if it did.

        The role the app uses is :attr:`pbidentity.domain.Member.role`,
        decided from this value, core ``roles`` or groups by the tenant's policy.
        """
        return cast("RoleExtension | None", getattr(self, "RoleExtension", None))


class GroupProfile(Group):
    """A group as SCIM serves it: ``display_name``, ``external_id`` and its ``members``.

    Each member is a ``GroupMember`` whose ``value`` is the member's id and
    ``display`` the name the app shows for it.
    """


@functools.cache
def profile_model(role_urn: str = DEFAULT_ROLE_URN) -> type[MemberProfile]:
    """The :class:`MemberProfile` class whose role extension has the URN ``role_urn``.

    The SCIM service validates User bodies with it too.
    """
    # mypy reads ``MemberProfile[...]`` as a type expression; scim2-models
    # builds the parameterised class at runtime from the union of extensions.
    model = MemberProfile.__class_getitem__(EnterpriseUser | role_extension(role_urn))
    return cast("type[MemberProfile]", model)


def _datetime(value: datetime) -> str:
    # The same text the SCIM endpoint renders (RFC 3339 in UTC with a "Z").
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _meta(resource_type: str, created: datetime, modified: datetime, version: int) -> Any:
    return {
        "resourceType": resource_type,
        "created": _datetime(created),
        "lastModified": _datetime(modified),
        "version": f'W/"{version}"',
    }


def member_document(member: Member, role_urn: str | None = None) -> dict[str, Any]:
    """A member as a SCIM User document: its attributes, its id, role extension and ``meta``.

    The body a SCIM GET answers for the member, less what needs a request to
    say (``meta.location`` and the ``$ref`` of its groups) and its groups.
    ``role_urn`` defaults to the member's own (:attr:`Member.role_urn`).
    """
    urn = member.role_urn if role_urn is None else role_urn
    attributes = member.attributes
    schemas = [CORE_USER_URN, ENTERPRISE_URN] if ENTERPRISE_URN in attributes else [CORE_USER_URN]
    document: dict[str, Any] = {"schemas": schemas, "id": member.id, **attributes}
    if member.role_attribute is not None:
        schemas.append(urn)
        document[urn] = {"role": member.role_attribute}
    document["meta"] = _meta("User", member.created, member.last_modified, member.version)
    return document


def member_profile(member: Member, role_urn: str | None = None) -> MemberProfile:
    """Validate a member's document (:func:`member_document`) into a :class:`MemberProfile`.

    :attr:`pbidentity.domain.Member.profile` calls this once per member value
    and keeps the result.

    :raises InputError: if the stored document is not a valid SCIM User
        (pbidentity validates every document before it stores it, so this
        means a document written around it).
    """
    urn = member.role_urn if role_urn is None else role_urn
    document = member_document(member, urn)
    return _validated(profile_model(urn), document, f"member {member.id}")


def group_document(group: GroupValue, members: Iterable[MemberRef] | None) -> dict[str, Any]:
    """A group as a SCIM Group document; ``members`` ``None`` leaves them out."""
    document: dict[str, Any] = {"schemas": [CORE_GROUP_URN], "id": group.id, **group.attributes}
    if members is not None:
        document["members"] = [_group_member(ref) for ref in members]
    document["meta"] = _meta("Group", group.created, group.last_modified, group.version)
    return document


def group_profile(group: GroupValue, members: Iterable[MemberRef] | None) -> GroupProfile:
    """Validate a group and its members into a :class:`GroupProfile`.

    :raises InputError: if the stored document is not a valid SCIM Group.
    """
    return _validated(GroupProfile, group_document(group, members), f"group {group.id}")


def _group_member(ref: MemberRef) -> Mapping[str, Any]:
    if ref.display is None:
        return {"value": ref.id, "type": "User"}
    return {"value": ref.id, "type": "User", "display": ref.display}


def _validated(model: type[_Resource], document: Any, what: str) -> _Resource:
    try:
        # Types and shapes only: the SCIM service checked mutability and
        # required attributes in the request's context when it stored the
        # document, and a response context's checks would cost four times more.
        return model.model_validate(document, scim_ctx=None)
    except ValidationError as error:
        raise InputError(f"{what} is not a valid SCIM resource: {error}") from error
