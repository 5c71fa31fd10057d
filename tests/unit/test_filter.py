"""The SCIM filter, sortBy and PATCH path parser (RFC 7644 §3.4.2.2, §3.4.2.3, §3.5.2)."""

from __future__ import annotations

import time
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest

from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import And
from pbidentity.query import CompareOp
from pbidentity.query import Comparison
from pbidentity.query import Filter
from pbidentity.query import FilterValue
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Present
from pbidentity.query import ValueFilter
from pbidentity.scim._filter import MAX_DEPTH
from pbidentity.scim._filter import MAX_LENGTH
from pbidentity.scim._filter import MAX_NESTING
from pbidentity.scim._filter import AttributePath
from pbidentity.scim._filter import FilterError
from pbidentity.scim._filter import PathError
from pbidentity.scim._filter import RawAnd
from pbidentity.scim._filter import RawComparison
from pbidentity.scim._filter import RawFilter
from pbidentity.scim._filter import RawNot
from pbidentity.scim._filter import RawOr
from pbidentity.scim._filter import RawPresent
from pbidentity.scim._filter import RawValuePath
from pbidentity.scim._filter import parse_filter
from pbidentity.scim._filter import parse_path
from pbidentity.scim._filter import parse_raw_filter
from pbidentity.scim._filter import raw_matches
from pbidentity.scim._filter import resolve_sort

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ROLE_URN = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
OPS: tuple[CompareOp, ...] = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")


def user(text: str) -> Filter:
    """Parse a filter on Users."""
    return parse_filter(text, USER_FIELDS, role_urn=ROLE_URN, resource_urn=USER_URN)


def group(text: str) -> Filter:
    """Parse a filter on Groups."""
    return parse_filter(text, GROUP_FIELDS, role_urn=ROLE_URN, resource_urn=GROUP_URN)


def user_error(text: str) -> str:
    """The detail of the FilterError a filter on Users raises."""
    with pytest.raises(FilterError) as info:
        user(text)
    return info.value.detail


def path_error(text: str) -> str:
    """The detail of the PathError a PATCH path raises."""
    with pytest.raises(PathError) as info:
        parse_path(text)
    return info.value.detail


def cmp(key: str, op: CompareOp, value: FilterValue) -> Comparison:
    """The expected comparison on a User field."""
    return Comparison(USER_FIELDS[key.lower()], op, value)


A = cmp("userName", "eq", "a")
B = cmp("displayName", "eq", "b")
C = cmp("title", "eq", "c")
A_TEXT, B_TEXT, C_TEXT = 'userName eq "a"', 'displayName eq "b"', 'title eq "c"'


# -- operators and logic --------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_every_comparison_operator(op: CompareOp) -> None:
    """Each of the nine comparison operators parses to a Comparison with that operator."""
    assert user(f'title {op} "x"') == cmp("title", op, "x")


@pytest.mark.parametrize("written", ["EQ", "Eq", "eQ"])
def test_operators_are_case_insensitive(written: str) -> None:
    """``EQ`` means ``eq``: RFC 7644 operators are case-insensitive."""
    assert user(f'userName {written} "x"') == cmp("userName", "eq", "x")


@pytest.mark.parametrize("written", ["pr", "PR", "Pr"])
def test_present_takes_no_value(written: str) -> None:
    """``title pr`` is a Present test, whatever the case of ``pr``."""
    assert user(f"title {written}") == Present(USER_FIELDS["title"])


def test_and_binds_tighter_than_or() -> None:
    """``a or b and c`` parses as ``a or (b and c)``, and ``a and b or c`` as ``(a and b) or c``."""
    assert user(f"{A_TEXT} or {B_TEXT} and {C_TEXT}") == Or(A, And(B, C))
    assert user(f"{A_TEXT} and {B_TEXT} or {C_TEXT}") == Or(And(A, B), C)


def test_and_or_are_left_associative() -> None:
    """Chains of the same operator nest to the left."""
    assert user(f"{A_TEXT} or {B_TEXT} or {C_TEXT}") == Or(Or(A, B), C)
    assert user(f"{A_TEXT} and {B_TEXT} and {C_TEXT}") == And(And(A, B), C)


