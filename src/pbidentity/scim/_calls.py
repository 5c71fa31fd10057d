"""What every SCIM endpoint shares: the call, the two steps of a write, the request machinery.

:class:`_Endpoints` is the base of the groups of endpoints :class:`~pbidentity.scim.ScimService`
is made of (users, groups, listings): the service's configuration, and reading a
request's JSON body, validating it, bounding a PATCH and rendering a resource. The
functions below are the checks and answers the endpoints have in common.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import TypeVar

import attrs
import orjson
from pydantic import ValidationError
from scim2_models import Context
from scim2_models import InvalidSyntaxException
from scim2_models import InvalidValueException
from scim2_models import NotFoundException
from scim2_models import PayloadTooLargeException
from scim2_models import PreconditionFailedException
from scim2_models import UniquenessException

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._lifecycle import LifecycleWork
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.query import ENTERPRISE_URN
from pbidentity.roles import RoleSet
from pbidentity.scim import _schema
from pbidentity.scim._errors import SCIM_JSON
from pbidentity.scim._errors import UnsupportedMediaTypeException
from pbidentity.scim._limits import ScimLimits
from pbidentity.scim._limits import too_large
from pbidentity.scim._limits import too_many
from pbidentity.scim._member_operations import _as_list
from pbidentity.scim._member_operations import _split_member_operations
from pbidentity.scim._render import PATCH_OP_URN
from pbidentity.scim._render import KeyPath
from pbidentity.scim._render import etag
from pbidentity.scim._render import parse_attribute_list
from pbidentity.storage import Storage
from pbidentity.storage import Transaction

if TYPE_CHECKING:
    from pbidentity.scim._service import ScimConfig
    from pbidentity.scim._service import ScimService


_T = TypeVar("_T")


_JSON_TYPES = ("application/scim+json", "application/json")


@attrs.frozen
class _Call:
    """One authenticated SCIM call: the request, its tenant, and the open transaction.

    The transaction is read-only for reads and for a write's computation, and
    the write transaction for a write's commit step.
    """

    request: Request
    tenant: Tenant
    tx: Transaction
    target: str | None
    #: The lifecycle of this unit (a write's commit step only): role
    #: decisions, guard, events.
    lifecycle: LifecycleWork | None = None

    @property
    def life(self) -> LifecycleWork:
        assert self.lifecycle is not None  # noqa: S101 - commit steps always get one
        return self.lifecycle


_Handler = Callable[["ScimService", _Call], Response]


#: A committed write's response, rendered once its transaction has ended.
_Render = Callable[[], Response]


_P = TypeVar("_P")


@attrs.frozen
class _WriteHandler(Generic[_P]):
    """A write in two steps, so that computation never holds the write lock.

    ``prepare`` runs in a read-only unit: it reads the resource (and its
    version) and computes everything costly (parsing, validation, the PATCH,
    a membership difference) into a value. ``commit`` runs in the write
    transaction: it checks that the resource is still at the version read and
    writes the value, with the member lifecycle (role decisions, the admin
    guard, events). See ``ScimService._write``.
    """

    prepare: Callable[[ScimService, _Call], _P]
    commit: Callable[[ScimService, _Call, _P], _Render]


@attrs.frozen
class _Profile:
    """A new user's profile, checked."""

    attributes: dict[str, Any]
    role_attribute: str | None


@attrs.frozen
class _MemberChange:
    """A user's new profile, computed from the member as read at ``base.version``."""

    base: Member
    attributes: dict[str, Any]
    role_attribute: str | None


@attrs.frozen
class _NewGroup:
    """A new group's attributes and members, checked."""

    attributes: dict[str, Any]
    member_ids: list[str]


@attrs.frozen
class _GroupChange:
    """A group's change, computed from the group (and its members) as read at ``base.version``."""

    base: Group
    #: The new attributes; ``None`` leaves them as they are.
    attributes: dict[str, Any] | None
    #: Users to add: exactly those not members at ``base.version``, or, for
    #: plain adds, any (members already in the group stay as they are).
    add: list[str] = attrs.field(factory=list)
    remove: list[str] = attrs.field(factory=list)
    #: The change does not depend on the version read (plain member adds
    #: alone): it is written over the group's version at that time.
    rebase: bool = False


