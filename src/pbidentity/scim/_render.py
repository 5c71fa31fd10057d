"""Turning members and groups into SCIM JSON, and trimming it to what the client asked for.

Rendering works on plain dicts and never validates: what is stored was
validated when it was written, so a GET costs a dict copy and a JSON dump,
not a pydantic round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import Any

from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.query import ENTERPRISE_URN
from pbidentity.scim._schema import CORE_GROUP_URN
from pbidentity.scim._schema import CORE_USER_URN

USER_URN = CORE_USER_URN
GROUP_URN = CORE_GROUP_URN
LIST_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

#: Attributes every representation keeps, whatever ``attributes`` asks for (RFC 7643 §3.1).
ALWAYS_RETURNED = frozenset({"id", "schemas"})

KeyPath = tuple[str, ...]


def format_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as IdPs and scim2-models expect."""
    # isoformat is several times faster than strftime, and this runs twice per resource.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def etag(version: int) -> str:
    """The weak ETag of a resource version; also its ``meta.version``."""
    return f'W/"{version}"'


def _meta(
    resource_type: str, location: str, created: datetime, modified: datetime, version: int
) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "created": format_datetime(created),
        "lastModified": format_datetime(modified),
        "location": location,
        "version": etag(version),
    }


def render_member(
    member: Member,
    base_url: str,
    role_urn: str,
    groups: Sequence[MemberRef] | None,
) -> dict[str, Any]:
    """The SCIM User of a member. ``groups`` ``None`` leaves the attribute out."""
    schemas = [USER_URN]
    if ENTERPRISE_URN in member.attributes:
        schemas.append(ENTERPRISE_URN)
    doc: dict[str, Any] = {"schemas": schemas, "id": member.id}
    doc.update(member.attributes)
    if member.role_attribute is not None:
        # The value the IdP sent, returned on every read: Okta compares it
        # with its own and pushes an update on every sync when it differs.
        # The role the app decided (member.role) may come from groups.
        schemas.append(role_urn)
        doc[role_urn] = {"role": member.role_attribute}
    if groups:
        doc["groups"] = [
            {
                "value": ref.id,
                "$ref": f"{base_url}/Groups/{ref.id}",
                "display": ref.display,
                "type": "direct",
            }
            for ref in groups
        ]
    doc["meta"] = _meta(
        "User",
        f"{base_url}/Users/{member.id}",
        member.created,
        member.last_modified,
        member.version,
    )
    return doc


def render_group(
    group: Group,
    base_url: str,
    members: Sequence[MemberRef] | None,
) -> dict[str, Any]:
    """The SCIM Group; ``members`` ``None`` leaves the attribute out (``excludedAttributes``)."""
    doc: dict[str, Any] = {"schemas": [GROUP_URN], "id": group.id}
    doc.update(group.attributes)
    if members is not None:
        # RFC 7643 §8.7.1 gives members value, $ref and type only; a display
        # name would have to be re-read from every user on every group read.
        doc["members"] = [
            {"value": ref.id, "$ref": f"{base_url}/Users/{ref.id}", "type": "User"}
            for ref in members
        ]
    doc["meta"] = _meta(
        "Group", f"{base_url}/Groups/{group.id}", group.created, group.last_modified, group.version
    )
    return doc


def parse_attribute_list(
    value: str | Sequence[str] | None, extension_urns: Iterable[str]
) -> list[KeyPath]:
    """Split an ``attributes``/``excludedAttributes`` value into key paths.

    ``name.givenName`` gives ``("name", "givenName")``; a URN-qualified
    ``urn:...:enterprise:2.0:User:manager.value`` gives ``(URN, "manager",
    "value")``; a bare extension URN gives ``(URN,)``; the core schema URN
    prefix is dropped. Case is kept: matching against the document is
    case-insensitive.
    """
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    urns = sorted({*extension_urns, USER_URN, GROUP_URN}, key=len, reverse=True)
    paths: list[KeyPath] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        prefix: KeyPath = ()
        lowered = item.lower()
        for urn in urns:
            if lowered == urn.lower():
                item, prefix = "", (urn,)
                break
            if lowered.startswith(urn.lower() + ":"):
                item = item[len(urn) + 1 :]
                prefix = () if urn in (USER_URN, GROUP_URN) else (urn,)
                break
        paths.append(prefix + tuple(part for part in item.split(".") if part))
    return [path for path in paths if path]


def _tree(paths: Sequence[KeyPath]) -> dict[str, Any]:
    """Key paths as a nested dict; ``None`` marks "the whole value"."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for depth, part in enumerate(path):
            low = part.lower()
            last = depth == len(path) - 1
            if last:
                node[low] = None
            else:
                child = node.get(low, {})
                if child is None:  # the whole attribute is already selected
                    break
                node[low] = child
                node = child
    return tree


def _include(value: Any, tree: dict[str, Any] | None) -> Any:
    if tree is None:
        return value
    if isinstance(value, list):
        return [_include(item, tree) for item in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        low = key.lower()
        if low in tree:
            out[key] = _include(item, tree[low])
    return out


def _exclude(value: Any, tree: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_exclude(item, tree) for item in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        low = key.lower()
        if low not in tree:
            out[key] = item
        elif tree[low] is not None:
            out[key] = _exclude(item, tree[low])
    return out


def project(
    doc: dict[str, Any], attributes: Sequence[KeyPath], excluded: Sequence[KeyPath]
) -> dict[str, Any]:
    """Apply ``attributes`` or ``excludedAttributes`` (RFC 7644 §3.9) to a rendered resource.

    With ``attributes`` only those (and ``id``, ``schemas``) are kept; with
    ``excludedAttributes`` those are dropped (never ``id`` or ``schemas``).
    Names match case-insensitively; unknown names are ignored, as the RFC
    allows. When both are given, ``attributes`` wins.
    """
    if attributes:
        tree = _tree(attributes)
        for name in ALWAYS_RETURNED:
            tree[name] = None
        projected: dict[str, Any] = _include(doc, tree)
        # An extension block that lost every attribute is dropped from
        # "schemas" too, so the document stays self-consistent.
        projected["schemas"] = [
            urn for urn in doc["schemas"] if urn in (USER_URN, GROUP_URN) or urn in projected
        ]
        return projected
    if excluded:
        tree = _tree([path for path in excluded if path[0].lower() not in ALWAYS_RETURNED])
        return dict(_exclude(doc, tree))
    return doc


def wants(attribute: str, attributes: Sequence[KeyPath], excluded: Sequence[KeyPath]) -> bool:
    """Whether a top-level attribute survives the projection (to skip loading it)."""
    low = attribute.lower()
    if attributes:
        return any(path[0].lower() == low for path in attributes)
    return not any(len(path) == 1 and path[0].lower() == low for path in excluded)