def test_parentheses_override_precedence() -> None:
    """``(a or b) and c`` keeps the grouping the parentheses ask for."""
    assert user(f"({A_TEXT} or {B_TEXT}) and {C_TEXT}") == And(Or(A, B), C)
    assert user(f"{A_TEXT} and ({B_TEXT} or {C_TEXT})") == And(A, Or(B, C))


def test_not_binds_tightest() -> None:
    """``not (a) and b`` is ``(not a) and b``; so is the paren-less ``not a and b``."""
    assert user(f"not ({A_TEXT}) and {B_TEXT}") == And(Not(A), B)
    assert user(f"not {A_TEXT} and {B_TEXT}") == And(Not(A), B)
    assert user(f"not({A_TEXT} or {B_TEXT})") == Not(Or(A, B))


def test_logical_keywords_are_case_insensitive() -> None:
    """``AND``, ``Or`` and ``NOT`` work like their lower-case forms."""
    assert user(f"{A_TEXT} AND {B_TEXT} Or NOT ({C_TEXT})") == Or(And(A, B), Not(C))


def test_whitespace_and_redundant_parentheses() -> None:
    """Any amount of whitespace between tokens and redundant parentheses change nothing."""
    assert user(f'  ((  userName   eq\t"a" ) )  or(({B_TEXT}))') == Or(A, B)


# -- value paths ----------------------------------------------------------------


def test_value_path_resolves_sub_attributes_of_its_attribute() -> None:
    """Inside ``emails[...]`` names are sub-attributes of emails, tested on the same element."""
    assert user('emails[type eq "work" and value co "@x"]') == ValueFilter(
        "emails", And(cmp("emails.type", "eq", "work"), cmp("emails.value", "co", "@x"))
    )


def test_value_path_names_are_case_insensitive_and_canonical() -> None:
    """``PHONENUMBERS[TYPE eq ...]`` resolves to the canonical ``phoneNumbers``."""
    assert user('PHONENUMBERS[TYPE eq "work"]') == ValueFilter(
        "phoneNumbers", cmp("phoneNumbers.type", "eq", "work")
    )


def test_value_path_combines_with_logic() -> None:
    """A value path is a term like any other: under not, and/or, with a core URN prefix."""
    inner = ValueFilter("emails", Not(cmp("emails.primary", "eq", True)))
    assert user(f"{A_TEXT} and not (emails[not (primary eq true)])") == And(A, Not(inner))
    assert user(f'{USER_URN}:emails[type eq "work"]') == ValueFilter(
        "emails", cmp("emails.type", "eq", "work")
    )


def test_value_path_on_group_members() -> None:
    """``members[value eq "id"]`` works on groups."""
    assert group('members[value eq "2819c223"]') == ValueFilter(
        "members", Comparison(GROUP_FIELDS["members.value"], "eq", "2819c223")
    )


def test_value_path_followed_by_sub_attribute_is_not_a_filter() -> None:
    """``emails[type eq "work"].value eq "x"`` is PATCH-path syntax; the error shows the fix."""
    detail = user_error('emails[type eq "work"].value eq "x"')
    assert "only valid in a PATCH path" in detail
    assert 'emails[type eq "work" and value eq' in detail
    assert "offset 22" in detail


def test_nested_brackets_are_rejected() -> None:
    """Brackets inside brackets are an error with the offset of the inner one."""
    detail = user_error('emails[type[value eq "x"] eq "y"]')
    assert detail.startswith("nested brackets at offset 11")


def test_brackets_need_a_multi_valued_attribute() -> None:
    """``userName[...]`` is refused, listing the attributes that do take brackets."""
    detail = user_error('userName[value eq "x"]')
    assert "only a multi-valued attribute takes a filter in brackets" in detail
    assert "emails" in detail


@pytest.mark.parametrize("inner", ["emails.type", "foo", f"{USER_URN}:type"])
def test_names_inside_brackets_must_be_sub_attributes(inner: str) -> None:
    """Inside ``emails[...]`` only emails' own searchable sub-attributes are accepted."""
    detail = user_error(f'emails[{inner} eq "x"]')
    assert "inside emails[...]" in detail
    assert "value, display, type, primary" in detail


def test_unclosed_bracket() -> None:
    """A missing ``]`` says which ``[`` is open."""
    detail = user_error('emails[type eq "x"')
    assert "']' to close the '[' at offset 6" in detail


