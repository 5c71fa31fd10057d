"""Domain values to table rows and back: members, groups, tenants, tokens, events, SAML."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
import orjson

from pbidentity.domain import ApiToken
from pbidentity.domain import Event
from pbidentity.domain import Group
from pbidentity.domain import IdentityProvider
from pbidentity.domain import Member
from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRequest
from pbidentity.domain import SamlRoles
from pbidentity.domain import Tenant
from pbidentity.domain import fold
from pbidentity.storage._evaluate import Scalar
from pbidentity.storage._evaluate import dump_document
from pbidentity.storage._evaluate import elements
from pbidentity.storage._evaluate import load_document
from pbidentity.storage._evaluate import reference_display
from pbidentity.storage._evaluate import scalar
from pbidentity.storage._evaluate import utc
from pbidentity.storage.sql._schema import _GROUP_FIELDS
from pbidentity.storage.sql._schema import _MEMBER_FIELDS
from pbidentity.storage.sql._schema import _VALUE_ATTRIBUTES
from pbidentity.storage.sql._schema import _VALUE_FIELDS
from pbidentity.storage.sql._schema import _VALUE_SUBS
from pbidentity.storage.sql._schema import CARRIED_USER_NAME_BYTES
from pbidentity.storage.sql._schema import _FieldColumn
from pbidentity.storage.sql._schema import groups
from pbidentity.storage.sql._schema import members


def _text_pair(name: str, value: Scalar) -> dict[str, Any]:
    return {name: value, f"{name}_folded": fold(value) if isinstance(value, str) else None}


def _field_values(
    specs: Iterable[_FieldColumn], attributes: Mapping[str, Any], role: str | None
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for spec in specs:
        if spec.field.key == "role":
            found: Any = role
        else:
            found = attributes
            for part in spec.path:
                # dict first: documents are plain dicts, and ABC checks are slow.
                found = found.get(part) if isinstance(found, dict | Mapping) else None
        if found is None:
            # Most of a profile's searchable fields are absent: skip the
            # conversion and the folding for them.
            row[spec.name] = None
            if spec.folded is not None:
                row[spec.folded] = None
            continue
        value = scalar(spec.field, found)
        row[spec.name] = value
        if spec.folded is not None:
            row[spec.folded] = fold(value) if isinstance(value, str) else None
    return row


def _carried_user_name(member: Member) -> str | None:
    """The userName an email row of ``member`` carries, folded; ``None`` if too long.

    As members.user_name_folded holds it: the members list pages an email
    search in that order from the values index alone. A userName too long to
    fit the index beside the address is left out (the search looks those up
    in their members' rows).
    """
    user_name = member.attributes.get("userName")
    if not isinstance(user_name, str):
        return None
    folded = fold(user_name)
    if len(folded.encode("utf-8", "surrogatepass")) > CARRIED_USER_NAME_BYTES:
        return None
    return folded


def _value_rows(member: Member) -> list[dict[str, Any]]:
    rows = []
    carried: str | None = None
    for attribute, subs in _VALUE_FIELDS.items():
        for position, element in enumerate(elements(member.attributes, attribute)):
            if attribute == "emails" and position == 0:
                carried = _carried_user_name(member)  # only for a member with emails
            row: dict[str, Any] = {
                "attribute": attribute,
                "position": position,
                "user_name_folded": carried if attribute == "emails" else None,
            }
            for sub in _VALUE_SUBS:
                field = subs.get(sub)
                row.update(
                    _text_pair(sub, None if field is None else scalar(field, element.get(sub)))
                )
            primary = subs.get("primary")
            row["primary"] = None if primary is None else scalar(primary, element.get("primary"))
            rows.append(row)
    return rows


def _digest(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _member_row(member: Member, values: list[dict[str, Any]]) -> dict[str, Any]:
    display = reference_display(member)
    return {
        "document": dump_document(member.attributes),
        "scim_managed": member.scim_managed,
        "version": member.version,
        "created": member.created,
        "last_modified": member.last_modified,
        "values_digest": _digest(values),
        **_text_pair("ref_display", display),
        "app_role": member.role,
        "role_source": member.role_source,
        "role_rule": member.role_rule,
        **_field_values(_MEMBER_FIELDS, member.attributes, member.role_attribute),
    }


#: The members columns a unique constraint covers.
_UNIQUE_MEMBER_COLUMNS = frozenset({"tenant_id", "id", "user_name_folded", "external_id"})


def _changed_columns(
    previous: Member, member: Member
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The columns of ``member`` that differ from ``previous``, and its new values rows.

    ``previous`` is the member as stored; the ``member_values`` rows are
    ``None`` when they did not change. Only the columns fed by a changed
    top-level attribute are computed: a link or a deactivation touches two or
    three of the dozens of field columns, and computing every one twice was
    most of the cost of a write.
    """
    before, after = previous.attributes, member.attributes
    # Compared as JSON, not with ==: True == 1 in Python, but not in a column.
    keys = (
        set()
        if before is after  # a role decided again, a version moved: the document is shared
        else {
            k
            for k in before.keys() | after.keys()
            if (old := before.get(k)) is not (new := after.get(k))
            and (old != new or _json(old) != _json(new))
        }
    )
    row: dict[str, Any] = {}
    if keys:
        row["document"] = dump_document(after)
    for name, old, new in (
        ("scim_managed", previous.scim_managed, member.scim_managed),
        ("app_role", previous.role, member.role),
        ("role_source", previous.role_source, member.role_source),
        ("role_rule", previous.role_rule, member.role_rule),
        ("version", previous.version, member.version),
        ("created", previous.created, member.created),
        ("last_modified", previous.last_modified, member.last_modified),
    ):
        if old != new:
            row[name] = new
    if keys & _DISPLAY_SOURCES:
        display = reference_display(member)
        if display != reference_display(previous):
            row.update(_text_pair("ref_display", display))
    role_changed = previous.role_attribute != member.role_attribute
    specs = (
        [
            spec
            for spec in _MEMBER_FIELDS
            if (spec.field.key == "role" and role_changed) or spec.path[0] in keys
        ]
        if keys or role_changed
        else []
    )
    if specs:
        row.update(_field_values(specs, after, member.role_attribute))
    values = None
    if keys.intersection(_VALUES_SOURCES):
        new_values = _value_rows(member)
        digest = _digest(new_values)
        if digest != _digest(_value_rows(previous)):
            row["values_digest"] = digest
            values = new_values
    return row, values


# The attributes a member's values rows are made of (emails carry the userName).
_VALUES_SOURCES = frozenset({*_VALUE_ATTRIBUTES, "userName"})

# The attributes a member's reference display is made of.
_DISPLAY_SOURCES = frozenset({"displayName", "name", "userName"})


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _group_row(group: Group) -> dict[str, Any]:
    return {
        "document": dump_document(group.attributes),
        "version": group.version,
        "created": group.created,
        "last_modified": group.last_modified,
        **_field_values(_GROUP_FIELDS, group.attributes, None),
    }


_MEMBER_COLUMNS = (
    members.c.id,
    members.c.document,
    members.c.role,
    members.c.app_role,
    members.c.role_source,
    members.c.role_rule,
    members.c.scim_managed,
    members.c.version,
    members.c.created,
    members.c.last_modified,
)
_GROUP_COLUMNS = (
    groups.c.id,
    groups.c.document,
    groups.c.version,
    groups.c.created,
    groups.c.last_modified,
)


def _member(tenant_id: str, row: Any) -> Member:
    return Member(
        tenant_id=tenant_id,
        id=row.id,
        attributes=load_document(row.document),
        role_attribute=row.role,
        role=row.app_role,
        role_source=row.role_source,
        role_rule=row.role_rule,
        scim_managed=row.scim_managed,
        version=row.version,
        created=row.created,
        last_modified=row.last_modified,
    )


def _group(tenant_id: str, row: Any) -> Group:
    return Group(
        tenant_id=tenant_id,
        id=row.id,
        attributes=load_document(row.document),
        version=row.version,
        created=row.created,
        last_modified=row.last_modified,
    )


def _tenant(row: Any) -> Tenant:
    return Tenant(
        id=row.id,
        slug=row.slug,
        name=row.name,
        scim_enabled=row.scim_enabled,
        created=row.created,
        version=row.version,
        settings=_settings(row.settings),
    )


# The parsed settings of the tenants read lately, by their stored text. Every
# SCIM request reads its tenant (twice for a write), and a policy that maps
# many groups is kilobytes of JSON: parsing it each time cost more than the
# statement. Sharing one document also lets TenantPolicy.of find its parsed
# policy by identity. Settings are never changed in place (a Tenant is
# frozen, and a new policy is a new document), so sharing is safe.
_SETTINGS: dict[str, dict[str, Any]] = {}
_SETTINGS_CACHE_SIZE = 256


def _settings(text: str) -> dict[str, Any]:
    """The tenant settings stored as ``text``, parsed once while they stay the same."""
    found = _SETTINGS.get(text)
    if found is None:
        found = load_document(text)
        if len(_SETTINGS) >= _SETTINGS_CACHE_SIZE:
            _SETTINGS.clear()
        _SETTINGS[text] = found
    return found


def _tenant_row(tenant: Tenant) -> dict[str, Any]:
    values = attrs.asdict(tenant, recurse=False)
    values["settings"] = dump_document(tenant.settings)
    return values


def _event(row: Any) -> Event:
    return Event(
        id=row.id,
        tenant_id=row.tenant_id,
        type=row.type,
        subject_id=row.subject_id,
        actor=row.actor,
        occurred=row.occurred,
        data=load_document(row.data),
        seq=row.seq,
        delivered=row.delivered,
    )


def _saml_row(connection: SamlConnection) -> dict[str, Any]:
    idp = connection.idp
    document = {
        "idp": {
            "entity_id": idp.entity_id,
            "sso_url": idp.sso_url,
            "sso_binding": idp.sso_binding,
            "certificates": list(idp.certificates),
            "nameid_formats": list(idp.nameid_formats),
            "attributes": list(idp.attributes),
            "valid_until": None
            if idp.valid_until is None
            else utc(idp.valid_until).isoformat(timespec="microseconds"),
            "cache_duration": idp.cache_duration,
        },
        "attribute_mapping": dict(connection.attribute_mapping),
        "allow_idp_initiated": connection.allow_idp_initiated,
        "unknown_members": connection.unknown_members,
        "roles": {
            "enabled": connection.roles.enabled,
            "attribute": connection.roles.attribute,
            "groups_attribute": connection.roles.groups_attribute,
        },
        "sign_requests": connection.sign_requests,
        "assertion_encryption": connection.assertion_encryption,
        "source": connection.source,
        "last_attempt": connection.last_attempt,
    }
    return {
        "id": connection.id,
        "tenant_id": connection.tenant_id,
        "state": connection.state,
        "idp_entity_id": idp.entity_id,
        "document": dump_document(document),
        "metadata_xml": connection.metadata_xml,
        "created": connection.created,
        "activated": connection.activated,
        "version": connection.version,
    }


def _saml_connection(row: Any) -> SamlConnection:
    document = load_document(row.document)
    idp = document["idp"]
    return SamlConnection(
        id=row.id,
        tenant_id=row.tenant_id,
        state=row.state,
        idp=IdentityProvider(
            entity_id=idp["entity_id"],
            sso_url=idp["sso_url"],
            sso_binding=idp["sso_binding"],
            certificates=tuple(idp["certificates"]),
            nameid_formats=tuple(idp["nameid_formats"]),
            attributes=tuple(idp["attributes"]),
            valid_until=None
            if idp["valid_until"] is None
            else datetime.fromisoformat(idp["valid_until"]),
            cache_duration=idp["cache_duration"],
        ),
        attribute_mapping=document["attribute_mapping"],
        allow_idp_initiated=document["allow_idp_initiated"],
        unknown_members=document["unknown_members"],
        # Connections saved before roles came from sign-ins have none: off.
        roles=SamlRoles(**document["roles"]) if "roles" in document else SamlRoles(),
        # Connections saved before these options existed have them off.
        sign_requests=document.get("sign_requests", False),
        assertion_encryption=document.get("assertion_encryption", "off"),
        source=document["source"],
        metadata_xml=row.metadata_xml,
        created=row.created,
        activated=row.activated,
        last_attempt=document["last_attempt"],
        version=row.version,
    )


def _saml_request(row: Any) -> SamlRequest:
    return SamlRequest(
        id=row.id,
        tenant_id=row.tenant_id,
        connection_id=row.connection_id,
        purpose=row.purpose,
        relay_state=row.relay_state,
        created=row.created,
        expires=row.expires,
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        digest=row.digest,
        created=row.created,
        last_used=row.last_used,
        revoked=row.revoked,
    )
