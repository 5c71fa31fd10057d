"""The fuzzer's findings in areas changed on other branches, as strict expected failures.

Each test is the minimal failing example the fuzzer found, sent through the
core and over HTTP. They fail today (a 500); the fix belongs to the work
named in the reason. When it lands the test passes, ``strict`` turns that
into a failure, and the entry of ``owned_elsewhere`` in ``conftest.py`` that
lets the fuzzer step over this failure must go with the ``xfail`` mark.
"""

from __future__ import annotations

import pytest

from tests.fuzz.conftest import SAML
from tests.fuzz.conftest import SCIM
from tests.fuzz.conftest import Form
from tests.fuzz.conftest import Sent
from tests.fuzz.conftest import World
from tests.fuzz.conftest import owned_elsewhere


def statuses(world: World, drawn: Sent) -> list[int]:
    """The status of the request through the core and over HTTP."""
    sent = world.fill(drawn)
    answers = [world.send(sent, via) for via in ("core", "wsgi")]
    world.changed()
    return [answer.status for answer in answers]


@pytest.mark.xfail(strict=True, reason="request limits: a startIndex beyond 64 bits")
@pytest.mark.parametrize(
    "drawn",
    [
        Sent(
            "GET",
            f"{SCIM}/Users",
            (("startIndex", "10000000000000000000"),),
            (("Authorization", "Bearer {{token:acme}}"),),
        ),
        Sent(
            "POST",
            f"{SCIM}/Groups/.search",
            headers=(
                ("Authorization", "Bearer {{token:acme}}"),
                ("Content-Type", "application/scim+json"),
            ),
            body=b'{"startIndex": 9223372036854775808}',
        ),
    ],
    ids=["query", "search body"],
)
def test_a_start_index_beyond_64_bits_is_a_client_error(world: World, drawn: Sent) -> None:
    """A startIndex of 2**63 or more is a 400 naming the limit, not a database overflow."""
    assert owned_elsewhere(world.fill(drawn)) is not None
    assert all(status == 400 for status in statuses(world, drawn))


@pytest.mark.xfail(strict=True, reason="SAML ACS: malformed forms answered 400")
def test_an_acs_form_of_eleven_fields_is_a_client_error(world: World) -> None:
    """Eleven form fields (parse_qsl's max_num_fields is 10) are a 400, not a 500."""
    drawn = Sent(
        "POST",
        f"{SAML}/acme/acs",
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=Form(tuple(("SAMLResponse", "") for _ in range(11))),
    )
    assert owned_elsewhere(world.fill(drawn)) is not None
    assert all(400 <= status < 500 for status in statuses(world, drawn))
