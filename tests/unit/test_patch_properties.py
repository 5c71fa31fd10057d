"""Property: the PATCH diff between two Users turns the first into the second."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbidentity.scim._patch import PatchError
from pbidentity.scim._patch import apply_patch
from pbidentity.scim._schema import DEFAULT_ROLE_URN
from pbidentity.scim._schema import ENTERPRISE_URN
from pbidentity.scim._schema import ResourceSpec
from pbidentity.scim._schema import user_resource

ROLES = ("admin", "maker", "viewer")
USERS = user_resource(DEFAULT_ROLE_URN, ROLES)

# Non-empty: "" means "unset" in PATCH, so it never appears in a canonical document.
text = st.text(min_size=1, max_size=12)
emails = st.lists(
    st.fixed_dictionaries(
        {"value": st.emails()},
        optional={"type": st.sampled_from(["work", "home", "other"]), "display": text},
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda e: e["value"],
)


@st.composite
def email_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Emails with at most one primary (RFC 7643 §2.4), as a canonical document holds them."""
    elements: list[dict[str, Any]] = draw(emails)
    primary = draw(st.none() | st.integers(0, len(elements) - 1))
    if primary is not None:
        elements[primary]["primary"] = True
    return elements


names = st.fixed_dictionaries(
    {}, optional={"givenName": text, "familyName": text, "middleName": text, "formatted": text}
).filter(bool)
enterprise = st.fixed_dictionaries(
    {},
    optional={
        "employeeNumber": text,
        "department": text,
        "costCenter": text,
        "manager": st.fixed_dictionaries({"value": text}, optional={"$ref": st.just("../Users/m")}),
    },
).filter(bool)
users = st.fixed_dictionaries(
    {"userName": text},
    optional={
        "displayName": text,
        "title": text,
        "nickName": text,
        "externalId": text,
        "active": st.booleans(),
        "name": names,
        "emails": email_lists(),
        ENTERPRISE_URN: enterprise,
        DEFAULT_ROLE_URN: st.fixed_dictionaries({"role": st.sampled_from(ROLES)}),
    },
)


def _diff_attribute(
    path: str, spec_multi: bool, spec_complex: bool, old: Any, new: Any
) -> list[tuple[str, str, Any]]:
    """(op, path, value) for one attribute: replace what changed, remove what went, lists whole."""
    if new is None:
        return [("remove", path, None)] if old is not None else []
    if old == new:
        return []
    if spec_complex and not spec_multi:
        # A complex replace merges sub-attributes (RFC 7644 §3.5.2.3), so
        # the diff names each sub-attribute that changed or went.
        old_dict = old or {}
        changes: list[tuple[str, str, Any]] = []
        for sub in sorted(old_dict.keys() | new.keys()):
            changes += _diff_attribute(
                f"{path}.{sub}", False, False, old_dict.get(sub), new.get(sub)
            )
        return changes
    return [("replace", path, new)]


def diff(
    old: dict[str, Any], new: dict[str, Any], resource: ResourceSpec
) -> list[tuple[str, str, Any]]:
    """The small diff builder: every change from ``old`` to ``new`` as (op, path, value)."""
    changes: list[tuple[str, str, Any]] = []
    for key in sorted(old.keys() | new.keys()):
        schema, _ = resource.split_urn(key)
        if schema is not None and schema is not resource.core:
            old_block, new_block = old.get(key) or {}, new.get(key) or {}
            for name in sorted(old_block.keys() | new_block.keys()):
                spec = schema.attribute(name)
                assert spec is not None
                changes += _diff_attribute(
                    f"{key}:{name}",
                    spec.multi_valued,
                    spec.is_complex,
                    old_block.get(name),
                    new_block.get(name),
                )
            continue
        spec = resource.attribute(resource.core, key)
        assert spec is not None
        changes += _diff_attribute(
            key, spec.multi_valued, spec.is_complex, old.get(key), new.get(key)
        )
    return changes


def as_operations(
    changes: list[tuple[str, str, Any]], *, pathless: bool, op_case: str
) -> list[dict[str, Any]]:
    """Render the diff as operations: one per change, or removes + a path-less replace."""

    def verb(op: str) -> str:
        return op.upper() if op_case == "upper" else op.capitalize() if op_case == "title" else op

    removes = [{"op": verb(op), "path": path} for op, path, _ in changes if op == "remove"]
    replaces = [(path, value) for op, path, value in changes if op == "replace"]
    if pathless and replaces:
        # Entra's aadOptscim062020 form: dotted and URN-qualified keys in one value.
        return [*removes, {"op": verb("replace"), "value": dict(replaces)}]
    return [*removes, *({"op": verb("replace"), "path": p, "value": v} for p, v in replaces)]


@given(
    old=users,
    new=users,
    pathless=st.booleans(),
    op_case=st.sampled_from(["lower", "upper", "title"]),
)
def test_applying_the_diff_gives_the_target(
    old: dict[str, Any], new: dict[str, Any], pathless: bool, op_case: str
) -> None:
    """Applying diff(old, new) to old gives new (any form, any op case); twice too."""
    operations = as_operations(diff(old, new, USERS), pathless=pathless, op_case=op_case)
    result = apply_patch(old, operations, USERS)
    assert result == new
    assert apply_patch(result, operations, USERS) == new


@given(old=users, new=users)
def test_a_failing_batch_leaves_the_document_untouched(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    """A read-only target at the end fails the whole batch; the input is untouched."""
    operations = as_operations(diff(old, new, USERS), pathless=False, op_case="lower")
    operations.append({"op": "replace", "path": "id", "value": "x"})
    snapshot = repr(old)
    with pytest.raises(PatchError) as caught:
        apply_patch(old, operations, USERS)
    assert caught.value.scim_type == "mutability"
    assert caught.value.index == len(operations) - 1
    assert repr(old) == snapshot
