"""Parse SCIM filters, ``sortBy`` and PATCH paths (RFC 7644 §3.4.2.2, §3.4.2.3, §3.5.2).

``parse_filter`` turns a ``filter`` query parameter into the resolved tree of
:mod:`pbidentity.query`: every attribute name is looked up, case-insensitively,
in the field registry, and every value is converted to the field's type, so a
storage backend only ever sees fields it indexes and values it can bind.
``resolve_sort`` does the same for ``sortBy``. ``parse_path`` and
``parse_raw_filter`` parse PATCH paths and their ``[...]`` filters without a
registry (PATCH may touch attributes nobody searches), and ``raw_matches``
evaluates such a filter against one element of a multi-valued attribute.

The parser is hand-written because it runs on every Okta and Entra lookup
(``userName eq "..."``): one regular expression splits the text into tokens and
a small recursive-descent parser builds the tree while it resolves it.

This module must not touch storage, filter stored members (the backends do), build
SCIM responses (the service maps ``FilterError`` to 400 ``invalidFilter`` and
``PathError`` to 400 ``invalidPath``), nor accept an attribute the registry does
not list: an unknown name is an error, never a silently broader search.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import Final
from typing import Generic
from typing import TypeAlias
from typing import TypeVar

import attrs

from pbidentity.domain import fold
from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import And
from pbidentity.query import CompareOp
from pbidentity.query import Comparison
from pbidentity.query import Field
from pbidentity.query import Filter
from pbidentity.query import FilterValue
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Present
from pbidentity.query import ValueFilter
from pbidentity.scim._limits import ScimLimits
from pbidentity.scim._limits import too_large
from pbidentity.scim._limits import too_many

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_NESTING",
    "AttributePath",
    "FilterError",
    "PathError",
    "RawAnd",
    "RawComparison",
    "RawFilter",
    "RawNot",
    "RawOr",
    "RawPresent",
    "RawValue",
    "RawValuePath",
    "parse_filter",
    "parse_path",
    "parse_raw_filter",
    "raw_matches",
    "resolve_sort",
]

#: Longest filter, sortBy or path accepted without :class:`ScimLimits`, in characters.
MAX_LENGTH: Final = 8192
#: Deepest nesting of parentheses, ``not`` and brackets without :class:`ScimLimits`:
#: bounds the parser's recursion.
MAX_NESTING: Final = 50
#: Deepest resulting tree (a chain of 100 ``or`` is 100 deep): bounds the recursion of
#: whatever walks the tree later (SQL compilation, equality, repr).
MAX_DEPTH: Final = 100


class FilterError(Exception):
    """A filter or ``sortBy`` the service cannot answer; ``detail`` says why and where."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PathError(Exception):
    """A PATCH ``path`` that is not valid; ``detail`` tells the admin why and where."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@attrs.frozen
class _Bounds:
    """What one parse may take: from the host app's :class:`ScimLimits`, or the fixed maxima.

    With ``limits`` set, going over a bound raises
    :class:`~pbidentity.scim._limits.LimitExceeded` (a 400 that names the
    limit); without, the fixed maxima raise ``FilterError`` and terms are
    not counted. ``terms_before`` are the terms already spent by earlier
    filters of the same request (the path filters of one PATCH share one
    budget), and ``subject`` is how the error names what holds the terms.
    """

    limits: ScimLimits | None = None
    terms_before: int = 0
    subject: str = "The filter"
    #: Whether terms no index answers are counted against ``filter_scan_terms``
    #: (a query filter runs in the database; a PATCH path filter is tested
    #: against the elements of one resource).
    scans: bool = False

    @property
    def length(self) -> int:
        return MAX_LENGTH if self.limits is None else self.limits.filter_length

    @property
    def nesting(self) -> int:
        return MAX_NESTING if self.limits is None else self.limits.filter_nesting


_UNBOUNDED = _Bounds()


# -- the unresolved tree of PATCH value filters -------------------------------

#: A literal as written: quoted strings, barewords and numbers are ``str`` (their
#: text), ``true``/``false`` are ``bool`` and ``null`` is ``None``.
RawValue: TypeAlias = str | bool | None


@attrs.frozen
class RawComparison:
    """``attribute op value``, the attribute as written (``type``, ``name.givenName``)."""

    attribute: str
    op: CompareOp
    value: RawValue


@attrs.frozen
class RawPresent:
    """``attribute pr``."""

    attribute: str


@attrs.frozen
class RawAnd:
    """Both operands hold."""

    left: RawFilter
    right: RawFilter


@attrs.frozen
class RawOr:
    """At least one operand holds."""

    left: RawFilter
    right: RawFilter


@attrs.frozen
class RawNot:
    """The operand does not hold."""

    operand: RawFilter


@attrs.frozen
class RawValuePath:
    """``attribute[filter]``: one element of ``attribute`` satisfies ``filter``."""

    attribute: str
    filter: RawFilter


RawFilter: TypeAlias = RawComparison | RawPresent | RawAnd | RawOr | RawNot | RawValuePath


@attrs.frozen
class AttributePath:
    """A parsed PATCH ``path``: ``[urn:]attribute[.sub]`` or ``attribute[filter][.sub]``.

    ``urn`` is ``None`` for the core schemas (User and Group); the enterprise
    extension URN comes back in its canonical case; any other URN (the app's
    role extension, whose URN only the service knows) comes back as written.
    ``attribute`` and ``sub_attribute`` are as written: the PATCH layer matches
    them case-insensitively against the schema.
    """

    urn: str | None
    attribute: str
    sub_attribute: str | None = None
    value_filter: RawFilter | None = None
    #: Comparisons in ``value_filter`` (what the path spends of ``ScimLimits.filter_terms``).
    terms: int = attrs.field(default=0, eq=False)


# -- tokens -------------------------------------------------------------------

_END, _STR, _PUNCT, _WORD, _BAD_QUOTE = 0, 1, 2, 3, 4
Token: TypeAlias = tuple[int, str, int]  # kind, text as written, offset

# Every non-space character starts exactly one alternative, so the matches are
# contiguous and nothing is skipped silently. A word is anything up to a space,
# a quote, a parenthesis or a bracket: attribute paths (URNs contain ':' and
# '.'), operators, keywords and the unquoted values Entra sends.
_TOKEN = re.compile(r'\s*(?:("[^"\\]*(?:\\.[^"\\]*)*")|([][()])|([^\s\][()"]+)|("))', re.DOTALL)

_OPS: Final[Mapping[str, CompareOp]] = {
    "eq": "eq",
    "ne": "ne",
    "co": "co",
    "sw": "sw",
    "ew": "ew",
    "gt": "gt",
    "ge": "ge",
    "lt": "lt",
    "le": "le",
}
_OP_LIST = "eq, ne, co, sw, ew, gt, ge, lt, le or pr"
_LITERALS: Final[Mapping[str, bool | None]] = {"true": True, "false": False, "null": None}
_LOGICAL = frozenset(("and", "or", "not"))
_ORDERING = frozenset(("gt", "ge", "lt", "le"))
_SUBSTRING = frozenset(("co", "sw", "ew"))

_NAME = r"(?:\$ref|[A-Za-z][A-Za-z0-9_-]*)"
_PATH = re.compile(rf"(?:(urn:.*):)?({_NAME})(?:\.({_NAME}))?", re.IGNORECASE | re.DOTALL)
_SUB_NAME = re.compile(_NAME)
_VERSION = re.compile(r"\d+(?:\.\d+)*")
_CORE_URNS = frozenset(
    ("urn:ietf:params:scim:schemas:core:2.0:user", "urn:ietf:params:scim:schemas:core:2.0:group")
)
_ENTERPRISE_URN_L = ENTERPRISE_URN.lower()
_ROLE_KEY = "role"  # the registry's key for the app's role extension attribute


def _quote(text: str) -> str:
    # Long enough to show a whole extension URN path, short enough for one line.
    shown = text if len(text) <= 120 else text[:117] + "..."
    return json.dumps(shown, ensure_ascii=False)


def _tokenize(text: str, noun: str, bounds: _Bounds = _UNBOUNDED) -> list[Token]:
    if len(text) > bounds.length:
        if bounds.limits is not None:
            raise too_large(
                f"The {noun}", len(text), "characters long", "filter_length", bounds.length
            )
        raise FilterError(
            f"the {noun} is {len(text)} characters long; the limit is {MAX_LENGTH}: "
            "split it into several requests"
        )
    tokens: list[Token] = []
    # finditer retries a failed match at every following position: on trailing
    # whitespace that is quadratic (seconds for 8 KiB of spaces), so strip it first.
    # Every other position starts a token, so nothing else can fail.
    for match in _TOKEN.finditer(text.rstrip()):
        kind = match.lastindex or _BAD_QUOTE
        if kind == _BAD_QUOTE:
            raise FilterError(
                f"unterminated string starting at offset {match.start(kind)}: "
                'close it with a double quote (write \\" for a quote inside it)'
            )
        tokens.append((kind, match.group(kind), match.start(kind)))
    tokens.append((_END, "", len(text)))
    return tokens


def _string(text: str, offset: int) -> str:
    """The value of a JSON string token (decoded only if it has escapes: the hot path)."""
    if "\\" not in text:
        return text[1:-1]
    try:
        value = json.loads(text, strict=False)
        value.encode("utf-8")  # a lone surrogate (\ud800) would fail later in the store
    except (ValueError, UnicodeEncodeError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "lone surrogate"
        raise FilterError(
            f"invalid escape in the string at offset {offset} ({reason}): "
            'use JSON escapes such as \\", \\\\ or \\u00e9'
        ) from None
    assert isinstance(value, str)  # noqa: S101 - a JSON string token decodes to a str
    return value


def _split_path(word: str, offset: int, noun: str) -> tuple[str | None, str, str | None]:
    """``[urn:]name[.sub]`` of a PATCH or raw-filter path, checked against RFC 7644's ATTRNAME."""
    match = _PATH.fullmatch(word)
    if match is None:
        raise FilterError(
            f"{_quote(word)} at offset {offset} is not an attribute path: expected name, "
            "name.subAttribute or a schema URN followed by ':name'"
        )
    urn, name, sub = match.groups()
    if urn is not None and sub is None and name.lower() in ("user", "group"):
        # "urn:...:2.0:User" names a whole schema, not an attribute in it.
        version = urn.rpartition(":")[2]
        if _VERSION.fullmatch(version):
            raise FilterError(
                f"{_quote(word)} at offset {offset} names a whole schema, not an attribute: "
                f"name one of its attributes (e.g. {ENTERPRISE_URN}:employeeNumber) in the {noun}"
            )
    return urn, name, sub