# -- values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r'"a\\b"', "a\\b"),
        (r'"caf\u00e9"', "café"),
        (r'"\/"', "/"),
        (r'"\ud83d\ude00"', "\U0001f600"),
        ('"tab\there"', "tab\there"),
        ('""', ""),
        ('"with ) and ] inside"', "with ) and ] inside"),
    ],
)
def test_json_string_escapes(written: str, value: str) -> None:
    """String values are JSON strings: every JSON escape decodes, brackets inside are text."""
    assert user(f"userName eq {written}") == cmp("userName", "eq", value)


@pytest.mark.parametrize("written", [r'"\x41"', r'"\u12"', r'"\ud800"'])
def test_invalid_escapes(written: str) -> None:
    """A bad escape or a lone surrogate is reported with the string's offset."""
    assert user_error(f"userName eq {written}").startswith(
        "invalid escape in the string at offset 12"
    )


def test_unterminated_string() -> None:
    """A string without its closing quote is reported where it starts."""
    assert user_error('userName eq "abc').startswith("unterminated string starting at offset 12")
    assert "offset 12" in user_error(r'userName eq "abc\"')


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("1234abcd", "1234abcd"),
        ("6c5c4a3b-1f9e-4d6b-9b8e-0f0e2c8d7a11", "6c5c4a3b-1f9e-4d6b-9b8e-0f0e2c8d7a11"),
        ("12345", "12345"),
        ("1.50", "1.50"),
    ],
)
def test_unquoted_value_is_a_string(written: str, value: str) -> None:
    """Entra's unquoted ``externalId eq 1234abcd`` is the text as written, numbers included."""
    assert user(f"externalId eq {written}") == cmp("externalId", "eq", value)
    assert user(f"(externalId eq {written})") == cmp("externalId", "eq", value)


def test_single_quotes_are_refused() -> None:
    """``'x'`` is not a SCIM string; the error says to use double quotes."""
    assert "double quotes, not single quotes" in user_error("userName eq 'x'")


def test_unquoted_value_with_a_space_hints_at_quotes() -> None:
    """``userName eq jane doe`` points at ``doe`` and suggests quoting."""
    detail = user_error("userName eq jane doe")
    assert 'found "doe" at offset 17' in detail
    assert "double quotes" in detail


@pytest.mark.parametrize("literal", ["true", "false"])
def test_boolean_literal_on_a_string_field(literal: str) -> None:
    """``title eq true`` is a type mismatch: the error says to quote the value."""
    detail = user_error(f"title eq {literal}")
    assert detail.startswith(f'title is a string; put the value in double quotes ("{literal}")')


@pytest.mark.parametrize("op", ["eq", "ne"])
@pytest.mark.parametrize("literal", ["null", "NULL", "Null"])
def test_null_with_eq_and_ne(op: CompareOp, literal: str) -> None:
    """``eq null``/``ne null`` give a None value on any field type."""
    assert user(f"title {op} {literal}") == cmp("title", op, None)
    assert user(f"active {op} {literal}") == cmp("active", op, None)
    assert user(f"meta.created {op} {literal}") == cmp("meta.created", op, None)


def test_null_with_other_operators() -> None:
    """``gt null`` is refused, pointing at pr."""
    assert "null can only be compared with eq or ne" in user_error("title gt null")


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("true", True),
        ("FALSE", False),
        ('"True"', True),
        ('"False"', False),
        ('"true"', True),
        ('"false"', False),
        ("True", True),
    ],
)
def test_boolean_values_and_string_booleans(written: str, value: bool) -> None:
    """Boolean fields take true/false in any case and Entra's string booleans."""
    assert user(f"active eq {written}") == cmp("active", "eq", value)
    assert user(f"emails[primary ne {written}]") == ValueFilter(
        "emails", cmp("emails.primary", "ne", value)
    )


@pytest.mark.parametrize("op", ["co", "sw", "ew", "gt", "ge", "lt", "le"])
def test_booleans_take_only_eq_and_ne(op: str) -> None:
    """Ordering and substring operators on a boolean are refused."""
    assert user_error(f"active {op} true").startswith(
        f"active is a boolean: only eq, ne and pr apply, not {op} (offset 7)"
    )


