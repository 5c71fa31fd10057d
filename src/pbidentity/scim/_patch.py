"""SCIM PATCH (RFC 7644 §3.5.2) applied to a canonical SCIM document.

A canonical document is a JSON dict keyed by canonical-case attribute names,
extension attributes nested under their schema URN. :func:`apply_patch` takes
one, applies every operation to a copy and returns the copy: all operations or
none, and the input is never touched.

What real identity providers send is accepted (docs/explanation/behaviour.md): any case
for ``op`` and names, path-less values whose keys are dotted or URN-qualified
paths (Entra's ``aadOptscim062020``, Okta's deactivation), filtered paths that
match nothing (created, as Entra expects), repeated adds and removes
(idempotent, JumpCloud and Okta), string booleans, empty strings, and roles as
JSON inside a string (Entra).

The bounds of the resource's :class:`~pbidentity.scim._limits.ScimLimits`
that only the PATCH engine can see are checked here, before the work they
bound: the elements of a value, the terms of all path filters together (one
budget per request), and the elements each multi-valued attribute holds after
each operation, so that many small PATCHes cannot grow a profile that every
later request pays for. (The service counts the operations before any of
this.)

This module must not validate value types (scim2-models does, in the service,
on the result), know about Group ``members`` (the service splits those
operations off and turns them into memberships), nor do any I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import attrs

from pbidentity.domain import fold
from pbidentity.scim._filter import FilterError
from pbidentity.scim._filter import PathError
from pbidentity.scim._filter import RawAnd
from pbidentity.scim._filter import RawComparison
from pbidentity.scim._filter import RawFilter
from pbidentity.scim._filter import RawNot
from pbidentity.scim._filter import RawOr
from pbidentity.scim._filter import RawValuePath
from pbidentity.scim._filter import parse_path
from pbidentity.scim._filter import raw_matches
from pbidentity.scim._limits import LimitExceeded
from pbidentity.scim._limits import too_many
from pbidentity.scim._schema import UNSET
from pbidentity.scim._schema import AttributeSpec
from pbidentity.scim._schema import PayloadError
from pbidentity.scim._schema import ResourceSpec
from pbidentity.scim._schema import SchemaSpec
from pbidentity.scim._schema import canonical_value

__all__ = ["PatchError", "apply_patch"]

_OPS = frozenset(("add", "replace", "remove"))

# Okta's group rename sends the group's own ``id`` inside the value, and
# clients that PATCH what they read may echo ``meta`` and ``schemas``: these
# keys of a path-less value are ignored rather than refused as read-only.
_IGNORED_IN_PATHLESS_VALUE = frozenset(("id", "meta", "schemas"))


class PatchError(PayloadError):
    """A PATCH request that cannot be applied; nothing of it was applied.

    ``scim_type`` is ``invalidPath``, ``noTarget``, ``invalidValue``,
    ``mutability`` or ``invalidSyntax``; ``detail`` names the operation (by
    its index in ``Operations``), its path and what is wrong, for the admin.
    """

    def __init__(
        self, scim_type: str, detail: str, *, index: int | None = None, path: str | None = None
    ) -> None:
        super().__init__(scim_type, detail)
        self.index = index
        self.path = path


class _Failure(Exception):
    """An error found deep in one operation, before its index and path are known."""

    def __init__(self, scim_type: str, detail: str) -> None:
        super().__init__(detail)
        self.scim_type = scim_type
        self.detail = detail


@attrs.frozen
class _Target:
    """Where one operation applies, resolved against the resource's schemas.

    ``attribute`` ``None`` means the whole extension block of ``schema``.
    """

    schema: SchemaSpec
    attribute: AttributeSpec | None
    sub: AttributeSpec | None = None
    value_filter: RawFilter | None = None


def apply_patch(
    document: Mapping[str, Any],
    operations: Sequence[Mapping[str, Any]],
    resource: ResourceSpec,
) -> dict[str, Any]:
    """Apply PATCH ``operations`` to a canonical ``document`` of ``resource``; return a new dict.

    Values are the parsed JSON of the request, hence ``Any``.

    :raises PatchError: on the first operation that cannot be applied; the
        input is untouched and no partial result exists.
    """
    result: dict[str, Any] = _copy(document)
    budget = _Budget()
    for index, operation in enumerate(operations):
        _Operation.read(index, operation).apply(result, resource, budget)
    return result


@attrs.define
class _Budget:
    """What the operations of one request have spent so far of the shared limits."""

    #: Comparisons in the path filters read so far (``ScimLimits.filter_terms``).
    terms: int = 0


@attrs.frozen
class _Operation:
    """One entry of ``Operations``, its keys read case-insensitively."""

    index: int
    op: str
    path: str | None
    has_value: bool
    value: Any

    @classmethod
    def read(cls, index: int, operation: Any) -> _Operation:
        if not isinstance(operation, Mapping):
            raise PatchError(
                "invalidSyntax",
                f"Operations[{index}] must be an object with op, path and value.",
                index=index,
            )
        keys = {str(key).lower(): key for key in operation}
        op = operation.get(keys.get("op", "op"))
        if not isinstance(op, str) or op.strip().lower() not in _OPS:
            raise PatchError(
                "invalidSyntax",
                f"Operations[{index}]: op is {op!r}; it must be add, replace or remove.",
                index=index,
            )
        path = operation.get(keys.get("path", "path"))
        if path is not None and not isinstance(path, str):
            raise PatchError(
                "invalidPath",
                f"Operations[{index}]: path must be a string, not {path!r}.",
                index=index,
            )
        if isinstance(path, str):
            # An empty path is sent for "no path" by some clients.
            path = path.strip() or None
        has_value = "value" in keys
        return cls(
            index=index,
            op=op.strip().lower(),
            path=path,
            has_value=has_value,
            value=operation.get(keys["value"]) if has_value else None,
        )

    def where(self) -> str:
        """How the detail of an error names this operation."""
        path = f" {self.path}" if self.path is not None else " (no path)"
        return f"Operations[{self.index}] ({self.op}{path})"

    def fail(self, scim_type: str, detail: str) -> PatchError:
        return PatchError(scim_type, f"{self.where()}: {detail}", index=self.index, path=self.path)

    def apply(self, document: dict[str, Any], resource: ResourceSpec, budget: _Budget) -> None:
        if self.op != "remove" and not self.has_value:
            raise self.fail("invalidValue", f"{self.op} needs a value.")
        try:
            if self.path is None:
                self._apply_pathless(document, resource, budget)
            else:
                _Apply(document, resource, self.op, budget).run(
                    self.path, self.value, self.has_value
                )
        except _Failure as failure:
            raise self.fail(failure.scim_type, failure.detail) from None
        except LimitExceeded as error:
            # Still a limit's error (its scimType and the limit's name), told
            # with the operation that went over it.
            raise LimitExceeded(error.scim_type, f"{self.where()}: {error.detail}") from None
        except PayloadError as error:
            raise self.fail(error.scim_type, error.detail) from None

    def _apply_pathless(
        self, document: dict[str, Any], resource: ResourceSpec, budget: _Budget
    ) -> None:
        # RFC 7644 §3.5.2.2: remove without a path has nothing to target.
        if self.op == "remove":
            raise _Failure("noTarget", "remove needs a path naming what to remove.")
        if not isinstance(self.value, Mapping):
            raise _Failure(
                "invalidValue",
                'without a path, value must be an object of attributes (e.g. {"active": false}).',
            )
        applier = _Apply(document, resource, self.op, budget)
        # RFC 7644 §3.5.2.1/§3.5.2.3: each attribute of the value is added or
        # replaced as if it had been the path; keys may be dotted or
        # URN-qualified paths (Entra), or an extension URN holding an object.
        for key, item in self.value.items():
            name = str(key)
            if name.lower() in _IGNORED_IN_PATHLESS_VALUE:
                continue
            applier.run(name, item, has_value=True)


@attrs.define
class _Apply:
    """Applies one verb at one path of one document (the document is changed in place)."""

    document: dict[str, Any]
    resource: ResourceSpec
    op: str
    budget: _Budget = attrs.Factory(_Budget)

    # -- resolving -------------------------------------------------------------

    def resolve(self, path: str) -> _Target:
        resource = self.resource
        schema, rest = resource.split_urn(path)
        if schema is not None and rest == "":
            if schema is resource.core:
                raise _Failure("invalidPath", f"{path} names the whole resource, not an attribute.")
            return _Target(schema, None)
        try:
            parsed = parse_path(path, resource.limits, terms_before=self.budget.terms)
        except (PathError, FilterError) as error:
            raise _Failure("invalidPath", f"the path is not valid: {error.detail}") from None
        self.budget.terms += parsed.terms
        if parsed.urn is None:
            schema = resource.core
        else:
            found = resource.schema(parsed.urn)
            if found is None:
                known = ", ".join(resource.extensions_urns()) or "none"
                raise _Failure(
                    "invalidPath",
                    f"{parsed.urn} is not a schema of {resource.name} (extensions: {known}).",
                )
            schema = found
        attribute = resource.attribute(schema, parsed.attribute)
        if attribute is None:
            raise _Failure(
                "invalidPath", f"{parsed.attribute!r} is not an attribute of {schema.name}."
            )
        sub = None
        if parsed.sub_attribute is not None:
            sub = attribute.sub(parsed.sub_attribute)
            if sub is None:
                raise _Failure(
                    "invalidPath",
                    f"{parsed.sub_attribute!r} is not a sub-attribute of {attribute.name}.",
                )
        if parsed.value_filter is not None and not (
            attribute.multi_valued and attribute.is_complex
        ):
            raise _Failure(
                "invalidPath",
                f"a [filter] only applies to multi-valued complex attributes; "
                f"{attribute.name} is not one.",
            )
        if parsed.value_filter is not None:
            _check_filter_names(parsed.value_filter, attribute)
        return _Target(schema, attribute, sub, parsed.value_filter)

    # -- running ------------------------------------------------------------------

    def run(self, path: str, value: Any, has_value: bool) -> None:
        target = self.resolve(path)
        if target.attribute is None:
            self._extension_block(target.schema, value, has_value)
            return
        attribute, sub = target.attribute, target.sub
        if attribute.mutability == "readOnly" or (sub is not None and sub.mutability == "readOnly"):
            name = attribute.name if sub is None else f"{attribute.name}.{sub.name}"
            raise _Failure(
                "mutability",
                f"{name} is read-only: the service maintains it, clients cannot change it.",
            )
        if attribute.mutability == "writeOnly":
            # The password Okta may send is never stored (pbidentity does not
            # authenticate with it), so there is nothing to change.
            return
        container = self._container(target.schema, create=self.op != "remove")
        if container is None:
            return  # removing from an extension block that does not exist
        before = _count(container.get(attribute.name))
        if self.op == "remove":
            self._remove(container, target, value if has_value else None)
        else:
            self._write(container, target, value)
        self._tidy(target.schema, container, attribute)
        self._check_elements(container, attribute, before)

    def _canonical(self, spec: AttributeSpec, value: Any, where: str, **options: bool) -> Any:
        """``value`` in canonical shape, within the resource's limits (see ``canonical_value``)."""
        return canonical_value(spec, value, where, _unknown, limits=self.resource.limits, **options)

    def _check_elements(
        self, container: dict[str, Any], attribute: AttributeSpec, before: int
    ) -> None:
        """Refuse an operation that leaves a multi-valued attribute with too many elements.

        An operation that does not add to an attribute already over the
        limit (stored before the limit was lowered) is let through: removing
        from it must stay possible. A Group's members are memberships, not
        part of its profile: only how many one request names is bounded.
        """
        limits = self.resource.limits
        if limits is None or not attribute.multi_valued or attribute.name == "members":
            return
        after = _count(container.get(attribute.name))
        allowed = limits.multi_valued_elements
        if after > allowed and after > before:
            raise too_many(
                f"The attribute {attribute.name} after this operation",
                after,
                "elements",
                "multi_valued_elements",
                allowed,
            )

    def _extension_block(self, schema: SchemaSpec, value: Any, has_value: bool) -> None:
        if self.op == "remove":
            self.document.pop(schema.urn, None)
            self._forget_schema(schema)
            return
        if not isinstance(value, Mapping):
            raise _Failure(
                "invalidValue", f"a value for {schema.urn} must be an object of its attributes."
            )
        for key, item in value.items():
            if str(key).lower() == "schemas":
                continue  # an extension object echoed with its own "schemas" (scim2-tester)
            self.run(f"{schema.urn}:{key}", item, has_value)

    def _container(self, schema: SchemaSpec, *, create: bool) -> dict[str, Any] | None:
        if schema is self.resource.core:
            return self.document
        block = self.document.get(schema.urn)
        if isinstance(block, dict):
            return block
        if not create:
            return None
        block = self.document[schema.urn] = {}
        schemas = self.document.get("schemas")
        if isinstance(schemas, list) and schema.urn not in schemas:
            schemas.append(schema.urn)
        return block

    def _forget_schema(self, schema: SchemaSpec) -> None:
        schemas = self.document.get("schemas")
        if isinstance(schemas, list) and schema.urn in schemas:
            schemas.remove(schema.urn)

    def _tidy(
        self, schema: SchemaSpec, container: dict[str, Any], attribute: AttributeSpec
    ) -> None:
        # RFC 7643 §2.5: null, [] and {} are all "unassigned"; the canonical
        # document simply has no key for them.
        if container.get(attribute.name) in ([], {}):
            del container[attribute.name]
        if container is not self.document and not container:
            self.document.pop(schema.urn, None)
            self._forget_schema(schema)

    # -- add and replace ---------------------------------------------------------------

    def _write(self, container: dict[str, Any], target: _Target, value: Any) -> None:
        attribute, sub = target.attribute, target.sub
        assert attribute is not None  # noqa: S101 - extension blocks are handled by the caller
        if target.value_filter is not None:
            self._write_filtered(container, target, value)
        elif sub is not None:
            where = f"{attribute.name}.{sub.name}"
            canonical = self._canonical(sub, value, where)
            if attribute.multi_valued:
                elements = _elements(container, attribute)
                if not elements:
                    if canonical is not UNSET:
                        container[attribute.name] = [{sub.name: canonical}]
                    return
                for element in elements:
                    _assign(element, sub, canonical, where)
                _set_list(container, attribute, [e for e in elements if e])
                self._primary(container, attribute, elements if sub.name == "primary" else [])
            else:
                holder = container.get(attribute.name)
                if not isinstance(holder, dict):
                    holder = {}
                _assign(holder, sub, canonical, where)
                _assign(container, attribute, holder or UNSET, attribute.name)
        elif attribute.multi_valued:
            self._write_multi(container, attribute, value)
        elif attribute.is_complex:
            canonical = self._canonical(attribute, value, attribute.name, keep_unset=True)
            if canonical is UNSET:
                _assign(container, attribute, UNSET, attribute.name)
                return
            # RFC 7644 §3.5.2.1 and §3.5.2.3: the sub-attributes given replace
            # (or add to) the current ones; the others are left unchanged.
            holder = container.get(attribute.name)
            merged = dict(holder) if isinstance(holder, dict) else {}
            for name, item in canonical.items():
                sub_spec = attribute.sub(name)
                assert sub_spec is not None  # noqa: S101 - canonical_value keeps known names only
                _assign(merged, sub_spec, item, f"{attribute.name}.{name}")
            _assign(container, attribute, merged or UNSET, attribute.name)
        else:
            _assign(
                container,
                attribute,
                self._canonical(attribute, value, attribute.name),
                attribute.name,
            )

    def _write_multi(self, container: dict[str, Any], attribute: AttributeSpec, value: Any) -> None:
        canonical = self._canonical(attribute, value, attribute.name)
        values: list[Any] = [] if canonical is UNSET else canonical
        if self.op == "replace":
            # RFC 7644 §3.5.2.3: no filter, so the whole list is replaced.
            _assign(container, attribute, values or UNSET, attribute.name)
            self._primary(container, attribute, values)
            return
        # RFC 7644 §3.5.2.1: add appends; an element already there is not
        # added twice, so that repeated adds (JumpCloud, Okta) are harmless.
        elements = _elements(container, attribute)
        written = []
        for item in values:
            existing = next((element for element in elements if element == item), None)
            if existing is None:
                elements.append(item)
                written.append(item)
            else:
                written.append(existing)
        if elements:
            container[attribute.name] = elements
        self._primary(container, attribute, written)

    def _write_filtered(self, container: dict[str, Any], target: _Target, value: Any) -> None:
        attribute, sub, value_filter = target.attribute, target.sub, target.value_filter
        assert attribute is not None  # noqa: S101
        assert value_filter is not None  # noqa: S101
        elements = _elements(container, attribute)
        matched = [e for e in elements if _matches(value_filter, e, attribute)]
        if sub is not None:
            where = f"{attribute.name}[...].{sub.name}"
            canonical = self._canonical(sub, value, where)
            replacement: dict[str, Any] | None = None
        else:
            where = f"{attribute.name}[...]"
            canonical = self._canonical(attribute, value, where, element=True)
            replacement = {} if canonical is UNSET else canonical
        if not matched:
            # Entra sends emails[type eq "work"].value for a user with no work
            # email yet: build the element from the filter's eq tests.
            seed = _element_from_filter(value_filter, attribute)
            if seed is None:
                raise _Failure(
                    "noTarget",
                    f"no element of {attribute.name} matches the filter, and the filter is "
                    "not made of eq tests only, so no element can be created from it.",
                )
            if canonical is UNSET:
                return
            created = (
                {**seed, sub.name: canonical}
                if sub is not None
                else {**seed, **(replacement or {})}
            )
            elements.append(created)
            container[attribute.name] = elements
            self._primary(container, attribute, [created])
            return
        for element in matched:
            if sub is not None:
                _assign(element, sub, canonical, where)
            elif self.op == "replace":
                # RFC 7644 §3.5.2.3: matching values are replaced; the
                # filter's own eq tests are kept so the element still matches.
                seed = _element_from_filter(value_filter, attribute) or {}
                new = {**seed, **(replacement or {})}
                for fixed in attribute.sub_attributes.values():
                    if fixed.mutability == "immutable":
                        _check_immutable(element, fixed, new.get(fixed.name, UNSET), where)
                element.clear()
                element.update(new)
            else:
                for name, item in (replacement or {}).items():
                    sub_spec = attribute.sub(name)
                    assert sub_spec is not None  # noqa: S101
                    _assign(element, sub_spec, item, where)
        container[attribute.name] = [e for e in elements if e]
        self._primary(container, attribute, matched)

    def _primary(
        self, container: dict[str, Any], attribute: AttributeSpec, written: Sequence[Any]
    ) -> None:
        # RFC 7643 §2.4: "primary": true appears at most once. The element just
        # written wins over the ones already there; within one written list,
        # the first one wins.
        if attribute.sub("primary") is None:
            return
        keeper = next(
            (e for e in written if isinstance(e, dict) and e.get("primary") is True), None
        )
        if keeper is None:
            return
        for element in container.get(attribute.name) or []:
            if (
                element is not keeper
                and isinstance(element, dict)
                and element.get("primary") is True
            ):
                element["primary"] = False

    # -- remove ------------------------------------------------------------------------

    def _remove(self, container: dict[str, Any], target: _Target, value: Any) -> None:
        attribute, sub = target.attribute, target.sub
        assert attribute is not None  # noqa: S101
        if target.value_filter is not None:
            elements = _elements(container, attribute)
            kept = []
            for element in elements:
                if not _matches(target.value_filter, element, attribute):
                    kept.append(element)
                elif sub is not None:
                    _assign(element, sub, UNSET, f"{attribute.name}[...].{sub.name}")
                    if element:
                        kept.append(element)
                # else: the whole element goes, immutable sub-attributes included
            # Matching nothing is not an error: IdPs repeat removals.
            _set_list(container, attribute, kept)
        elif sub is not None:
            if attribute.multi_valued:
                for element in _elements(container, attribute):
                    _assign(element, sub, UNSET, f"{attribute.name}.{sub.name}")
                _set_list(container, attribute, [e for e in _elements(container, attribute) if e])
            else:
                holder = container.get(attribute.name)
                if isinstance(holder, dict):
                    _assign(holder, sub, UNSET, f"{attribute.name}.{sub.name}")
        elif attribute.multi_valued and value is not None:
            # Entra removes members with {"path": "members", "value": [{...}]}:
            # only the elements described are removed, not the whole list.
            described = self._canonical(attribute, value, attribute.name)
            if described is UNSET:
                return
            kept = [
                element
                for element in _elements(container, attribute)
                if not any(_described_by(element, item, attribute) for item in described)
            ]
            _set_list(container, attribute, kept)
        else:
            _assign(container, attribute, UNSET, attribute.name)


