"""The fuzzer's findings, kept as plain tests of the minimal failing examples.

Each one was a 500 when the fuzzer found it; each is sent through the core and
over HTTP and must now be answered as a client's request.
"""

from __future__ import annotations

import pytest

from tests.fuzz.conftest import SAML
from tests.fuzz.conftest import SCIM
from tests.fuzz.conftest import Form
from tests.fuzz.conftest import Sent
from tests.fuzz.conftest import World


def statuses(world: World, drawn: Sent) -> list[int]:
    """The status of the request through the core and over HTTP."""
    sent = world.fill(drawn)
    answers = [world.send(sent, via) for via in ("core", "wsgi")]
    world.changed()
    return [answer.status for answer in answers]


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
            "GET",
            f"{SCIM}/Users",
            (("startIndex", "9223372036854775807"),),
            (("Authorization", "Bearer {{token:acme}}"),),
        ),
        Sent(
            "POST",
            f"{SCIM}/Groups/.search",
            headers=(
                ("Authorization", "Bearer {{token:acme}}"),
                ("Content-Type", "application/scim+json"),
            ),
            body=b'{"startIndex": 18446744073709551616}',
        ),
    ],
    ids=["beyond 64 bits", "bigint's largest", "search body"],
)
def test_a_start_index_of_any_size_is_an_empty_page(world: World, drawn: Sent) -> None:
    """A startIndex past the last result, however large, is clamped: 200 with an empty page."""
    assert statuses(world, drawn) == [200, 200]


def test_an_acs_form_of_eleven_fields_is_a_client_error(world: World) -> None:
    """Eleven form fields (parse_qsl's max_num_fields is 10) are a 400, not a 500."""
    drawn = Sent(
        "POST",
        f"{SAML}/acme/acs",
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=Form(tuple(("SAMLResponse", "") for _ in range(11))),
    )
    assert statuses(world, drawn) == [400, 400]