@pytest.mark.parametrize("written", ['"yes"', "1", "0"])
def test_boolean_fields_refuse_other_values(written: str) -> None:
    """``active eq "yes"`` is refused: booleans compare with true or false."""
    assert "active is a boolean: compare it with true or false" in user_error(
        f"active eq {written}"
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ('"2011-05-13T04:42:34Z"', datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
        ('"2011-05-13T06:42:34+02:00"', datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
        ('"2011-05-13T04:42:34.125Z"', datetime(2011, 5, 13, 4, 42, 34, 125000, tzinfo=UTC)),
        ("2011-05-13T04:42:34Z", datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
    ],
)
def test_datetimes_become_aware_utc(written: str, expected: datetime) -> None:
    """Date-time values parse as RFC 3339 and come out as aware UTC datetimes."""
    node = user(f"meta.lastModified gt {written}")
    assert node == cmp("meta.lastModified", "gt", expected)
    assert isinstance(node, Comparison)
    assert isinstance(node.value, datetime)
    assert node.value.tzinfo is UTC


def test_datetime_errors() -> None:
    """Not a date, no time zone, a boolean, or a substring operator: each has its detail."""
    assert 'is not one; write it as RFC 3339, e.g. "2024-05-13T04:42:34Z"' in user_error(
        'meta.created gt "yesterday"'
    )
    assert "has no time zone; add Z for UTC" in user_error('meta.created gt "2011-05-13T04:42:34"')
    assert "compare it with a string like" in user_error("meta.created eq true")
    assert "use eq, ne, gt, ge, lt, le or pr, not co" in user_error('meta.created co "2011"')
    assert "out of range" in user_error('meta.created gt "0001-01-01T00:00:00+05:00"')


def test_keyword_where_a_value_belongs() -> None:
    """``userName eq and`` is missing its value; the error suggests quoting if it is one."""
    detail = user_error("userName eq and title pr")
    assert detail.startswith('expected a value after "userName eq"')
    assert 'quote it if "and" is the value' in detail


# -- attribute names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("USERNAME", "userName"),
        ("Emails.Value", "emails.value"),
        ("NAME.GIVENNAME", "name.givenName"),
        ("meta.lastModified", "meta.lastModified"),
        ("META.CREATED", "meta.created"),
        (f"{USER_URN}:userName", "userName"),
        (f"{USER_URN.upper()}:name.familyName", "name.familyName"),
    ],
)
def test_attribute_names_are_case_insensitive(written: str, key: str) -> None:
    """Names and the core URN prefix resolve case-insensitively to the canonical field."""
    assert user(f'{written} eq "2011-05-13T04:42:34Z"') == Comparison(
        USER_FIELDS[key.lower()],
        "eq",
        datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)
        if USER_FIELDS[key.lower()].type == "datetime"
        else "2011-05-13T04:42:34Z",
    )


@pytest.mark.parametrize(
    "written",
    [
        f"{ENTERPRISE_URN}:employeeNumber",
        f"{ENTERPRISE_URN.lower()}:EMPLOYEENUMBER",
        f"{ENTERPRISE_URN.upper()}:employeeNumber",
    ],
)
def test_enterprise_attributes_by_urn(written: str) -> None:
    """Enterprise attributes resolve from their full URN path, in any case."""
    assert user(f'{written} eq "42"') == cmp(f"{ENTERPRISE_URN}:employeeNumber", "eq", "42")


def test_enterprise_manager_value() -> None:
    """The enterprise manager's value is a searchable sub-attribute."""
    assert user(f'{ENTERPRISE_URN}:manager.value eq "26118915"') == cmp(
        f"{ENTERPRISE_URN}:manager.value", "eq", "26118915"
    )


def test_enterprise_attribute_without_urn_suggests_it() -> None:
    """A bare ``employeeNumber`` is refused with the full name to use instead."""
    assert user_error('employeeNumber eq "1"') == (
        'cannot filter on "employeeNumber" (offset 0): '
        f"did you mean {ENTERPRISE_URN}:employeeNumber?"
    )


@pytest.mark.parametrize("written", [f"{ROLE_URN}:role", f"{ROLE_URN.upper()}:ROLE", "role"])
def test_role_extension(written: str) -> None:
    """The app's role resolves from ``<role_urn>:role`` (any case) and from a bare ``role``."""
    assert user(f'{written} eq "maker"') == cmp("role", "eq", "maker")