class _Endpoints:
    """What every group of endpoints shares: the service's configuration and request machinery.

    :class:`~pbidentity.scim.ScimService` sets these in its constructor.
    """

    storage: Storage
    config: ScimConfig
    roles: RoleSet
    clock: Clock
    new_id: IdFactory
    limits: ScimLimits
    users: _schema.ResourceSpec
    groups: _schema.ResourceSpec
    after_commit: Callable[[], object] | None
    _extension_urns: tuple[str, ...]

    def _search_body(self, call: _Call) -> Any:
        """The SearchRequest body of a POST .search, ``None`` for a GET list."""
        return self._json(call.request) if call.request.method.upper() == "POST" else None

    def _json(self, request: Request) -> Any:
        if request.body_truncated or len(request.body) > self.config.max_body_bytes:
            raise PayloadTooLargeException(
                detail=f"The request body is larger than {self.config.max_body_bytes} bytes."
            )
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type and content_type not in _JSON_TYPES:
            raise UnsupportedMediaTypeException(
                detail=f"Content-Type {content_type!r} is not supported; send "
                "application/scim+json or application/json."
            )
        if not request.body.strip():
            raise InvalidSyntaxException(detail="The request needs a JSON body.")
        try:
            document = orjson.loads(request.body)
        except orjson.JSONDecodeError as error:
            if "depth limit" in error.msg.lower() or "recursion" in error.msg.lower():
                # orjson stops at 1024 levels, before the service's own bound can.
                raise too_large(
                    "The JSON body",
                    _ORJSON_MAX_DEPTH,
                    "levels deep or more",
                    "json_depth",
                    self.limits.json_depth,
                ) from None
            raise InvalidSyntaxException(
                detail=f"The request body is not valid JSON: {error.msg} at line {error.lineno} "
                f"column {error.colno}."
            ) from None
        _check_json_depth(document, self.limits)
        if b"\\u0000" in request.body and _has_nul(document):
            raise InvalidValueException(detail=_NUL_DETAIL)
        return document

    def _validated(
        self,
        payload: Any,
        resource: _schema.ResourceSpec,
        context: Context,
        base_url: str,
        *,
        canonical: bool = False,
    ) -> dict[str, Any]:
        """Validate with scim2-models; ``canonical`` bodies were normalised already."""
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(
                detail=f"The body must be a JSON object describing a {resource.name}."
            )
        try:
            normalised = payload if canonical else resource.normalise(payload)
            _fill_manager_reference(normalised, base_url)
            model = resource.model.model_validate(normalised, scim_ctx=context)
            dumped: dict[str, Any] = model.model_dump(scim_ctx=context)
        except ValidationError as error:
            raise InvalidValueException(detail=_validation_detail(error, resource.name)) from None
        return dumped

    def _patch_operations(self, request: Request) -> list[Mapping[str, Any]]:
        body = self._json(request)
        if not isinstance(body, dict):
            raise InvalidSyntaxException(
                detail="A PATCH body must be a JSON object (a PatchOp message)."
            )
        operations = next((v for k, v in body.items() if k.lower() == "operations"), None)
        schemas = body.get("schemas")
        if schemas is not None and not isinstance(schemas, list):
            raise InvalidSyntaxException(
                detail=f"schemas must be a list containing {PATCH_OP_URN!r}."
            )
        if not isinstance(operations, list) or not operations:
            raise InvalidSyntaxException(
                detail="A PATCH body needs an 'Operations' list with at least one operation."
            )
        limits = self.limits
        for index, operation in enumerate(operations):
            if not isinstance(operation, dict):
                raise InvalidSyntaxException(detail=f"Operations[{index}] must be a JSON object.")
        weight = sum(_operation_weight(operation) for operation in operations)
        if weight > limits.patch_operations:
            counted = (
                " (each attribute of an object value counts as one)"
                if weight != len(operations)
                else ""
            )
            raise too_many(
                "The PATCH",
                weight,
                f"operations{counted}",
                "patch_operations",
                limits.patch_operations,
            )
        if _is_group_path(request.path):
            member_ops, _ = _split_member_operations(operations)
            named = sum(len(_as_list(op.get("value"))) for op in member_ops)
            if named > limits.group_members:
                raise too_many(
                    "The PATCH", named, "member values", "group_members", limits.group_members
                )
        return operations

    def _projection(self, request: Request) -> tuple[list[KeyPath], list[KeyPath]]:
        attributes = request.query_value("attributes")
        excluded = request.query_value("excludedAttributes")
        _check_attribute_names("attributes", attributes, self.limits)
        _check_attribute_names("excludedAttributes", excluded, self.limits)
        return (
            parse_attribute_list(attributes, self._extension_urns),
            parse_attribute_list(excluded, self._extension_urns),
        )

    def _resource_response(
        self, request: Request, doc: Mapping[str, Any], version: int, status: int = 200
    ) -> Response:
        headers = [("Content-Type", SCIM_JSON), ("ETag", etag(version))]
        if status == 201:
            headers.append(("Location", str(doc["meta"]["location"])))
        return Response(status=status, headers=tuple(headers), body=_dumps(doc))


#: PostgreSQL cannot store U+0000 in text, so no backend accepts it (the same answer everywhere).
_NUL_DETAIL = "The request contains a NUL character (U+0000), which no SCIM value may contain."