# -- helpers ----------------------------------------------------------------------------


def _count(elements: Any) -> int:
    return len(elements) if isinstance(elements, list) else 0


def _unknown(where: str) -> None:
    """PATCH is precise: a sub-attribute the schema lacks is refused, not dropped."""
    raise _Failure("invalidValue", f"{where} is not a known sub-attribute.")


def _elements(container: dict[str, Any], attribute: AttributeSpec) -> list[Any]:
    current = container.get(attribute.name)
    return list(current) if isinstance(current, list) else []


def _set_list(container: dict[str, Any], attribute: AttributeSpec, elements: list[Any]) -> None:
    if elements:
        container[attribute.name] = elements
    else:
        container.pop(attribute.name, None)


def _assign(container: dict[str, Any], spec: AttributeSpec, value: Any, where: str) -> None:
    """Set (or, for :data:`UNSET`, remove) ``spec`` in ``container``, honouring immutability."""
    _check_immutable(container, spec, value, where)
    if value is UNSET:
        container.pop(spec.name, None)
    else:
        container[spec.name] = value


def _case_exact(attribute: AttributeSpec) -> Callable[[str], bool]:
    def case_exact(name: str) -> bool:
        sub = attribute.sub(name)
        return sub.case_exact if sub is not None else False

    return case_exact