def test_role_is_not_a_core_attribute() -> None:
    """``<core URN>:role`` is not the role extension; the error gives the right name."""
    detail = user_error(f'{USER_URN}:role eq "x"')
    assert detail.endswith(f"the role is an extension attribute: write {ROLE_URN}:role")


def test_role_urn_with_another_attribute() -> None:
    """The role extension has only ``role``."""
    assert "not an attribute of User" in user_error(f'{ROLE_URN}:level eq "x"')


def test_multi_valued_attribute_alone_means_its_value() -> None:
    """``emails co "@x"``, ``emails pr`` and ``members eq "id"`` target ``.value``."""
    assert user('emails co "@x"') == cmp("emails.value", "co", "@x")
    assert user("EMAILS pr") == Present(USER_FIELDS["emails.value"])
    assert group('members eq "2819c223"') == Comparison(
        GROUP_FIELDS["members.value"], "eq", "2819c223"
    )


def test_group_fields() -> None:
    """Groups search their own registry, with the Group core URN as prefix."""
    assert group(f'{GROUP_URN}:displayName eq "Admins"') == Comparison(
        GROUP_FIELDS["displayname"], "eq", "Admins"
    )
    with pytest.raises(FilterError) as info:
        group('userName eq "x"')
    assert "not an attribute of Group that this service can search" in info.value.detail
    with pytest.raises(FilterError):
        group(f'{USER_URN}:displayName eq "x"')


def test_unknown_attribute_lists_what_can_be_searched() -> None:
    """An unknown name is refused (never ignored), naming it and listing searchable ones."""
    detail = user_error('nickname2 eq "x"')
    assert detail.startswith(
        'cannot filter on "nickname2" (offset 0): not an attribute of User that this service '
        "can search. Searchable: id, externalId, userName,"
    )
    assert "name.{formatted, familyName, givenName" in detail
    assert f"{ROLE_URN}:role" in detail
    assert f"{ENTERPRISE_URN}:{{employeeNumber, costCenter" in detail


def test_unknown_attribute_offset() -> None:
    """The offset points at the unknown name, not at the start of the filter."""
    assert 'cannot filter on "password" (offset 20)' in user_error(
        'userName eq "x" and password pr'
    )


def test_complex_attribute_needs_a_sub_attribute() -> None:
    """``name eq "x"`` is refused, listing name's sub-attributes."""
    assert user_error('name eq "x"').endswith(
        "it is a complex attribute; name one of its sub-attributes: formatted, familyName, "
        "givenName, middleName, honorificPrefix, honorificSuffix"
    )


def test_unknown_sub_attribute() -> None:
    """``emails.foo`` names the bad sub-attribute and the good ones."""
    assert user_error('emails.foo eq "x"').endswith(
        'it has no searchable sub-attribute "foo"; use one of value, display, type, primary'
    )


def test_unsearchable_extension_urn() -> None:
    """An extension the registry does not know is refused like any unknown name."""
    detail = user_error('urn:ietf:params:scim:schemas:extension:other:2.0:User:x eq "1"')
    assert "not an attribute of User" in detail


# -- structure errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "the filter is empty"),
        ("   ", "the filter is empty"),
        (
            "userName",
            "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) after "
            '"userName", found the end of the filter (offset 8)',
        ),
        (
            'userName equals "x"',
            "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) after "
            '"userName", found "equals" at offset 9',
        ),
        (
            "userName eq",
            'expected a value after "userName eq", found the end of the filter (offset 11)',
        ),
        ("userName eq )", 'expected a value after "userName eq", found ")" at offset 12'),
        (
            "and userName pr",
            "expected an attribute name, '(' or 'not', found \"and\" at offset 0",
        ),
        (
            "userName pr and",
            "expected an attribute name, '(' or 'not', found the end of the filter (offset 15)",
        ),
        ("not", "expected an attribute name, '(' or 'not', found the end of the filter (offset 3)"),
        (
            "(userName pr",
            "expected 'and', 'or' or ')' to close the '(' at offset 0, found the end of the filter "
            "(offset 12)",
        ),
        ("userName pr)", "unmatched ')' at offset 11"),
        ("userName pr ]", "unmatched ']' at offset 12"),
        (
            'userName eq "x" title pr',
            "expected 'and', 'or' or the end of the filter, found \"title\" at offset 16",
        ),
        (
            '"x" eq userName',
            "expected an attribute name, '(' or 'not', found \"\\\"x\\\"\" at offset 0",
        ),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, detail: str) -> None:
    """Each malformed filter gets a detail naming what was found, where, and what was expected."""
    assert user_error(text) == detail