# -- the parser -----------------------------------------------------------------

N = TypeVar("N")


class _Parser(Generic[N]):
    """Recursive descent over ``or`` < ``and`` < ``not`` < comparisons, building ``N`` nodes.

    ``inner`` is the multi-valued attribute whose brackets the parser is in
    (``None`` at the top), so that names inside resolve as its sub-attributes.
    """

    __slots__ = ("bounds", "i", "negations", "nesting", "noun", "scans", "terms", "tokens")

    def __init__(self, tokens: list[Token], noun: str, bounds: _Bounds = _UNBOUNDED) -> None:
        self.tokens = tokens
        self.noun = noun
        self.bounds = bounds
        self.i = 0
        self.nesting = 0
        self.terms = 0
        self.scans = 0
        self.negations = 0

    # The node builders each subclass provides.
    def _and(self, left: N, right: N) -> N:
        raise NotImplementedError

    def _or(self, left: N, right: N) -> N:
        raise NotImplementedError

    def _not(self, operand: N) -> N:
        raise NotImplementedError

    def _present(self, path: str, offset: int, inner: str | None) -> N:
        raise NotImplementedError

    def _compare(
        self,
        path: str,
        offset: int,
        *,
        op: CompareOp,
        op_offset: int,
        value: RawValue,
        value_offset: int,
        inner: str | None,
    ) -> N:
        raise NotImplementedError

    def _enter(self, path: str, offset: int) -> str:
        """The ``inner`` name for the brackets after ``path``; raises if it takes none."""
        raise NotImplementedError

    def _value_path(self, inner: str, node: N) -> N:
        raise NotImplementedError

    def _after_brackets(self, inner: str, token: Token) -> None:
        """Reject ``attr[...].sub`` where it is not allowed."""

    # Errors.
    def found(self, token: Token) -> str:
        kind, text, offset = token
        if kind == _END:
            return f"found the end of the {self.noun}"
        return f"found {_quote(text)} at offset {offset}"

    def _unexpected(self, token: Token, expected: str) -> FilterError:
        if token[0] == _END:
            return FilterError(f"expected {expected}, {self.found(token)} (offset {token[2]})")
        return FilterError(f"expected {expected}, {self.found(token)}")

    def _nest(self, offset: int) -> None:
        self.nesting += 1
        bounds = self.bounds
        if self.nesting > bounds.nesting:
            if bounds.limits is not None:
                raise too_many(
                    f"The {self.noun} (at offset {offset})",
                    self.nesting,
                    "levels of parentheses, brackets and 'not'",
                    "filter_nesting",
                    bounds.nesting,
                )
            raise FilterError(
                f"the {self.noun} nests parentheses, brackets and 'not' more than {MAX_NESTING} "
                f"levels deep (at offset {offset}): simplify it"
            )

    def _term(self, *, indexed: bool) -> None:
        # Counted as each comparison is read, so a filter of a million terms
        # fails at the first one over the bound, not after being parsed whole.
        self.terms += 1
        limits = self.bounds.limits
        if limits is None:
            return
        if self.bounds.terms_before + self.terms > limits.filter_terms:
            raise too_many(
                self.bounds.subject,
                self.bounds.terms_before + self.terms,
                "terms (comparisons)",
                "filter_terms",
                limits.filter_terms,
            )
        if self.bounds.scans and (not indexed or self.negations):
            self.scans += 1
            if self.scans > limits.filter_scan_terms:
                raise too_many(
                    self.bounds.subject,
                    self.scans,
                    "terms that no index answers (co, sw, ew, ne, gt, ge, lt, le, pr, "
                    "null, or under 'not')",
                    "filter_scan_terms",
                    limits.filter_scan_terms,
                )

    def _depth(self, depth: int, offset: int) -> int:
        if depth > MAX_DEPTH:
            raise FilterError(
                f"the {self.noun} is more than {MAX_DEPTH} levels of and/or/not deep "
                f"(at offset {offset}): split it into several requests"
            )
        return depth

    # Grammar.
    def parse_or(self, inner: str | None) -> tuple[N, int]:
        left, depth = self.parse_and(inner)
        tokens = self.tokens
        while True:
            kind, text, offset = tokens[self.i]
            if kind != _WORD or text.lower() != "or":
                return left, depth
            self.i += 1
            right, right_depth = self.parse_and(inner)
            left = self._or(left, right)
            depth = self._depth(max(depth, right_depth) + 1, offset)

    def parse_and(self, inner: str | None) -> tuple[N, int]:
        left, depth = self.parse_unary(inner)
        tokens = self.tokens
        while True:
            kind, text, offset = tokens[self.i]
            if kind != _WORD or text.lower() != "and":
                return left, depth
            self.i += 1
            right, right_depth = self.parse_unary(inner)
            left = self._and(left, right)
            depth = self._depth(max(depth, right_depth) + 1, offset)

    def parse_unary(self, inner: str | None) -> tuple[N, int]:
        tokens = self.tokens
        token = tokens[self.i]
        kind, text, offset = token
        if kind == _WORD:
            low = text.lower()
            if low == "not":
                # RFC 7644 writes not "(" filter ")"; "not a" binds like "not (a)", which
                # the precedence not > and > or makes unambiguous, so it is accepted too.
                self.i += 1
                self._nest(offset)
                self.negations += 1
                operand, depth = self.parse_unary(inner)
                self.negations -= 1
                self.nesting -= 1
                return self._not(operand), self._depth(depth + 1, offset)
            if low not in _LOGICAL:
                return self.attribute_expression(inner)
        elif kind == _PUNCT and text == "(":
            self.i += 1
            self._nest(offset)
            node, depth = self.parse_or(inner)
            closing = tokens[self.i]
            if closing[0] != _PUNCT or closing[1] != ")":
                raise self._unexpected(
                    closing, f"'and', 'or' or ')' to close the '(' at offset {offset}"
                )
            self.i += 1
            self.nesting -= 1
            return node, depth
        if kind == _END and self.i == 0:
            raise FilterError(f"the {self.noun} is empty")
        raise self._unexpected(token, "an attribute name, '(' or 'not'")

    def attribute_expression(self, inner: str | None) -> tuple[N, int]:
        tokens = self.tokens
        _, path, offset = tokens[self.i]
        self.i += 1
        kind, text, op_offset = tokens[self.i]
        if kind == _PUNCT and text == "[":
            if inner is not None:
                raise FilterError(
                    f"nested brackets at offset {op_offset}: inside {inner}[...] name its "
                    'sub-attributes directly (e.g. type eq "work")'
                )
            sub_inner = self._enter(path, offset)
            self.i += 1
            self._nest(op_offset)
            node, depth = self.parse_or(sub_inner)
            closing = tokens[self.i]
            if closing[0] != _PUNCT or closing[1] != "]":
                raise self._unexpected(
                    closing, f"'and', 'or' or ']' to close the '[' at offset {op_offset}"
                )
            self.i += 1
            self.nesting -= 1
            self._after_brackets(sub_inner, tokens[self.i])
            return self._value_path(sub_inner, node), self._depth(depth + 1, op_offset)
        op = _OPS.get(text.lower()) if kind == _WORD else None
        if op is None:
            if kind == _WORD and text.lower() == "pr":
                self.i += 1
                self._term(indexed=False)
                return self._present(path, offset, inner), 1
            raise self._unexpected(tokens[self.i], f"an operator ({_OP_LIST}) after {_quote(path)}")
        self.i += 1
        kind, text, value_offset = token = tokens[self.i]
        value: RawValue
        if kind == _STR:
            value = _string(text, value_offset)
        elif kind == _WORD:
            low = text.lower()
            if low in _LITERALS:
                value = _LITERALS[low]
            elif low in _LOGICAL:
                raise self._unexpected(
                    token,
                    f"a value after {_quote(path + ' ' + op)} "
                    f"(quote it if {_quote(text)} is the value)",
                )
            elif text[0] == "'":
                raise FilterError(
                    f"{_quote(text)} at offset {value_offset}: SCIM strings use double quotes, "
                    "not single quotes"
                )
            else:
                # A bareword (Entra's unquoted externalId, or a number): its text is the value.
                value = text
        else:
            raise self._unexpected(token, f"a value after {_quote(path + ' ' + op)}")
        self.i += 1
        self._term(indexed=op == "eq" and value is not None)
        return self._compare(
            path,
            offset,
            op=op,
            op_offset=op_offset,
            value=value,
            value_offset=value_offset,
            inner=inner,
        ), 1

    def expect_end(self) -> None:
        token = self.tokens[self.i]
        kind, text, offset = token
        if kind == _END:
            return
        if kind == _PUNCT and text in ")]":
            raise FilterError(f"unmatched {text!r} at offset {offset}")
        hint = ""
        previous = self.tokens[self.i - 1]
        if kind == _WORD and previous[0] == _WORD and self.tokens[self.i - 2][1].lower() in _OPS:
            hint = " (put a value that contains spaces in double quotes)"
        raise FilterError(
            f"expected 'and', 'or' or the end of the {self.noun}, {self.found(token)}{hint}"
        )