def _matches(value_filter: RawFilter, element: Any, attribute: AttributeSpec) -> bool:
    return isinstance(element, Mapping) and raw_matches(
        value_filter, element, _case_exact(attribute)
    )


def _check_filter_names(value_filter: RawFilter, attribute: AttributeSpec) -> None:
    """Refuse a filter naming a sub-attribute the attribute does not have."""
    stack: list[RawFilter] = [value_filter]
    while stack:
        node = stack.pop()
        if isinstance(node, RawAnd | RawOr):
            stack.extend((node.left, node.right))
        elif isinstance(node, RawNot):
            stack.append(node.operand)
        elif isinstance(node, RawValuePath):
            stack.append(node.filter)
        elif attribute.sub(node.attribute) is None:
            raise _Failure(
                "invalidPath",
                f"the filter names {node.attribute!r}, which is not a sub-attribute of "
                f"{attribute.name}.",
            )


def _element_from_filter(
    value_filter: RawFilter, attribute: AttributeSpec
) -> dict[str, Any] | None:
    """The element a conjunction of ``eq`` tests describes, or ``None`` for any other filter."""
    if isinstance(value_filter, RawAnd):
        left = _element_from_filter(value_filter.left, attribute)
        right = _element_from_filter(value_filter.right, attribute)
        if left is None or right is None:
            return None
        for name in left.keys() & right.keys():
            if left[name] != right[name]:
                return None
        return {**left, **right}
    if not isinstance(value_filter, RawComparison) or value_filter.op != "eq":
        return None
    sub = attribute.sub(value_filter.attribute)
    if sub is None or value_filter.value is None:
        return None
    value: Any = value_filter.value
    if sub.type == "boolean":
        value = canonical_value(sub, value, sub.name, _unknown)
    elif sub.type in ("integer", "decimal") and isinstance(value, str):
        return None  # numbers come back as text; building one would guess its type
    return {sub.name: value}