def test_length_limit() -> None:
    """A filter longer than the limit is refused before it is tokenised."""
    text = "userName eq " + '"' + "x" * MAX_LENGTH + '"'
    assert user_error(text).startswith(f"the filter is {len(text)} characters long; the limit is")


def test_nesting_limit() -> None:
    """Parentheses nested past the limit are refused; at the limit they parse."""
    assert user("(" * MAX_NESTING + A_TEXT + ")" * MAX_NESTING) == A
    too_deep = "(" * (MAX_NESTING + 1) + A_TEXT + ")" * (MAX_NESTING + 1)
    assert f"more than {MAX_NESTING} levels deep (at offset {MAX_NESTING})" in user_error(too_deep)
    assert "more than" in user_error("not " * (MAX_NESTING + 1) + A_TEXT)


def test_trailing_whitespace_is_linear() -> None:
    """A filter padded to the limit with spaces parses at once, not in quadratic time."""
    start = time.perf_counter()
    assert user("title pr" + " " * (MAX_LENGTH - 8)) == Present(USER_FIELDS["title"])
    assert time.perf_counter() - start < 0.5


def test_depth_limit() -> None:
    """A chain of more than MAX_DEPTH ``or`` terms is refused: later tree walks cannot overflow."""
    user(" or ".join([A_TEXT] * MAX_DEPTH))
    detail = user_error(" or ".join([A_TEXT] * (MAX_DEPTH + 1)))
    assert f"more than {MAX_DEPTH} levels of and/or/not deep" in detail


# -- sortBy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("userName", "userName"),
        ("  META.LASTMODIFIED ", "meta.lastModified"),
        ("name.familyName", "name.familyName"),
        (f"{USER_URN}:displayName", "displayName"),
        (f"{ENTERPRISE_URN}:department", f"{ENTERPRISE_URN}:department"),
        (f"{ROLE_URN}:role", "role"),
    ],
)
def test_sort_resolves_single_valued_fields(written: str, key: str) -> None:
    """The sortBy attribute resolves like a filter's, case-insensitively, URNs included."""
    assert (
        resolve_sort(written, USER_FIELDS, role_urn=ROLE_URN, resource_urn=USER_URN)
        is USER_FIELDS[key.lower()]
    )


@pytest.mark.parametrize(
    ("written", "detail"),
    [
        ("emails", 'cannot sort by "emails": emails.value belongs to the multi-valued emails'),
        ("emails.type", 'cannot sort by "emails.type": emails.type belongs to the multi-valued'),
        ("nickname2", 'cannot sort by "nickname2" (offset 0): not an attribute of User'),
        ("", "sortBy is empty"),
        ("userName displayName", "sortBy takes one attribute name"),
        ('emails[type eq "work"]', "sortBy takes one attribute name"),
    ],
)
def test_sort_errors(written: str, detail: str) -> None:
    """Multi-valued, unknown or malformed sortBy values are FilterErrors with a detail."""
    with pytest.raises(FilterError) as info:
        resolve_sort(written, USER_FIELDS, role_urn=ROLE_URN, resource_urn=USER_URN)
    assert info.value.detail.startswith(detail)


