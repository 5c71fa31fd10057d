"""What the SCIM service knows about its resources, and the discovery documents it publishes.

The scim2-models classes (``User``, ``EnterpriseUser``, ``Group`` and the
role extension built here) are the single source of truth: the light,
immutable :class:`AttributeSpec` tree is derived from their ``to_schema()``,
and the ``/Schemas``, ``/ResourceTypes`` and ``/ServiceProviderConfig``
documents are rendered from that tree. PATCH and payload normalisation read
the same tree, so an attribute's name, type and mutability are declared once.

This module must not do I/O, keep per-request state or validate resource
values: scim2-models validates documents in the service.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any
from typing import Literal
from typing import cast

import attrs
from scim2_models import Attribute
from scim2_models import EnterpriseUser
from scim2_models import Extension
from scim2_models import Group
from scim2_models import Resource
from scim2_models import ResourceType
from scim2_models import Schema
from scim2_models import SCIMException
from scim2_models import ServiceProviderConfig
from scim2_models import User

from pbidentity.domain import fold
from pbidentity.models import CORE_GROUP_URN
from pbidentity.models import CORE_USER_URN
from pbidentity.models import DEFAULT_ROLE_URN
from pbidentity.models import profile_model
from pbidentity.models import role_extension
from pbidentity.query import ENTERPRISE_URN
from pbidentity.scim._limits import ScimLimits
from pbidentity.scim._limits import too_large
from pbidentity.scim._limits import too_many

__all__ = [
    "CORE_GROUP_URN",
    "CORE_USER_URN",
    "DEFAULT_ROLE_URN",
    "ENTERPRISE_URN",
    "UNSET",
    "AttributeSpec",
    "AttributeType",
    "MutabilityKind",
    "Normalised",
    "PayloadError",
    "ResourceSpec",
    "ReturnedKind",
    "SchemaSpec",
    "UniquenessKind",
    "Unset",
    "canonical_value",
    "check_string",
    "element_limit",
    "group_resource",
    "lookup",
    "make_role_extension",
    "normalise_group_payload",
    "normalise_payload",
    "normalise_user_payload",
    "resource_types_document",
    "schemas_document",
    "service_provider_config",
    "user_resource",
]


_SCHEMA_URN = "urn:ietf:params:scim:schemas:core:2.0:Schema"
_RESOURCE_TYPE_URN = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
_SPC_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"

AttributeType = Literal[
    "string", "boolean", "decimal", "integer", "dateTime", "binary", "reference", "complex"
]
MutabilityKind = Literal["readOnly", "readWrite", "immutable", "writeOnly"]
ReturnedKind = Literal["always", "never", "default", "request"]
UniquenessKind = Literal["none", "server", "global"]


def make_role_extension(urn: str = DEFAULT_ROLE_URN) -> type[Extension]:
    """Build the scim2-models extension carrying the app's ``role`` attribute.

    The host app chooses the URN (Okta's Profile Editor namespace for the
    app); see :func:`pbidentity.models.role_extension`, which builds it once
    per URN.

    :raises ConfigurationError: if ``urn`` is not a URN, or is one of the
        standard schema URNs.
    """
    return role_extension(urn)


# Specs are shared by every request of the process: read-only views make sure
# no caller can change one after it is built. Two converters rather than one
# generic function, because the attrs mypy plugin cannot solve a generic one.
def _frozen_attributes(mapping: Mapping[str, AttributeSpec]) -> Mapping[str, AttributeSpec]:
    return MappingProxyType(dict(mapping))


def _frozen_schemas(mapping: Mapping[str, SchemaSpec]) -> Mapping[str, SchemaSpec]:
    return MappingProxyType(dict(mapping))


@attrs.frozen(kw_only=True)
class AttributeSpec:
    """One attribute (or sub-attribute) of a SCIM schema, as RFC 7643 §7 describes it.

    ``name`` is the canonical case; ``sub_attributes`` is keyed by the
    lower-cased name so that lookups ignore case as RFC 7643 §2.1 requires.
    """

    name: str
    type: AttributeType
    multi_valued: bool = False
    case_exact: bool = False
    mutability: MutabilityKind = "readWrite"
    returned: ReturnedKind = "default"
    uniqueness: UniquenessKind = "none"
    required: bool = False
    description: str | None = None
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: Mapping[str, AttributeSpec] = attrs.field(
        factory=dict, converter=_frozen_attributes
    )

    @property
    def is_complex(self) -> bool:
        """Whether the attribute holds sub-attributes."""
        return self.type == "complex"

    def sub(self, name: str) -> AttributeSpec | None:
        """The sub-attribute called ``name``, whatever its case."""
        return self.sub_attributes.get(name.lower())


@attrs.frozen(kw_only=True)
class SchemaSpec:
    """A schema (core or extension): its URN and its top-level attributes by lower-cased name."""

    urn: str
    name: str
    description: str
    attributes: Mapping[str, AttributeSpec] = attrs.field(converter=_frozen_attributes)

    def attribute(self, name: str) -> AttributeSpec | None:
        """The attribute called ``name``, whatever its case."""
        return self.attributes.get(name.lower())


@attrs.frozen(kw_only=True)
class ResourceSpec:
    """A resource type the service serves: its core schema, extensions and model.

    ``common`` holds the RFC 7643 §3.1 attributes every resource has (``id``,
    ``externalId``, ``meta``); they belong to no schema, so the discovery
    documents leave them out, but PATCH and normalisation must know them.
    ``model`` is the scim2-models class the service validates documents with.
    ``limits`` bound what normalisation and PATCH accept (element counts,
    string lengths, PATCH path filters); ``None`` checks none of them.
    """

    name: str
    endpoint: str
    description: str
    core: SchemaSpec
    extensions: Mapping[str, SchemaSpec] = attrs.field(converter=_frozen_schemas)
    model: type[Resource[Any]]
    common: Mapping[str, AttributeSpec] = attrs.field(
        factory=lambda: _COMMON, converter=_frozen_attributes
    )
    limits: ScimLimits | None = None
    #: Every schema with its lower-cased URN, longest URN first (see split_urn).
    _by_urn_length: tuple[tuple[str, SchemaSpec], ...] = attrs.field(init=False, repr=False)

    @_by_urn_length.default
    def _schemas_by_urn_length(self) -> tuple[tuple[str, SchemaSpec], ...]:
        schemas = sorted((self.core, *self.extensions.values()), key=lambda s: -len(s.urn))
        return tuple((schema.urn.lower(), schema) for schema in schemas)

    def schema(self, urn: str) -> SchemaSpec | None:
        """The core or extension schema whose URN is ``urn``, whatever its case."""
        if urn.lower() == self.core.urn.lower():
            return self.core
        return self.extensions.get(urn.lower())

    def extensions_urns(self) -> tuple[str, ...]:
        """The extension URNs, in canonical case."""
        return tuple(ext.urn for ext in self.extensions.values())

    def attribute(self, schema: SchemaSpec, name: str) -> AttributeSpec | None:
        """A top-level attribute of ``schema``; the core schema also answers the common ones."""
        found = schema.attribute(name)
        if found is None and schema is self.core:
            found = self.common.get(name.lower())
        return found

    def split_urn(self, text: str) -> tuple[SchemaSpec | None, str]:
        """Split a known schema URN off the front of an attribute path or body key.

        ``"urn:...:enterprise:2.0:User:manager.value"`` gives the enterprise
        schema and ``"manager.value"``; the bare URN gives the schema and
        ``""``; a text with no known URN gives ``None`` and the text. Matching
        is case-insensitive and prefers the longest URN, since one URN may
        prefix another.
        """
        lowered = text[:4].lower()
        if not any(urn.startswith(lowered) for urn, _ in self._by_urn_length):
            return None, text  # most keys ("userName"): not even the start of a URN
        lowered = text.lower()
        for urn, schema in self._by_urn_length:
            if lowered == urn:
                return schema, ""
            if lowered.startswith(urn + ":"):
                return schema, text[len(urn) + 1 :]
        return None, text

    def normalise(self, payload: Any) -> dict[str, Any]:
        """The canonical document of a POST/PUT body (see :func:`normalise_payload`)."""
        return normalise_payload(payload, self).document


def lookup(spec: ResourceSpec, urn: str | None, name: str) -> AttributeSpec | None:
    """Find an attribute by schema URN and name, both case-insensitive.

    ``urn`` ``None`` means the core schema (and the common attributes).
    ``name`` may be dotted (``name.givenName``) to reach a sub-attribute.
    Unknown URNs and names answer ``None``.
    """
    schema = spec.core if urn is None else spec.schema(urn)
    if schema is None:
        return None
    head, _, tail = name.partition(".")
    found = schema.attribute(head)
    if found is None and schema is spec.core:
        found = spec.common.get(head.lower())
    if found is None or not tail:
        return found
    return found.sub(tail)


def _spec_from_attribute(attribute: Attribute) -> AttributeSpec:
    """Convert one scim2-models schema attribute into the light spec tree."""
    assert attribute.name is not None  # noqa: S101 - scim2-models always names attributes
    assert attribute.type is not None  # noqa: S101
    subs = {
        sub.name.lower(): _spec_from_attribute(sub)
        for sub in attribute.sub_attributes or []
        if sub.name is not None
    }
    return AttributeSpec(
        name=attribute.name,
        type=cast("AttributeType", str(attribute.type.value)),
        multi_valued=bool(attribute.multi_valued),
        case_exact=bool(attribute.case_exact.value),
        mutability=cast("MutabilityKind", str(attribute.mutability.value)),
        returned=cast("ReturnedKind", str(attribute.returned.value)),
        uniqueness=cast("UniquenessKind", str(attribute.uniqueness.value)),
        required=bool(attribute.required.value),
        # scim2-models takes descriptions from docstrings: fold their line
        # breaks so /Schemas reads as one sentence per attribute.
        description=" ".join(attribute.description.split()) if attribute.description else None,
        canonical_values=tuple(attribute.canonical_values or ()),
        reference_types=tuple(attribute.reference_types or ()),
        sub_attributes=subs,
    )


def _spec_from_schema(schema: Schema, *, name: str, description: str) -> SchemaSpec:
    """Convert a scim2-models ``Schema``; ``name`` and ``description`` override its defaults.

    scim2-models names a schema after its Python class and falls back to that
    name for the description, which is not what an admin reading ``/Schemas``
    should see.
    """
    assert schema.id is not None  # noqa: S101 - every model here declares its URN
    attributes = {
        attribute.name.lower(): _spec_from_attribute(attribute)
        for attribute in schema.attributes or []
        if attribute.name is not None
    }
    return SchemaSpec(urn=str(schema.id), name=name, description=description, attributes=attributes)


# RFC 7643 §3.1: the common attributes are defined by the protocol, not by a
# schema, which is also why scim2-models leaves them out of ``to_schema()``.
_COMMON: Mapping[str, AttributeSpec] = MappingProxyType(
    {
        "id": AttributeSpec(
            name="id",
            type="string",
            case_exact=True,
            mutability="readOnly",
            returned="always",
            uniqueness="server",
            description="A unique identifier for the resource, issued by the service provider.",
        ),
        "externalid": AttributeSpec(
            name="externalId",
            type="string",
            case_exact=True,
            description="The identifier of the resource at the provisioning client.",
        ),
        "meta": AttributeSpec(
            name="meta",
            type="complex",
            mutability="readOnly",
            description="Resource metadata, maintained by the service provider.",
            sub_attributes={
                "resourcetype": AttributeSpec(
                    name="resourceType", type="string", case_exact=True, mutability="readOnly"
                ),
                "created": AttributeSpec(name="created", type="dateTime", mutability="readOnly"),
                "lastmodified": AttributeSpec(
                    name="lastModified", type="dateTime", mutability="readOnly"
                ),
                "location": AttributeSpec(
                    name="location",
                    type="reference",
                    case_exact=True,
                    mutability="readOnly",
                    reference_types=("uri",),
                ),
                "version": AttributeSpec(
                    name="version", type="string", case_exact=True, mutability="readOnly"
                ),
            },
        ),
    }
)


@functools.cache
def _user_core() -> SchemaSpec:
    return _spec_from_schema(User.to_schema(), name="User", description="User Account")


@functools.cache
def _enterprise() -> SchemaSpec:
    return _spec_from_schema(
        EnterpriseUser.to_schema(), name="EnterpriseUser", description="Enterprise User"
    )


@functools.cache
def _group_core() -> SchemaSpec:
    core = _spec_from_schema(Group.to_schema(), name="Group", description="Group")
    # A member's display name is the user's own (displayName, else userName),
    # computed on every read; a client-supplied one would go stale, so it is
    # published, and treated, as read-only.
    members = core.attributes["members"]
    display = attrs.evolve(members.sub_attributes["display"], mutability="readOnly")
    members = attrs.evolve(members, sub_attributes={**members.sub_attributes, "display": display})
    return attrs.evolve(core, attributes={**core.attributes, "members": members})


def user_resource(
    role_urn: str = DEFAULT_ROLE_URN,
    roles: Sequence[str] = (),
    *,
    limits: ScimLimits | None = None,
) -> ResourceSpec:
    """Describe the User resource: core schema, enterprise extension and the role extension.

    ``roles`` become the ``canonicalValues`` of the role attribute, which is
    what an admin sees as the enumerated list in Okta's Profile Editor.
    """
    extension = make_role_extension(role_urn)
    role_schema = _spec_from_schema(
        extension.to_schema(),
        name="AppRole",
        description="The member's role in the app",
    )
    role_attribute = attrs.evolve(role_schema.attributes["role"], canonical_values=tuple(roles))
    role_schema = attrs.evolve(role_schema, attributes={"role": role_attribute})
    enterprise = _enterprise()
    # The host app's typed profiles are validated by the same class.
    model = profile_model(role_urn)
    return ResourceSpec(
        name="User",
        endpoint="/Users",
        description="User Account",
        core=_user_core(),
        extensions={enterprise.urn.lower(): enterprise, role_schema.urn.lower(): role_schema},
        model=model,
        limits=limits,
    )


def group_resource(*, limits: ScimLimits | None = None) -> ResourceSpec:
    """Describe the Group resource (no extensions)."""
    return ResourceSpec(
        name="Group",
        endpoint="/Groups",
        description="Group",
        core=_group_core(),
        extensions={},
        model=Group,
        limits=limits,
    )


# ---- discovery documents (RFC 7643 §5-§7, RFC 7644 §4)


def _attribute_document(spec: AttributeSpec) -> dict[str, Any]:
    """Render one attribute definition, leaving out what is absent.

    Entra's validator refuses null values anywhere in ``/Schemas``, so an
    absent characteristic is omitted rather than rendered as ``null``.
    """
    document: dict[str, Any] = {
        "name": spec.name,
        "type": spec.type,
        "multiValued": spec.multi_valued,
    }
    if spec.description:
        document["description"] = spec.description
    document |= {
        "required": spec.required,
        "caseExact": spec.case_exact,
        "mutability": spec.mutability,
        "returned": spec.returned,
        "uniqueness": spec.uniqueness,
    }
    if spec.canonical_values:
        document["canonicalValues"] = list(spec.canonical_values)
    if spec.type == "reference" and spec.reference_types:
        document["referenceTypes"] = list(spec.reference_types)
    if spec.is_complex:
        document["subAttributes"] = [
            _attribute_document(sub) for sub in spec.sub_attributes.values()
        ]
    return document


def _schema_document(schema: SchemaSpec, base_url: str) -> dict[str, Any]:
    return {
        "schemas": [_SCHEMA_URN],
        "id": schema.urn,
        "name": schema.name,
        "description": schema.description,
        "attributes": [_attribute_document(a) for a in schema.attributes.values()],
        "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{schema.urn}"},
    }


@functools.cache
def _discovery_schemas() -> tuple[SchemaSpec, ...]:
    """The schemas of the discovery resources themselves (RFC 7643 §5-§7).

    RFC 7644 §4 has ``/Schemas`` describe every schema the service uses, and
    scim2-tester checks that these three are listed.
    """
    return (
        _spec_from_schema(
            ServiceProviderConfig.to_schema(),
            name="ServiceProviderConfig",
            description="Schema for representing the service provider's configuration",
        ),
        _spec_from_schema(
            ResourceType.to_schema(),
            name="ResourceType",
            description="Specifies the schema that describes a SCIM resource type",
        ),
        _spec_from_schema(
            Schema.to_schema(),
            name="Schema",
            description="Specifies the schema attributes of a SCIM resource",
        ),
    )


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def schemas_document(resources: Iterable[ResourceSpec], base_url: str) -> list[dict[str, Any]]:
    """Render every Schema resource for ``/Schemas``: the resources', then the discovery ones.

    ``base_url`` is the absolute URL of the SCIM mount point, used for
    ``meta.location``. A schema shared by several resources is listed once.
    """
    seen: dict[str, SchemaSpec] = {}
    for resource in resources:
        for schema in (resource.core, *resource.extensions.values()):
            seen.setdefault(schema.urn.lower(), schema)
    for schema in _discovery_schemas():
        seen.setdefault(schema.urn.lower(), schema)
    return [_schema_document(schema, _base(base_url)) for schema in seen.values()]


def resource_types_document(
    resources: Iterable[ResourceSpec], base_url: str
) -> list[dict[str, Any]]:
    """Render every ResourceType resource for ``/ResourceTypes`` (RFC 7643 §6).

    Extensions are declared optional: Entra and Okta may omit them.
    """
    base = _base(base_url)
    return [
        {
            "schemas": [_RESOURCE_TYPE_URN],
            "id": resource.name,
            "name": resource.name,
            "description": resource.description,
            "endpoint": resource.endpoint,
            "schema": resource.core.urn,
            "schemaExtensions": [
                {"schema": extension.urn, "required": False}
                for extension in resource.extensions.values()
            ],
            "meta": {
                "resourceType": "ResourceType",
                "location": f"{base}/ResourceTypes/{resource.name}",
            },
        }
        for resource in resources
    ]


def service_provider_config(
    base_url: str,
    *,
    max_results: int,
    max_payload: int,
    documentation_uri: str | None = None,
) -> dict[str, Any]:
    """Render ``/ServiceProviderConfig`` (RFC 7643 §5).

    PATCH, filtering, sorting and ETags are supported; bulk and password
    changes are not. ``max_payload`` is the body size cap in bytes, announced
    as the (unused) bulk ``maxPayloadSize`` because RFC 7643 §5 has no other
    place for it.
    """
    document: dict[str, Any] = {"schemas": [_SPC_URN]}
    if documentation_uri:
        document["documentationUri"] = documentation_uri
    document |= {
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": max_payload},
        "filter": {"supported": True, "maxResults": max_results},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        # RFC 9865: both paging methods; index when a request names neither
        # (what every IdP expects); keyset cursors never time out.
        "pagination": {
            "cursor": True,
            "index": True,
            "defaultPaginationMethod": "index",
            "defaultPageSize": max_results,
            "maxPageSize": max_results,
        },
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authentication scheme using the OAuth Bearer Token Standard",
                "specUri": "https://www.rfc-editor.org/info/rfc6750",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{_base(base_url)}/ServiceProviderConfig",
        },
    }
    return document


# ---- values in canonical shape, shared by body normalisation and PATCH


class PayloadError(SCIMException):
    """A request body (or a PATCH operation) that cannot be read as the resource.

    A scim2-models exception (status 400), so the service renders it with
    ``to_error()``; ``scim_type`` is one of RFC 7644 §3.12's keywords and
    ``detail`` tells the admin what to change in the IdP.
    """

    status = 400

    def __init__(self, scim_type: str, detail: str) -> None:
        super().__init__(detail=detail)
        self.scim_type = scim_type


class Unset(enum.Enum):
    """The marker for "no value": a JSON null or an empty string (RFC 7643 §2.5)."""

    UNSET = "unset"


UNSET = Unset.UNSET

_TRUE_FALSE = {"true": True, "false": False}


def _json_container(value: str) -> Any:
    """Parse a string holding a JSON object or array, else return it unchanged.

    Entra (without ``aadOptscim062020``) serialises app roles as a JSON
    document inside a string ``value``.
    """
    stripped = value.strip()
    if not stripped.startswith(("{", "[")):
        return value
    try:
        parsed = json.loads(stripped)
    except (ValueError, RecursionError):
        # Too deep to be a role document: left as the string it is, which
        # validation then refuses as a value of the wrong type.
        return value
    return parsed if isinstance(parsed, dict | list) else value


def canonical_value(
    spec: AttributeSpec,
    value: Any,
    where: str,
    on_unknown: Callable[[str], None],
    *,
    element: bool = False,
    keep_unset: bool = False,
    limits: ScimLimits | None = None,
) -> Any:
    """Bring a value for ``spec`` into canonical shape, or answer :data:`UNSET`.

    - names of sub-attributes take their canonical case; an unknown one is
      reported to ``on_unknown`` (with its dotted path) and left out;
      read-only sub-attributes are left out (RFC 7644 §3.5.1: ignored);
    - ``"true"``/``"false"`` strings for boolean attributes become booleans
      (Entra without ``aadOptscim062020``);
    - ``null`` and ``""`` mean unassigned, and so do ``[]`` and ``{}``;
    - a single object given for a multi-valued attribute becomes a list of
      one, and a string holding a JSON object/array for a complex attribute
      is parsed (Entra's roles);
    - a plain string for a single-valued complex attribute with a ``value``
      sub-attribute becomes ``{"value": ...}`` (Entra sends the enterprise
      ``manager`` as the manager's id).

    With ``keep_unset`` the sub-attributes of a single-valued complex value
    keep their :data:`UNSET` markers, so that a PATCH merge can remove them.
    Only shapes are checked; types are left to scim2-models. With ``limits``,
    strings and the number of elements of a multi-valued value are bounded.

    :raises PayloadError: ``invalidValue`` when the shape is wrong.
    :raises LimitExceeded: over one of ``limits``, before any element is read.
    """
    if value is None:
        return UNSET
    if isinstance(value, str):
        if limits is not None:
            check_string(value, where, limits)
        if spec.is_complex:
            value = _json_container(value)
    if spec.multi_valued and not element:
        items = value if isinstance(value, list) else [value]
        if limits is not None:
            limit, noun = element_limit(spec)
            allowed = getattr(limits, limit)
            if len(items) > allowed:
                raise too_many(where, len(items), noun, limit, allowed)
        result = []
        for index, item in enumerate(items):
            canonical = canonical_value(
                spec, item, f"{where}[{index}]", on_unknown, element=True, limits=limits
            )
            if canonical is not UNSET:
                result.append(canonical)
        return result or UNSET
    if spec.is_complex:
        if isinstance(value, str) and not element and spec.sub("value") is not None:
            value = {"value": value}
        if not isinstance(value, Mapping):
            raise PayloadError(
                "invalidValue",
                f"{where} must be an object with the sub-attributes "
                f"{', '.join(sub.name for sub in spec.sub_attributes.values())}; "
                f"got {_shown(value)}.",
            )
        complex_value: dict[str, Any] = {}
        for key, item in value.items():
            sub = spec.sub(str(key))
            if sub is None:
                on_unknown(f"{where}.{key}")
                continue
            if sub.mutability == "readOnly":
                continue
            canonical = canonical_value(sub, item, f"{where}.{sub.name}", on_unknown, limits=limits)
            if canonical is not UNSET or (keep_unset and not element):
                complex_value[sub.name] = canonical
        if not keep_unset or element:
            return complex_value or UNSET
        return complex_value
    if type(value) is not str and isinstance(value, Mapping | list):
        raise PayloadError(
            "invalidValue", f"{where} takes a single {spec.type} value; got {_shown(value)}."
        )
    if spec.type == "boolean" and isinstance(value, str):
        return _TRUE_FALSE.get(value.strip().lower(), value)
    if value == "" and spec.type in ("string", "reference", "binary", "dateTime"):
        return UNSET
    return value


#: More UTF-8 bytes than one character can become once folded (NFKC's
#: longest expansion, U+FDFA, is 18 characters of at most 3 bytes): a string
#: shorter than the limit divided by this cannot exceed it, folded or not.
_MOST_FOLDED_BYTES = 54


def check_string(value: str, where: str, limits: ScimLimits) -> None:
    """Refuse a string over ``string_length`` bytes of UTF-8, as sent or folded.

    Bytes, not characters, and the folded form too, because that is what the
    databases index (userName, externalId, every searchable value):
    PostgreSQL refuses an index entry over 2,704 bytes, and 1,000 CJK
    characters are 3,000.
    """
    allowed = limits.string_length
    if len(value) * _MOST_FOLDED_BYTES <= allowed:
        return
    size = max(
        len(value.encode("utf-8", "surrogatepass")),
        len(fold(value).encode("utf-8", "surrogatepass")),
    )
    if size > allowed:
        raise too_large(where, size, "bytes long in UTF-8", "string_length", allowed)


def element_limit(spec: AttributeSpec) -> tuple[str, str]:
    """The name of the limit on ``spec``'s elements in one request, and what they are called.

    A Group's ``members`` are counted against ``group_members`` (groups are
    large and built in chunks); every other multi-valued attribute against
    ``multi_valued_elements``.
    """
    if spec.name == "members":
        return "group_members", "values"
    return "multi_valued_elements", "elements"


def _shown(value: Any) -> str:
    """A short rendering of a client value for an error detail."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


@attrs.frozen(kw_only=True)
class Normalised:
    """A body in canonical shape, and what was left out of it.

    ``ignored`` lists the keys no schema of the resource knows (worth a log
    line: an IdP mapping that goes nowhere); ``dropped`` lists the read-only
    and write-only echoes (``id``, ``meta``, ``groups``, ``password``) that
    Okta sends back on every PUT and that are expected.
    """

    document: dict[str, Any]
    ignored: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


def normalise_payload(payload: Any, resource: ResourceSpec) -> Normalised:
    """Turn a POST/PUT body into the canonical document scim2-models validates.

    Attribute names (core, extension blocks by URN, sub-attributes) take their
    canonical case; URN-qualified and dotted keys are folded into their block
    or attribute; values go through :func:`canonical_value`; ``schemas`` is
    rebuilt from what the document holds, which replaces non-standard core
    URNs such as OneLogin's ``urn:scim:schemas:core:2.0`` and adds the URN of
    an extension block the IdP did not list (Entra, maybe Okta). Unknown keys
    and extension blocks are left out and reported, so that harmless extras
    never fail a provisioning run.

    :raises PayloadError: ``invalidSyntax`` if the body is not a JSON object,
        ``invalidValue`` if a value has the wrong shape.
    """
    if not isinstance(payload, Mapping):
        raise PayloadError(
            "invalidSyntax", f"The body must be a JSON object describing a {resource.name}."
        )
    normaliser = _Normaliser(resource)
    for key, value in payload.items():
        if not isinstance(key, str) or key.lower() == "schemas":
            continue
        schema, rest = resource.split_urn(key)
        if schema is None:
            schema = resource.core
        if rest == "":
            if value is None:
                continue  # an explicit null block says nothing
            if not isinstance(value, Mapping):
                raise PayloadError(
                    "invalidValue", f"{schema.urn} must be an object of that schema's attributes."
                )
            for inner_key, inner_value in value.items():
                normaliser.put(schema, str(inner_key), inner_value)
        else:
            normaliser.put(schema, rest, value)
    document = normaliser.document
    present = [urn for urn in resource.extensions_urns() if urn in document]
    return Normalised(
        document={"schemas": [resource.core.urn, *present], **document},
        ignored=tuple(normaliser.ignored),
        dropped=tuple(normaliser.dropped),
    )


@attrs.define
class _Normaliser:
    """The document being built from a body, and what was left out of it."""

    resource: ResourceSpec
    document: dict[str, Any] = attrs.Factory(dict)
    ignored: list[str] = attrs.Factory(list)
    dropped: list[str] = attrs.Factory(list)

    def put(self, schema: SchemaSpec, name: str, value: Any) -> None:
        """Put one attribute (maybe dotted, ``name.givenName``) of ``schema`` into the document."""
        resource = self.resource
        qualified = name if schema is resource.core else f"{schema.urn}:{name}"
        head, _, tail = name.partition(".")
        attribute = resource.attribute(schema, head)
        sub = attribute.sub(tail) if attribute is not None and tail else None
        if attribute is None or (tail and sub is None):
            self.ignored.append(qualified)
            return
        if attribute.mutability in ("readOnly", "writeOnly") or (
            sub is not None and sub.mutability == "readOnly"
        ):
            self.dropped.append(qualified)
            return
        if sub is not None and attribute.multi_valued:
            # "emails.value" as a body key has no element to go to.
            self.ignored.append(qualified)
            return
        document = self.document
        container = document if schema is resource.core else document.setdefault(schema.urn, {})
        if sub is not None:
            where = f"{attribute.name}.{sub.name}"
            canonical = canonical_value(
                sub, value, where, self.ignored.append, limits=resource.limits
            )
            existing = container.get(attribute.name)
            if canonical is not UNSET:
                target = existing if isinstance(existing, dict) else {}
                target[sub.name] = canonical
                container[attribute.name] = target
        else:
            canonical = canonical_value(
                attribute, value, attribute.name, self.ignored.append, limits=resource.limits
            )
            existing = container.get(attribute.name)
            if canonical is UNSET:
                container.pop(attribute.name, None)
            elif isinstance(existing, dict) and isinstance(canonical, dict):
                # "name" and "name.givenName" in one body: both apply.
                existing.update(canonical)
            else:
                container[attribute.name] = canonical
        if schema is not resource.core and not container:
            del document[schema.urn]


def normalise_user_payload(payload: Any, resource: ResourceSpec) -> Normalised:
    """:func:`normalise_payload` for a User body."""
    return normalise_payload(payload, resource)


def normalise_group_payload(payload: Any, resource: ResourceSpec) -> Normalised:
    """:func:`normalise_payload` for a Group body (``members`` is kept for the service to split)."""
    return normalise_payload(payload, resource)
