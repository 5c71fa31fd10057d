"""Hypothesis properties of the SCIM filter and path parser.

Resolved trees over ``USER_FIELDS`` (and raw trees) are rendered to text the
way a careless but valid client would write them (random case of keywords,
names and URNs, random spacing, redundant parentheses, quoted or bare values,
string booleans, date-times in any offset) and must parse back to the same
tree. Parentheses are written wherever precedence or left-associativity would
otherwise change the grouping, so equality is exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import USER_FIELDS
from pbidentity.query import And
from pbidentity.query import CompareOp
from pbidentity.query import Comparison
from pbidentity.query import Field
from pbidentity.query import Filter
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Present
from pbidentity.query import ValueFilter
from pbidentity.scim._filter import AttributePath
from pbidentity.scim._filter import FilterError
from pbidentity.scim._filter import PathError
from pbidentity.scim._filter import RawAnd
from pbidentity.scim._filter import RawComparison
from pbidentity.scim._filter import RawFilter
from pbidentity.scim._filter import RawNot
from pbidentity.scim._filter import RawOr
from pbidentity.scim._filter import RawPresent
from pbidentity.scim._filter import RawValue
from pbidentity.scim._filter import RawValuePath
from pbidentity.scim._filter import parse_filter
from pbidentity.scim._filter import parse_path
from pbidentity.scim._filter import parse_raw_filter
from pbidentity.scim._filter import raw_matches
from pbidentity.scim._filter import resolve_sort

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ROLE_URN = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
ALL_OPS: tuple[CompareOp, ...] = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")
ORDER_OPS: tuple[CompareOp, ...] = ("eq", "ne", "gt", "ge", "lt", "le")
KEYWORDS = {"true", "false", "null", "and", "or", "not"}
BAREWORD = re.compile(r"[A-Za-z0-9@._+-]+")

FIELDS = list(USER_FIELDS.values())
MULTI = sorted({field.multi for field in FIELDS if field.multi})
SUB_FIELDS = {name: [field for field in FIELDS if field.multi == name] for name in MULTI}

# -- strategies ---------------------------------------------------------------------

strings = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
instants = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def comparisons(field: Field) -> st.SearchStrategy[Filter]:
    """Comparisons valid for the field's type, null included."""
    nulls = st.builds(Comparison, st.just(field), st.sampled_from(("eq", "ne")), st.none())
    if field.type == "boolean":
        values: st.SearchStrategy[Filter] = st.builds(
            Comparison, st.just(field), st.sampled_from(("eq", "ne")), st.booleans()
        )
    elif field.type == "datetime":
        values = st.builds(Comparison, st.just(field), st.sampled_from(ORDER_OPS), instants)
    else:
        values = st.builds(Comparison, st.just(field), st.sampled_from(ALL_OPS), strings)
    return values | nulls


def leaves(fields: list[Field]) -> st.SearchStrategy[Filter]:
    """Present tests and comparisons over ``fields``."""
    present: st.SearchStrategy[Filter] = st.builds(Present, st.sampled_from(fields))
    return present | st.sampled_from(fields).flatmap(comparisons)


def logic(leaf: st.SearchStrategy[Filter]) -> st.SearchStrategy[Filter]:
    """And/Or/Not trees over ``leaf``."""

    def extend(children: st.SearchStrategy[Filter]) -> st.SearchStrategy[Filter]:
        return (
            st.builds(And, children, children)
            | st.builds(Or, children, children)
            | st.builds(Not, children)
        )

    return st.recursive(leaf, extend, max_leaves=6)


value_filters: st.SearchStrategy[Filter] = st.sampled_from(MULTI).flatmap(
    lambda name: st.builds(ValueFilter, st.just(name), logic(leaves(SUB_FIELDS[name])))
)
filters = logic(leaves(FIELDS) | value_filters)

RAW_NAMES = ["type", "Value", "PRIMARY", "display", "name.givenName", f"{ENTERPRISE_URN}:x"]
raw_values: st.SearchStrategy[RawValue] = strings | st.booleans() | st.none()


def raw_leaf(names: list[str]) -> st.SearchStrategy[RawFilter]:
    """Raw comparisons and presence tests whose operator suits the literal."""

    def compare(name: str, value: RawValue) -> st.SearchStrategy[RawFilter]:
        ops = ALL_OPS if isinstance(value, str) else ("eq", "ne")
        return st.builds(RawComparison, st.just(name), st.sampled_from(ops), st.just(value))

    present: st.SearchStrategy[RawFilter] = st.builds(RawPresent, st.sampled_from(names))
    return present | st.tuples(st.sampled_from(names), raw_values).flatmap(
        lambda pair: compare(*pair)
    )