# -- PATCH paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'members[value eq "2819c223"]',
            AttributePath(None, "members", None, RawComparison("value", "eq", "2819c223")),
        ),
        (
            'emails[type eq "work"].value',
            AttributePath(None, "emails", "value", RawComparison("type", "eq", "work")),
        ),
        ("name.givenName", AttributePath(None, "name", "givenName")),
        ("members", AttributePath(None, "members")),
        ("NAME.GIVENNAME", AttributePath(None, "NAME", "GIVENNAME")),
        (
            f"{ENTERPRISE_URN}:manager.value",
            AttributePath(ENTERPRISE_URN, "manager", "value"),
        ),
        (
            f"{ENTERPRISE_URN.lower()}:employeeNumber",
            AttributePath(ENTERPRISE_URN, "employeeNumber"),
        ),
        (f"{USER_URN}:userName", AttributePath(None, "userName")),
        (f"{GROUP_URN.upper()}:displayName", AttributePath(None, "displayName")),
        (f"{ROLE_URN}:role", AttributePath(ROLE_URN, "role")),
        ("members.$ref", AttributePath(None, "members", "$ref")),
        (
            'emails[type eq "work" and not (primary eq true)]',
            AttributePath(
                None,
                "emails",
                None,
                RawAnd(
                    RawComparison("type", "eq", "work"),
                    RawNot(RawComparison("primary", "eq", True)),
                ),
            ),
        ),
        (
            '  emails [ type eq "work" ] .display ',
            AttributePath(None, "emails", "display", RawComparison("type", "eq", "work")),
        ),
    ],
)
def test_patch_paths(text: str, expected: AttributePath) -> None:
    """PATCH paths split into URN (canonical, None for core), attribute, sub and filter."""
    assert parse_path(text) == expected


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "the path is empty"),
        ("name.givenName.x", '"name.givenName.x" at offset 0 is not an attribute path'),
        ("1abc", '"1abc" at offset 0 is not an attribute path'),
        (ENTERPRISE_URN, "names a whole schema, not an attribute"),
        ('name.givenName[value eq "x"]', "brackets follow a multi-valued attribute"),
        ('emails[type eq "work"]value', 'expected the end of the path, found "value" at offset 22'),
        ('emails[type eq "work"].value.x', "after the brackets expected '.' and one sub-attribute"),
        ('emails[type[x eq "y"]]', "nested brackets at offset 11"),
        ('emails[name.givenName eq "x"]', "inside emails[...] name one of its sub-attributes"),
        ('emails[type eq "work"', "']' to close the '[' at offset 6"),
        ('emails[type eq "work', "unterminated string starting at offset 15"),
        ("userName eq", 'expected the end of the path, found "eq" at offset 9'),
        ('"userName"', "a path starts with an attribute name"),
        ("emails[]", "expected an attribute name, '(' or 'not', found \"]\" at offset 7"),
    ],
)
def test_patch_path_errors(text: str, detail: str) -> None:
    """Malformed PATCH paths raise PathError (not FilterError) with a detail."""
    assert detail in path_error(text)


def test_path_error_is_not_a_filter_error() -> None:
    """The SCIM layer maps the two to different scimTypes, so they must not be confused."""
    assert not issubclass(PathError, FilterError)
    assert not issubclass(FilterError, PathError)


# -- raw filters --------------------------------------------------------------------------


def test_raw_filter_keeps_names_and_literal_types() -> None:
    """Names stay as written; numbers and barewords are text, true/false bool, null None."""
    assert parse_raw_filter(
        'Type EQ "work" or value eq 42 or display eq abc or primary eq TRUE or x eq null'
    ) == RawOr(
        RawOr(
            RawOr(
                RawOr(RawComparison("Type", "eq", "work"), RawComparison("value", "eq", "42")),
                RawComparison("display", "eq", "abc"),
            ),
            RawComparison("primary", "eq", True),
        ),
        RawComparison("x", "eq", None),
    )


def test_raw_filter_paths_and_value_paths() -> None:
    """Dotted names, URN paths and value paths are kept as written."""
    assert parse_raw_filter(
        f'name.givenName pr and {ENTERPRISE_URN}:employeeNumber eq "1" and emails[type eq "w"]'
    ) == RawAnd(
        RawAnd(
            RawPresent("name.givenName"),
            RawComparison(f"{ENTERPRISE_URN}:employeeNumber", "eq", "1"),
        ),
        RawValuePath("emails", RawComparison("type", "eq", "w")),
    )


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("value gt true", "true and false can only be compared with eq or ne"),
        ("value co null", "null can only be compared with eq or ne"),
        ('a..b eq "x"', "is not an attribute path"),
        ('value eq "x" )', "unmatched ')'"),
    ],
)
def test_raw_filter_errors(text: str, detail: str) -> None:
    """Without a schema the raw parser still checks syntax and literal types."""
    with pytest.raises(FilterError) as info:
        parse_raw_filter(text)
    assert detail in info.value.detail