# -- resolution against the registry ------------------------------------------


class _Index:
    """What the registry implies beyond its keys: multi-valued names and sub-attribute lists."""

    __slots__ = ("multi", "subs")

    def __init__(self, fields: Mapping[str, Field]) -> None:
        self.multi: dict[str, str] = {}
        self.subs: dict[str, list[str]] = {}
        for field in fields.values():
            if field.multi is not None:
                self.multi[field.multi.lower()] = field.multi
            # Only a dot after the last colon separates a sub-attribute: URNs contain "2.0".
            if "." in field.key.rpartition(":")[2]:
                parent, _, sub = field.key.rpartition(".")
                self.subs.setdefault(parent.lower(), []).append(sub)


_INDEXES: dict[int, tuple[Mapping[str, Field], _Index]] = {}


def _index(fields: Mapping[str, Field]) -> _Index:
    # Registries are module constants; keying by id and checking identity avoids
    # hashing a mapping on every request.
    cached = _INDEXES.get(id(fields))
    if cached is not None and cached[0] is fields:
        return cached[1]
    index = _Index(fields)
    _INDEXES[id(fields)] = (fields, index)
    return index


def _searchable(fields: Mapping[str, Field], role_urn: str) -> str:
    """A compact list of what can be searched, for error messages."""
    names: list[str] = []
    grouped: dict[str, list[str]] = {}
    for field in fields.values():
        if field.key == _ROLE_KEY:
            names.append(f"{role_urn}:role")
            continue
        urn, colon, local = field.key.rpartition(":")
        if field.multi is not None:
            name = field.multi
        elif "." in local:
            name = local.partition(".")[0]
        else:
            name = local
        group = f"{urn}:" if colon else ""
        if "." in local and field.multi is None:
            group += name + "."
            name = local.partition(".")[2]
        if group:
            if group not in grouped:
                grouped[group] = []
                names.append(group)
            grouped[group].append(name)
        elif name not in names:
            names.append(name)
    rendered = []
    for name in names:
        subs = grouped.get(name)
        if subs is None:
            rendered.append(name)
        elif len(subs) == 1:
            rendered.append(name + subs[0])
        else:
            rendered.append(name + "{" + ", ".join(subs) + "}")
    return ", ".join(rendered)