def raw_logic(leaf: st.SearchStrategy[RawFilter]) -> st.SearchStrategy[RawFilter]:
    """RawAnd/RawOr/RawNot trees over ``leaf``."""

    def extend(children: st.SearchStrategy[RawFilter]) -> st.SearchStrategy[RawFilter]:
        return (
            st.builds(RawAnd, children, children)
            | st.builds(RawOr, children, children)
            | st.builds(RawNot, children)
        )

    return st.recursive(leaf, extend, max_leaves=6)


raw_value_paths: st.SearchStrategy[RawFilter] = st.builds(
    RawValuePath, st.sampled_from(["emails", "Members"]), raw_logic(raw_leaf(RAW_NAMES[:4]))
)
raw_filters = raw_logic(raw_leaf(RAW_NAMES) | raw_value_paths)

# -- the renderer -------------------------------------------------------------------

OR, AND, UNARY = 1, 2, 3


class Renderer:
    """Writes trees as text, with random but meaning-preserving cosmetics."""

    def __init__(self, rnd: Random) -> None:
        self.rnd = rnd

    def case(self, text: str) -> str:
        """``text`` as written, upper, lower or mixed case."""
        style = self.rnd.randrange(4)
        if style == 0:
            return text
        if style == 1:
            return text.upper()
        if style == 2:
            return text.lower()
        return "".join(c.upper() if self.rnd.random() < 0.5 else c.lower() for c in text)

    def space(self, minimum: int = 1) -> str:
        """Between ``minimum`` and three spaces."""
        return " " * self.rnd.randint(minimum, 3)

    def attribute(self, field: Field, inner: str | None) -> str:
        """One of the spellings that resolve to ``field`` (sub-attribute only inside brackets)."""
        if inner is not None:
            assert field.sub is not None
            return self.case(field.sub)
        if field.key == "role":
            return self.case(self.rnd.choice(["role", f"{ROLE_URN}:role"]))
        if field.key.startswith("urn:"):
            return self.case(field.key)
        name = field.key
        if field.multi is not None and field.sub == "value" and self.rnd.random() < 0.5:
            name = field.multi
        if self.rnd.random() < 0.3:
            name = f"{USER_URN}:{name}"
        return self.case(name)

    def string(self, value: str) -> str:
        """A JSON string, or Entra's bareword when the text allows it."""
        bare = BAREWORD.fullmatch(value) and value.lower() not in KEYWORDS
        if bare and self.rnd.random() < 0.5:
            return value
        return json.dumps(value, ensure_ascii=self.rnd.random() < 0.5)

    def value(self, value: object) -> str:
        """A literal that converts back to ``value`` for its field type."""
        if value is None:
            return self.case("null")
        if isinstance(value, bool):
            if self.rnd.random() < 0.3:
                return json.dumps(self.case(str(value).lower()))  # Entra's "True"
            return self.case(str(value).lower())
        if isinstance(value, datetime):
            offset = timezone(timedelta(minutes=self.rnd.randint(-12 * 60, 14 * 60)))
            text = value.astimezone(offset).isoformat()
            if text.endswith("+00:00") and self.rnd.random() < 0.5:
                text = text[:-6] + "Z"
            return text if self.rnd.random() < 0.3 else json.dumps(text)
        assert isinstance(value, str)
        return self.string(value)

    def render(self, node: Filter | RawFilter, context: int = 0, inner: str | None = None) -> str:
        """Text for ``node`` that parses back to it when it stands where ``context`` binds."""
        text, binding = self._render(node, inner)
        if binding < context or self.rnd.random() < 0.1:
            text = f"({self.space(0)}{text}{self.space(0)})"
        return text

    def _render(self, node: Filter | RawFilter, inner: str | None) -> tuple[str, int]:
        sp = self.space
        if isinstance(node, And | RawAnd):
            left = self.render(node.left, AND, inner)
            right = self.render(node.right, UNARY, inner)
            return f"{left}{sp()}{self.case('and')}{sp()}{right}", AND
        if isinstance(node, Or | RawOr):
            left = self.render(node.left, OR, inner)
            right = self.render(node.right, AND, inner)
            return f"{left}{sp()}{self.case('or')}{sp()}{right}", OR
        if isinstance(node, Not | RawNot):
            operand = self.render(node.operand, UNARY, inner)
            if not operand.startswith("("):
                operand = f"({operand})" if self.rnd.random() < 0.7 else f" {operand}"
            return f"{self.case('not')}{self.space(0)}{operand}", UNARY
        if isinstance(node, ValueFilter | RawValuePath):
            # Resolved names are canonical, so any case resolves back; raw ones stay as written.
            name = self.case(node.attribute) if isinstance(node, ValueFilter) else node.attribute
            body = self.render(node.filter, 0, node.attribute)
            return f"{name}[{self.space(0)}{body}{self.space(0)}]", UNARY
        if isinstance(node, Present):
            return f"{self.attribute(node.field, inner)}{sp()}{self.case('pr')}", UNARY
        if isinstance(node, RawPresent):
            return f"{node.attribute}{sp()}{self.case('pr')}", UNARY
        if isinstance(node, Comparison):
            name = self.attribute(node.field, inner)
            return f"{name}{sp()}{self.case(node.op)}{sp()}{self.value(node.value)}", UNARY
        value = self.value(node.value)
        if isinstance(node.value, bool):
            # Raw filters keep a quoted "True" as a string: write the literal.
            value = self.case(str(node.value).lower())
        return f"{node.attribute}{sp()}{self.case(node.op)}{sp()}{value}", UNARY