# -- raw_matches --------------------------------------------------------------------------

WORK_EMAIL: dict[str, Any] = {"type": "Work", "value": "Jane@Example.com", "primary": True}


def never_exact(_name: str) -> bool:
    """Every sub-attribute compares case-insensitively."""
    return False


def matches(text: str, element: dict[str, Any], case_exact: Any = never_exact) -> bool:
    """Parse a raw filter and evaluate it against ``element``."""
    raw: RawFilter = parse_raw_filter(text)
    return raw_matches(raw, element, case_exact)


def test_raw_matches_the_brief_example() -> None:
    """``type eq "work" and primary eq true`` matches a primary ``Work`` email."""
    assert matches('type eq "work" and primary eq true', WORK_EMAIL)
    assert not matches('type eq "work" and primary eq false', WORK_EMAIL)


def test_raw_matches_names_case_insensitively() -> None:
    """``TYPE`` finds the element's ``type``."""
    assert matches('TYPE eq "WORK"', WORK_EMAIL)


def test_raw_matches_respects_case_exact() -> None:
    """Strings fold unless case_exact says so for that sub-attribute, asked by its document name."""
    asked: list[str] = []

    def exact_value(name: str) -> bool:
        asked.append(name)
        return name == "value"

    assert not matches('VALUE eq "jane@example.com"', WORK_EMAIL, exact_value)
    assert matches('value eq "Jane@Example.com"', WORK_EMAIL, exact_value)
    assert matches('type eq "work"', WORK_EMAIL, exact_value)
    assert asked == ["value", "value", "type"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('value co "@example"', True),
        ('value sw "jane"', True),
        ('value ew ".COM"', True),
        ('value ew "org"', False),
        ('value gt "a"', True),
        ('value ge "jane@example.com"', True),
        ('value lt "a"', False),
        ('value le "jane@example.com"', True),
        ('value ne "x"', True),
        ('value ne "jane@example.com"', False),
        ('display ne "x"', True),
        ("display eq null", True),
        ("value eq null", False),
        ("value ne null", True),
        ("value pr", True),
        ("display pr", False),
        ('not (type eq "work")', False),
        ('type eq "home" or primary eq "True"', True),
    ],
)
def test_raw_matches_operators(text: str, expected: bool) -> None:
    """Every operator against one element; ne is the negation of eq, so absent is ne anything."""
    assert matches(text, WORK_EMAIL) is expected


def test_raw_matches_string_booleans_both_ways() -> None:
    """Entra's ``"True"`` in the element or the filter compares as a boolean."""
    assert matches("primary eq true", {"primary": "True"})
    assert matches('primary eq "false"', {"primary": False})
    assert not matches('primary eq "maybe"', {"primary": False})
    assert not matches("primary gt 1", {"primary": True})


def test_raw_matches_present_ignores_empty_values() -> None:
    """``pr`` is false for null, empty strings and empty lists."""
    empties: tuple[object, ...] = (None, "", [], {})
    for empty in empties:
        assert not matches("display pr", {"display": empty})


def test_raw_matches_numbers() -> None:
    """A number literal compares numerically with a numeric element value."""
    assert matches("value gt 5", {"value": 7})
    assert matches("value eq 7.0", {"value": 7})
    assert not matches("value eq abc", {"value": 7})
    assert not matches('value co "7"', {"value": 7})


def test_raw_matches_paths_into_documents() -> None:
    """Dotted paths, extension URNs, core URNs and value paths navigate a whole document."""
    doc: dict[str, Any] = {
        "userName": "jane",
        "name": {"givenName": "Jane"},
        "emails": [{"type": "home", "value": "a@x"}, WORK_EMAIL],
        ENTERPRISE_URN: {"employeeNumber": "42"},
    }
    assert matches('name.givenName eq "jane"', doc)
    assert matches('emails.type eq "home"', doc)
    assert matches(f'{ENTERPRISE_URN.lower()}:employeeNumber eq "42"', doc)
    assert matches(f'{USER_URN}:userName eq "JANE"', doc)
    assert not matches(f'{ROLE_URN}:role eq "x"', doc)
    assert matches('emails[type eq "work" and primary eq true]', doc)
    assert not matches('emails[type eq "home" and primary eq true]', doc)