def _has_nul(value: Any) -> bool:
    """Whether a parsed JSON value has U+0000 in any string, key or value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


#: orjson refuses to parse a document nested deeper than this.
_ORJSON_MAX_DEPTH = 1024


def _shown(value: Any) -> str:
    """A client value for an error detail, cut short: the detail must stay small."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_json_depth(document: Any, limits: ScimLimits) -> None:
    """Refuse a body nested deeper than ``json_depth``; walks it level by level, not recursively."""
    level = [document] if isinstance(document, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limits.json_depth:
            raise too_large("The JSON body", depth, "levels deep", "json_depth", limits.json_depth)
        below: list[Any] = []
        for container in level:
            children = container.values() if isinstance(container, dict) else container
            below.extend(child for child in children if isinstance(child, dict | list))
        level = below


def _check_attribute_names(
    name: str, value: str | Sequence[str] | None, limits: ScimLimits
) -> None:
    """Refuse an ``attributes``/``excludedAttributes`` list longer than ``attribute_names``."""
    if value is None:
        return
    count = value.count(",") + 1 if isinstance(value, str) else len(value)
    if count > limits.attribute_names:
        raise too_many(name, count, "names", "attribute_names", limits.attribute_names)


def _operation_weight(operation: Mapping[str, Any]) -> int:
    """How many operations one entry of ``Operations`` amounts to.

    An object value (a path-less one, an extension block, a complex
    attribute) is applied attribute by attribute, so each key counts, and
    each key of an extension block inside it too.
    """
    value = next((v for k, v in operation.items() if str(k).lower() == "value"), None)
    if not isinstance(value, dict):
        return 1
    weight = 0
    for key, item in value.items():
        nested = isinstance(item, dict) and str(key)[:4].lower() == "urn:"
        weight += len(item) if nested else 1
    return max(1, weight)


def _is_group_path(path: str) -> bool:
    first = next((part for part in path.split("/") if part), "")
    return first.lower() == "groups"


def _asks_for_attributes(request: Request) -> bool:
    return (
        request.query_value("attributes") is not None
        or request.query_value("excludedAttributes") is not None
    )


def _found(value: _T | None, kind: str, resource_id: str) -> _T:
    if value is None:
        raise NotFoundException(detail=f"No {kind} with id {resource_id!r} in this workspace.")
    return value


def _etag_matches(header: str, version: int) -> bool:
    """Whether an If-Match / If-None-Match list names the version (weak or strong) or ``*``."""
    current = etag(version)
    return any(
        tag.strip() in ("*", current, current.removeprefix("W/")) for tag in header.split(",")
    )


def _check_if_match(request: Request, version: int, kind: str) -> None:
    header = request.header("if-match")
    if header is None or _etag_matches(header, version):
        return
    raise PreconditionFailedException(
        detail=f"The {kind} has changed: its version is {etag(version)}, the request expected "
        f"{header}. Read it again and retry."
    )


def _check_unchanged(version: int, read: int, kind: str, resource_id: str) -> None:
    """Refuse to write a change computed from version ``read`` over another version."""
    if version != read:
        raise VersionMismatchError(
            f"{kind} {resource_id!r} moved from version {read} to {version} while the change "
            "was computed"
        )


def _no_content() -> Response:
    return Response(status=204)


def _not_modified(request: Request, version: int) -> bool:
    header = request.header("if-none-match")
    return header is not None and _etag_matches(header, version)


def _uniqueness(error: ConflictError, kind: str) -> UniquenessException:
    return UniquenessException(
        detail=f"A {kind} with this {error.attribute} already exists in this workspace: {error}."
        if error.attribute
        else str(error)
    )


def _fill_manager_reference(document: dict[str, Any], base_url: str) -> None:
    """Give an enterprise ``manager`` its ``$ref`` when only the id was sent.

    Entra sets the manager by id alone; scim2-models requires ``$ref``, which
    the service can always derive from the id.
    """
    enterprise = document.get(ENTERPRISE_URN)
    manager = enterprise.get("manager") if isinstance(enterprise, dict) else None
    if isinstance(manager, dict) and manager.get("value") and not manager.get("$ref"):
        manager["$ref"] = f"{base_url}/Users/{manager['value']}"


def _validation_detail(error: ValidationError, kind: str) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(
            str(part) for part in item["loc"] if part not in ("function-after", "function-before")
        )
        problems.append(f"{where or kind}: {item['msg']}")
    return f"The {kind} is not valid: " + "; ".join(problems) + "."


def _dumps(document: Any) -> bytes:
    return orjson.dumps(document)


def _json_response(status: int, document: Any) -> Response:
    return Response(status=status, headers=(("Content-Type", SCIM_JSON),), body=_dumps(document))
