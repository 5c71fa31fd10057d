"""The fuzzer: random requests to every SCIM and SAML endpoint, through the core and over HTTP.

Each property draws requests of one kind against the seeded world and sends
each one twice from the same state: through the core (a
:class:`~pbidentity.http.Router` of the SCIM and SAML services) and through
the WSGI adapter over real HTTP. Every answer must pass
:func:`tests.fuzz.conftest.check`: no 5xx, no traceback, nothing stored
changed by a refused request, and within the time bound.
"""

from __future__ import annotations

import pytest
from hypothesis import example
from hypothesis import given

from tests.fuzz import strategies as fuzz
from tests.fuzz.conftest import SAML
from tests.fuzz.conftest import SCIM
from tests.fuzz.conftest import Form
from tests.fuzz.conftest import Sent
from tests.fuzz.conftest import Signed
from tests.fuzz.conftest import World
from tests.fuzz.conftest import check
from tests.fuzz.conftest import fuzz_settings

# Huge headers, RelayStates and bodies are the point: their repr in a failing example is long.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


_AUTH = ("Authorization", "Bearer {{token:acme}}")
_JSON = ("Content-Type", "application/scim+json")


def exchange(world: World, drawn: Sent) -> None:
    """Send a drawn request through the core and over HTTP, check both answers."""
    sent = world.fill(drawn)
    for via in ("core", "wsgi"):
        check(world, sent, world.send(sent, via), via)


@fuzz_settings
@given(sent=fuzz.any_requests())
def test_any_request(world: World, sent: Sent) -> None:
    """Random methods, paths, headers, query strings and bodies: every answer is well behaved."""
    exchange(world, sent)


@fuzz_settings
@given(sent=fuzz.searches())
def test_lists_and_searches(world: World, sent: Sent) -> None:
    """Lists and .search with grammar filters, huge and negative paging, projections, cursors."""
    exchange(world, sent)


@fuzz_settings
@given(sent=fuzz.writes())
# A refused rename whose member change was written first: the 409 must undo it.
@example(
    sent=Sent(
        "PUT",
        f"{SCIM}/Groups/{{{{eng}}}}",
        headers=(_AUTH, _JSON),
        body=b'{"displayName": "Design", "members": [{"value": "{{bob}}"}]}',
    )
)
def test_creates_replaces_and_deletes(world: World, sent: Sent) -> None:
    """POST, PUT and DELETE of Users and Groups with schema-shaped bodies of random values."""
    exchange(world, sent)


@fuzz_settings
@given(sent=fuzz.patches())
# A stale If-Match on a change that would otherwise be made: a 412 that changes nothing.
@example(
    sent=Sent(
        "PATCH",
        f"{SCIM}/Groups/{{{{eng}}}}",
        headers=(_AUTH, _JSON, ("If-Match", 'W/"99"')),
        body=b'{"Operations": [{"op": "add", "path": "members", "value": [{"value": "{{bob}}"}]}]}',
    )
)
def test_patches(world: World, sent: Sent) -> None:
    """PATCH with grammar paths (attributes, sub-attributes, value filters, URN prefixes)."""
    exchange(world, sent)


@fuzz_settings
@given(sent=fuzz.logins())
def test_saml_logins_and_metadata(world: World, sent: Sent) -> None:
    """Sign-in starts with random RelayState, metadata reads, with any method."""
    exchange(world, sent)


@fuzz_settings
@given(sent=fuzz.acs_posts())
# A well-signed sign-in of a deactivated member: a 403 that records no sign-in.
@example(
    sent=Sent(
        "POST",
        f"{SAML}/acme/acs",
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=Form((("SAMLResponse", Signed("bob", "as signed", 0, 0)),)),
    )
)
def test_saml_acs_posts(world: World, sent: Sent) -> None:
    """ACS posts: signed responses mutated, random base64 and XML, odd and repeated fields."""
    exchange(world, sent)