class _Resolver:
    """Turns attribute paths into registry fields; shared by filters and sortBy."""

    __slots__ = ("fields", "index", "resource", "resource_urn", "role_urn", "role_urn_l", "verb")

    def __init__(
        self, fields: Mapping[str, Field], role_urn: str, resource_urn: str, verb: str
    ) -> None:
        self.fields = fields
        self.index = _index(fields)
        self.role_urn = role_urn
        self.role_urn_l = role_urn.lower()
        self.resource_urn = resource_urn.lower()
        self.resource = resource_urn.rpartition(":")[2] or "this resource"
        self.verb = verb

    def field(self, path: str, offset: int) -> Field:
        low = path.lower()
        # The common case: a core name (or the full URN path of an enterprise attribute,
        # which is how the registry keys them) that the registry has as written.
        found = self.fields.get(low)
        if found is not None:
            return found
        key = low
        if low.startswith("urn:"):
            urn, _, rest = low.rpartition(":")
            if urn == self.resource_urn and rest != _ROLE_KEY:
                key = rest
            elif urn == self.role_urn_l and rest == _ROLE_KEY:
                key = _ROLE_KEY
        if key != low:
            found = self.fields.get(key)
            if found is not None:
                return found
        canonical = self.index.multi.get(key)
        if canonical is not None:
            # RFC 7644 §3.4.2.2: a multi-valued attribute without a sub-attribute means its value.
            found = self.fields.get(key + ".value")
            if found is not None:
                return found
        raise FilterError(self._unknown(path, key, offset))

    def _unknown(self, path: str, key: str, offset: int) -> str:
        start = f"cannot {self.verb} {_quote(path)} (offset {offset}): "
        subs = self.index.subs.get(key)
        if subs is not None:
            return (
                start
                + f"it is a complex attribute; name one of its sub-attributes: {', '.join(subs)}"
            )
        parent, dot, sub = key.rpartition(".")
        if dot and ":" not in sub:
            siblings = self.index.subs.get(parent)
            if siblings is not None:
                choices = ", ".join(siblings)
                return (
                    start
                    + f"it has no searchable sub-attribute {_quote(sub)}; use one of {choices}"
                )
        is_role = key == _ROLE_KEY or key.endswith(":" + _ROLE_KEY)
        if is_role and _ROLE_KEY in self.fields:
            return start + f"the role is an extension attribute: write {self.role_urn}:role"
        local = key.rpartition(":")[2]
        for field in self.fields.values():
            if ":" in field.key and field.key.rpartition(":")[2].lower() == local:
                return start + f"did you mean {field.key}?"
        return (
            start + f"not an attribute of {self.resource} that this service can search. "
            f"Searchable: {_searchable(self.fields, self.role_urn)}"
        )

    def multi(self, path: str, offset: int) -> str:
        low = path.lower()
        if low.startswith("urn:"):
            urn, _, rest = low.rpartition(":")
            if urn == self.resource_urn:
                low = rest
        canonical = self.index.multi.get(low)
        if canonical is None:
            choices = ", ".join(self.index.multi.values()) or "none"
            raise FilterError(
                f"{_quote(path)}[...] at offset {offset}: only a multi-valued attribute takes a "
                f"filter in brackets; searchable ones of {self.resource}: {choices}"
            )
        return canonical

    def sub_field(self, inner: str, path: str, offset: int) -> Field:
        found = self.fields.get(f"{inner.lower()}.{path.lower()}")
        if found is not None and "." not in path and ":" not in path:
            return found
        subs = ", ".join(self.index.subs.get(inner.lower(), ()))
        raise FilterError(
            f"cannot {self.verb} {_quote(path)} inside {inner}[...] (offset {offset}): name a "
            f"searchable sub-attribute of {inner}: {subs}"
        )


