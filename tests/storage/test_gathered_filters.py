"""Properties: gathering or-ed element tests (``gather_element_tests``) never changes an answer.

The service hands the storage ``emails[value co "a" or value co "b"]`` where
the client wrote ``emails.value co "a" or emails.value co "b"``, so that a
filter of many terms costs one pass over the elements. The evaluator and
every backend must select exactly what the filter as written selects.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings

from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import Comparison
from pbidentity.query import Filter
from pbidentity.query import Or
from pbidentity.query import Query
from pbidentity.query import ValueFilter
from pbidentity.query import gather_element_tests
from pbidentity.storage import Storage
from pbidentity.storage._evaluate import matches
from tests.storage.test_properties import TENANT
from tests.storage.test_properties import Scenario
from tests.storage.test_properties import backends  # noqa: F401 - the module's fixture
from tests.storage.test_properties import filters
from tests.storage.test_properties import group_views
from tests.storage.test_properties import member_views
from tests.storage.test_properties import scenarios
from tests.storage.test_properties import scratch


@settings(max_examples=100, deadline=None)
@given(scenario=scenarios(), filter_=filters(USER_FIELDS))
def test_gathered_member_filters_select_the_same_members(
    backends: list[Storage],  # noqa: F811 - the fixture imported above
    scenario: Scenario,
    filter_: Filter,
) -> None:
    """Members: the evaluator and every backend select with the gathered filter what it selects."""
    gathered = gather_element_tests(filter_)
    views = member_views(scenario)
    expected = sorted(view.member.id for view in views if matches(filter_, view))
    assert sorted(view.member.id for view in views if matches(gathered, view)) == expected
    for storage in backends:
        with scratch(storage, scenario) as tx:
            page = tx.query_members(TENANT, Query(filter=gathered))
            assert sorted(member.id for member in page.items) == expected


@settings(max_examples=60, deadline=None)
@given(scenario=scenarios(), filter_=filters(GROUP_FIELDS))
def test_gathered_group_filters_select_the_same_groups(
    backends: list[Storage],  # noqa: F811 - the fixture imported above
    scenario: Scenario,
    filter_: Filter,
) -> None:
    """Groups: the evaluator and every backend select with the gathered filter what it selects."""
    gathered = gather_element_tests(filter_)
    views = group_views(scenario)
    expected = sorted(view.group.id for view in views if matches(filter_, view))
    assert sorted(view.group.id for view in views if matches(gathered, view)) == expected
    for storage in backends:
        with scratch(storage, scenario) as tx:
            page = tx.query_groups(TENANT, Query(filter=gathered))
            assert sorted(group.id for group in page.items) == expected


def test_or_ed_element_tests_become_one_value_filter() -> None:
    """Or-ed tests of one attribute become one ``attr[...]``; other disjuncts stay as they are."""
    work = Comparison(USER_FIELDS["emails.value"], "co", "a")
    home = Comparison(USER_FIELDS["emails.value"], "co", "b")
    title = Comparison(USER_FIELDS["title"], "eq", "x")
    phone = Comparison(USER_FIELDS["phonenumbers.value"], "sw", "1")
    gathered = gather_element_tests(Or(Or(Or(work, title), home), phone))
    assert gathered == Or(
        Or(ValueFilter("emails", Or(work, home)), title), ValueFilter("phoneNumbers", phone)
    )
    absent = Comparison(USER_FIELDS["emails.value"], "eq", None)
    different = Comparison(USER_FIELDS["emails.value"], "ne", "a")
    indexed = Comparison(USER_FIELDS["emails.value"], "eq", "a")
    # Nothing to gather: the same disjuncts, in the same order.
    assert gather_element_tests(Or(absent, Or(different, indexed))) == Or(
        Or(absent, different), indexed
    )