def _check_immutable(
    container: Mapping[str, Any], spec: AttributeSpec, value: Any, where: str
) -> None:
    current = container.get(spec.name)
    if spec.mutability == "immutable" and current is not None and current != value:
        # RFC 7643 §2.2: an immutable attribute may be set once, never changed.
        raise _Failure(
            "mutability",
            f"{where} is immutable: it already holds {current!r} and cannot be changed.",
        )


def _described_by(element: Any, description: Any, attribute: AttributeSpec) -> bool:
    """Whether every sub-attribute given in ``description`` has the same value in ``element``."""
    if not isinstance(element, Mapping) or not isinstance(description, Mapping) or not description:
        return False
    for name, expected in description.items():
        actual = element.get(name)
        sub = attribute.sub(name)
        if (
            isinstance(actual, str)
            and isinstance(expected, str)
            and sub is not None
            and not sub.case_exact
        ):
            if fold(actual) != fold(expected):
                return False
        elif actual != expected:
            return False
    return True


def _copy(value: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists and scalars).

    Much cheaper than :func:`copy.deepcopy`, which keeps a memo for shared
    and cyclic references that a parsed JSON document cannot have.
    """
    if type(value) in (str, bool, int, float) or value is None:
        return value
    if isinstance(value, dict | Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value