def _convert(
    field: Field, op: CompareOp, op_offset: int, value: RawValue, offset: int
) -> FilterValue:
    """The literal as the field's type, or an error saying what the field takes."""
    name = field.key
    if value is None:
        if op in ("eq", "ne"):
            return None
        raise FilterError(
            f"{name} {op} null (offset {op_offset}): null can only be compared with eq or ne; "
            "use pr for presence"
        )
    kind = field.type
    if kind in ("string", "reference"):
        if isinstance(value, bool):
            word = "true" if value else "false"
            raise FilterError(
                f'{name} is a string; put the value in double quotes ("{word}") at offset {offset}'
            )
        return value
    if kind == "boolean":
        if op not in ("eq", "ne"):
            raise FilterError(
                f"{name} is a boolean: only eq, ne and pr apply, not {op} (offset {op_offset})"
            )
        if isinstance(value, bool):
            return value
        folded = value.lower()
        if folded in ("true", "false"):
            # Entra without aadOptscim062020 sends booleans as strings ("True").
            return folded == "true"
        raise FilterError(
            f"{name} is a boolean: compare it with true or false, "
            f"not {_quote(value)} (offset {offset})"
        )
    if op in _SUBSTRING:
        raise FilterError(
            f"{name} is a date-time: use eq, ne, gt, ge, lt, le or pr, "
            f"not {op} (offset {op_offset})"
        )
    if isinstance(value, bool):
        raise FilterError(
            f"{name} is a date-time: compare it with a string like "
            f'"2024-05-13T04:42:34Z" (offset {offset})'
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(
            f"{name} is a date-time: {_quote(value)} at offset {offset} is not one; "
            'write it as RFC 3339, e.g. "2024-05-13T04:42:34Z"'
        ) from None
    if parsed.utcoffset() is None:
        raise FilterError(
            f"{name}: {_quote(value)} at offset {offset} has no time zone; "
            "add Z for UTC or an offset like +02:00"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise FilterError(f"{name}: {_quote(value)} at offset {offset} is out of range") from None


class _FilterParser(_Parser[Filter]):
    __slots__ = ("resolver",)

    def __init__(self, tokens: list[Token], resolver: _Resolver, bounds: _Bounds) -> None:
        super().__init__(tokens, "filter", bounds)
        self.resolver = resolver

    def _and(self, left: Filter, right: Filter) -> Filter:
        return And(left, right)

    def _or(self, left: Filter, right: Filter) -> Filter:
        return Or(left, right)

    def _not(self, operand: Filter) -> Filter:
        return Not(operand)

    def _field(self, path: str, offset: int, inner: str | None) -> Field:
        if inner is None:
            return self.resolver.field(path, offset)
        return self.resolver.sub_field(inner, path, offset)

    def _present(self, path: str, offset: int, inner: str | None) -> Filter:
        return Present(self._field(path, offset, inner))

    def _compare(
        self,
        path: str,
        offset: int,
        *,
        op: CompareOp,
        op_offset: int,
        value: RawValue,
        value_offset: int,
        inner: str | None,
    ) -> Filter:
        field = self._field(path, offset, inner)
        return Comparison(field, op, _convert(field, op, op_offset, value, value_offset))

    def _enter(self, path: str, offset: int) -> str:
        return self.resolver.multi(path, offset)

    def _value_path(self, inner: str, node: Filter) -> Filter:
        return ValueFilter(inner, node)

    def _after_brackets(self, inner: str, token: Token) -> None:
        kind, text, offset = token
        if kind == _WORD and text.startswith("."):
            raise FilterError(
                f"{inner}[...]{text} at offset {offset}: a sub-attribute after brackets is only "
                "valid in a PATCH path; in a filter, compare it inside the brackets, e.g. "
                f'{inner}[type eq "work" and {text[1:]} eq "..."]'
            )


class _RawParser(_Parser[RawFilter]):
    __slots__ = ()

    def _and(self, left: RawFilter, right: RawFilter) -> RawFilter:
        return RawAnd(left, right)

    def _or(self, left: RawFilter, right: RawFilter) -> RawFilter:
        return RawOr(left, right)

    def _not(self, operand: RawFilter) -> RawFilter:
        return RawNot(operand)

    def _check(self, path: str, offset: int, inner: str | None) -> None:
        if inner is None:
            _split_path(path, offset, self.noun)
        elif _SUB_NAME.fullmatch(path) is None:
            raise FilterError(
                f"{_quote(path)} at offset {offset}: inside {inner}[...] name one of its "
                "sub-attributes (e.g. value or type)"
            )

    def _present(self, path: str, offset: int, inner: str | None) -> RawFilter:
        self._check(path, offset, inner)
        return RawPresent(path)

    def _compare(
        self,
        path: str,
        offset: int,
        *,
        op: CompareOp,
        op_offset: int,
        value: RawValue,
        value_offset: int,
        inner: str | None,
    ) -> RawFilter:
        self._check(path, offset, inner)
        # Without a schema only the literal's own type can be checked.
        if value is None and op not in ("eq", "ne"):
            raise FilterError(
                f"{op} null (offset {op_offset}): null can only be compared with eq or ne; "
                "use pr for presence"
            )
        if isinstance(value, bool) and op not in ("eq", "ne"):
            raise FilterError(
                f"{op} {str(value).lower()} (offset {op_offset}): true and false can only be "
                "compared with eq or ne"
            )
        return RawComparison(path, op, value)

    def _enter(self, path: str, offset: int) -> str:
        _, _, sub = _split_path(path, offset, self.noun)
        if sub is not None:
            raise FilterError(
                f"{_quote(path)}[...] at offset {offset}: brackets follow a multi-valued attribute "
                '(e.g. emails[type eq "work"]), not a sub-attribute'
            )
        return path

    def _value_path(self, inner: str, node: RawFilter) -> RawFilter:
        return RawValuePath(inner, node)


# -- public entry points -----------------------------------------------------------


def parse_filter(
    text: str,
    fields: Mapping[str, Field],
    *,
    role_urn: str,
    resource_urn: str,
    limits: ScimLimits | None = None,
) -> Filter:
    """Parse a SCIM ``filter`` and resolve it against ``fields``.

    ``resource_urn`` is the core schema URN of the resource searched (a prefix
    naming its core attributes); ``role_urn`` is the app's role extension, whose
    ``role`` attribute is the registry's ``role`` field. Raises ``FilterError``;
    with ``limits``, a filter over its length, nesting or terms raises
    :class:`~pbidentity.scim._limits.LimitExceeded` as soon as it is seen.
    """
    bounds = _Bounds(limits, scans=True)
    parser = _FilterParser(
        _tokenize(text, "filter", bounds),
        _Resolver(fields, role_urn, resource_urn, "filter on"),
        bounds,
    )
    node, _ = parser.parse_or(None)
    parser.expect_end()
    return node


def resolve_sort(
    text: str,
    fields: Mapping[str, Field],
    *,
    role_urn: str,
    resource_urn: str,
    limits: ScimLimits | None = None,
) -> Field:
    """Resolve a ``sortBy`` attribute to a single-valued field; raises ``FilterError``."""
    tokens = _tokenize(text, "sortBy", _Bounds(limits))
    if tokens[0][0] == _END:
        raise FilterError("sortBy is empty: name an attribute such as userName")
    kind, path, offset = tokens[0]
    if kind != _WORD or tokens[1][0] != _END:
        raise FilterError(
            "sortBy takes one attribute name, such as userName or meta.lastModified, "
            f"not {_quote(text.strip())}"
        )
    field = _Resolver(fields, role_urn, resource_urn, "sort by").field(path, offset)
    if field.multi is not None:
        raise FilterError(
            f"cannot sort by {_quote(path)}: {field.key} belongs to the multi-valued "
            f"{field.multi}; "
            "sort by a single-valued attribute such as userName or meta.lastModified"
        )
    return field


def parse_raw_filter(text: str) -> RawFilter:
    """Parse a filter without resolving it (names stay as written); raises ``FilterError``."""
    parser = _RawParser(_tokenize(text, "filter"), "filter")
    node, _ = parser.parse_or(None)
    parser.expect_end()
    return node


def parse_path(
    text: str, limits: ScimLimits | None = None, *, terms_before: int = 0
) -> AttributePath:
    """Parse a PATCH ``path`` (RFC 7644 §3.5.2 ``attrPath / valuePath [subAttr]``).

    Raises ``PathError``. With ``limits``, a path over its length or nesting,
    or a filter that brings the PATCH's terms (``terms_before`` already
    spent by its earlier paths) over ``filter_terms``, raises
    :class:`~pbidentity.scim._limits.LimitExceeded`.
    """
    plain = "[" not in text  # no filter: no terms spent, the same path whatever came before
    if plain and (known := _PLAIN_PATHS.get((text, limits))) is not None:
        return known
    try:
        parsed = _parse_path(
            text, _Bounds(limits, terms_before, subject="The PATCH (its path filters together)")
        )
    except FilterError as error:
        raise PathError(error.detail) from None
    if plain and len(_PLAIN_PATHS) < _PLAIN_PATHS_KEPT:
        _PLAIN_PATHS[(text, limits)] = parsed
    return parsed


# The paths without a filter that parsed (``active``, ``name.givenName``...):
# every PATCH names a few of the same ones. Bounded, as clients choose them.
_PLAIN_PATHS: dict[tuple[str, ScimLimits | None], AttributePath] = {}
_PLAIN_PATHS_KEPT = 1024


def _parse_path(text: str, bounds: _Bounds) -> AttributePath:
    tokens = _tokenize(text, "path", bounds)
    kind, word, offset = tokens[0]
    if kind == _END:
        raise FilterError("the path is empty")
    if kind != _WORD:
        raise FilterError(
            f"a path starts with an attribute name, found {_quote(word)} at offset {offset}"
        )
    urn, attribute, sub = _split_path(word, offset, "path")
    value_filter: RawFilter | None = None
    parser = _RawParser(tokens, "path", bounds)
    parser.i = 1
    if tokens[1][0] == _PUNCT and tokens[1][1] == "[":
        parser.i = 0
        node, _ = parser.attribute_expression(None)
        assert isinstance(node, RawValuePath)  # noqa: S101 - a word then '[' parses as a value path
        value_filter = node.filter
        kind, word, offset = tokens[parser.i]
        if kind == _WORD and word.startswith("."):
            if _SUB_NAME.fullmatch(word[1:]) is None:
                raise FilterError(
                    f"{_quote(word)} at offset {offset}: after the brackets expected '.' and one "
                    "sub-attribute name (e.g. .value)"
                )
            sub = word[1:]
            parser.i += 1
    token = tokens[parser.i]
    if token[0] != _END:
        raise FilterError(f"expected the end of the path, {parser.found(token)}")
    if urn is not None:
        low = urn.lower()
        urn = None if low in _CORE_URNS else ENTERPRISE_URN if low == _ENTERPRISE_URN_L else urn
    return AttributePath(urn, attribute, sub, value_filter, terms=parser.terms)


# -- evaluating a raw filter against a document --------------------------------------


def _get(mapping: Mapping[str, Any], name: str) -> tuple[str, Any] | None:
    if name in mapping:
        return name, mapping[name]
    low = name.lower()
    for key, value in mapping.items():
        if key.lower() == low:
            return key, value
    return None


def _lookup(element: Mapping[str, Any], path: str) -> list[tuple[str, Any]]:
    """Every value at ``path`` in ``element`` with its dotted name as the element spells it.

    Lists are flattened, so ``emails.value`` of a user yields one entry per email.
    An extension URN prefix selects the extension's object; a core URN is the element itself.
    """
    current: list[tuple[str, Any]] = [("", element)]
    if path[:4].lower() == "urn:":
        urn, _, path = path.rpartition(":")
        if urn.lower() not in _CORE_URNS:
            hit = _get(element, urn)
            current = [] if hit is None else [("", hit[1])]
    for name in path.split("."):
        found: list[tuple[str, Any]] = []
        for prefix, value in current:
            if not isinstance(value, Mapping):
                continue
            hit = _get(value, name)
            if hit is None:
                continue
            key, child = hit
            qualified = f"{prefix}.{key}" if prefix else key
            if isinstance(child, list):
                found.extend((qualified, item) for item in child)
            else:
                found.append((qualified, child))
        current = found
    return current


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        folded = value.lower()
        if folded in ("true", "false"):
            return folded == "true"
    return None


def _compare_one(op: CompareOp, actual: object, expected: str | bool, exact: bool) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        # Booleans compare with booleans and with Entra's "True"/"False" strings.
        left, right = _as_bool(actual), _as_bool(expected)
        return left is not None and left == right and op == "eq"
    assert isinstance(expected, str)  # noqa: S101 - bool handled above, None by the caller
    if isinstance(actual, str):
        a, e = (actual, expected) if exact else (fold(actual), fold(expected))
        if op == "eq":
            return a == e
        if op == "co":
            return e in a
        if op == "sw":
            return a.startswith(e)
        if op == "ew":
            return a.endswith(e)
        return _ordered(op, a, e)
    if isinstance(actual, int | float):
        # A number literal is kept as its text; it compares numerically with a number.
        try:
            number = float(expected)
        except ValueError:
            return False
        if op == "eq":
            return actual == number
        return op in _ORDERING and _ordered(op, actual, number)
    return False


def _ordered(op: CompareOp, a: Any, e: Any) -> bool:
    if op == "gt":
        return bool(a > e)
    if op == "ge":
        return bool(a >= e)
    if op == "lt":
        return bool(a < e)
    if op == "le":
        return bool(a <= e)
    return False


def raw_matches(
    raw: RawFilter, element: Mapping[str, Any], case_exact: Callable[[str], bool]
) -> bool:
    """Whether ``element`` (one value of a multi-valued attribute, or a document) satisfies ``raw``.

    Names match case-insensitively; a name holding a list matches if any item
    does. Strings compare folded (:func:`pbidentity.domain.fold`) unless
    ``case_exact`` returns true for the attribute's name as the element spells
    it (``value``, or ``name.givenName`` for a dotted path). ``ne`` is the
    negation of ``eq``, so an absent attribute is ``ne`` anything; ``eq null``
    holds when the attribute is absent or null.
    """
    if isinstance(raw, RawAnd):
        return raw_matches(raw.left, element, case_exact) and raw_matches(
            raw.right, element, case_exact
        )
    if isinstance(raw, RawOr):
        return raw_matches(raw.left, element, case_exact) or raw_matches(
            raw.right, element, case_exact
        )
    if isinstance(raw, RawNot):
        return not raw_matches(raw.operand, element, case_exact)
    if isinstance(raw, RawPresent):
        return any(value not in (None, "", [], {}) for _, value in _lookup(element, raw.attribute))
    if isinstance(raw, RawValuePath):
        return any(
            isinstance(item, Mapping) and raw_matches(raw.filter, item, case_exact)
            for _, item in _lookup(element, raw.attribute)
        )
    values = [(name, value) for name, value in _lookup(element, raw.attribute) if value is not None]
    expected = raw.value
    op = raw.op
    if expected is None:
        return (not values) if op == "eq" else bool(values)
    if op == "ne":
        return not any(
            _compare_one("eq", value, expected, case_exact(name)) for name, value in values
        )
    return any(_compare_one(op, value, expected, case_exact(name)) for name, value in values)