def parse_user(text: str) -> Filter:
    """Parse a filter on Users with the test role URN."""
    return parse_filter(text, USER_FIELDS, role_urn=ROLE_URN, resource_urn=USER_URN)


# -- properties ---------------------------------------------------------------------


@given(filters, st.randoms(use_true_random=False))
def test_rendered_filters_parse_back_to_the_same_tree(tree: Filter, rnd: Random) -> None:
    """Any resolved tree, written in any valid spelling, parses back to exactly that tree."""
    text = Renderer(rnd).render(tree)
    assert parse_user(text) == tree, text


@given(filters, st.randoms(use_true_random=False))
def test_rendered_filters_also_parse_raw(tree: Filter, rnd: Random) -> None:
    """Every valid filter is also a valid raw filter: the two parsers share one grammar."""
    parse_raw_filter(Renderer(rnd).render(tree))


@given(raw_filters, st.randoms(use_true_random=False))
def test_raw_filters_round_trip(tree: RawFilter, rnd: Random) -> None:
    """Raw trees keep names as written and parse back exactly."""
    text = Renderer(rnd).render(tree)
    assert parse_raw_filter(text) == tree, text


@given(
    st.sampled_from(["emails", "members", "Members"]),
    raw_logic(raw_leaf(RAW_NAMES[:4])),
    st.sampled_from([None, "value", "display", "$ref"]),
    st.randoms(use_true_random=False),
)
def test_value_paths_round_trip(
    attribute: str, inner: RawFilter, sub: str | None, rnd: Random
) -> None:
    """``attr[filter][.sub]`` PATCH paths parse back to their parts."""
    renderer = Renderer(rnd)
    text = f"{attribute}[{renderer.render(inner, 0, attribute)}]" + (f".{sub}" if sub else "")
    assert parse_path(text) == AttributePath(None, attribute, sub, inner), text


@given(raw_filters, st.dictionaries(st.sampled_from(["type", "value", "primary"]), raw_values))
def test_not_is_the_complement(tree: RawFilter, element: dict[str, RawValue]) -> None:
    """``raw_matches`` of ``not f`` is always the opposite of ``f``."""

    def exact(name: str) -> bool:
        return name == "value"

    assert raw_matches(RawNot(tree), element, exact) is not raw_matches(tree, element, exact)


TOKENS = [
    "userName",
    "emails",
    "type",
    "eq",
    "PR",
    "gt",
    "and",
    "OR",
    "not",
    "(",
    ")",
    "[",
    "]",
    '"x"',
    '"',
    "\\",
    "true",
    "null",
    ".value",
    "active",
    "meta.created",
    '"2011-05-13T04:42:34Z"',
    USER_URN,
    f"{ENTERPRISE_URN}:manager",
    ":",
    " ",
    "\t",
]
noise = st.text(max_size=40) | st.lists(st.sampled_from(TOKENS), max_size=15).map(" ".join)


def error_detail(call: Callable[[], object], expected: type[FilterError | PathError]) -> str | None:
    """The detail of the ``expected`` error ``call`` raises, or None; other errors propagate."""
    try:
        call()
    except expected as error:
        return error.detail
    return None


@given(noise)
def test_arbitrary_text_raises_only_the_documented_errors(text: str) -> None:
    """Whatever the text, the parsers return a value or raise their own error, never a crash."""
    details = [
        error_detail(lambda: parse_user(text), FilterError),
        error_detail(lambda: parse_raw_filter(text), FilterError),
        error_detail(
            lambda: resolve_sort(text, USER_FIELDS, role_urn=ROLE_URN, resource_urn=USER_URN),
            FilterError,
        ),
        error_detail(lambda: parse_path(text), PathError),
    ]
    assert all(detail is None or detail.strip() for detail in details)
