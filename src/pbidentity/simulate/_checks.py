"""How a step judges an answer, the way the IdP it plays would.

Each check returns what the next request needs (a resource, a list, a set of
member ids) or raises :class:`Failure`, whose message says what was expected
and what came back: the request line, the status and the start of the body.
Checks never send requests. SCIM attribute names are case-insensitive
(RFC 7643 §2.1), so every lookup of a field in an answer is too.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from pbidentity.simulate._http import Response

__all__ = [
    "ERROR_URN",
    "LIST_URN",
    "SCIM_MEDIA_TYPE",
    "Failure",
    "Judge",
    "Skip",
    "answered",
    "failure",
    "field",
    "json_value",
    "member_ids",
]

SCIM_MEDIA_TYPE = "application/scim+json"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"

Json = dict[str, Any]


class Failure(Exception):
    """The server did not answer what the IdP expects; the message says what and what came back."""


class Skip(Exception):
    """The step cannot apply to this server (or depends on a step that failed); it says why."""


def answered(response: Response) -> str:
    """``GET /Users/42 answered 404: {...}``: the evidence for a failure message."""
    return f"{response.method} {response.target} answered {response.status}: {response.excerpt()}"


def failure(expected: str, response: Response) -> Failure:
    """A failure that says what was expected, then what the server answered."""
    return Failure(f"expected {expected}; {answered(response)}")


def field(resource: Json, name: str) -> Any:
    """A top-level attribute's value, its name compared case-insensitively; ``None`` if absent."""
    if name in resource:
        return resource[name]
    wanted = name.lower()
    for key, value in resource.items():
        if key.lower() == wanted:
            return value
    return None


def member_ids(group: Json) -> list[str]:
    """The ``value`` of every element of a group's ``members``, in order, repeats kept."""
    members = field(group, "members") or []
    if not isinstance(members, list):
        return []
    return [str(field(m, "value")) for m in members if isinstance(m, dict)]


@attrs.frozen
class Judge:
    """The checks every answer of one IdP's conversation goes through.

    ``scim_media_type`` is Entra's rule: every answer with a body must be
    ``application/scim+json``, or its validator reports the endpoint broken.
    """

    scim_media_type: bool = False

    def status(self, response: Response, *expected: int, what: str = "") -> Response:
        """Check the status (one of ``expected``) and, for Entra, the Content-Type."""
        if response.status not in expected:
            wanted = " or ".join(str(code) for code in expected)
            raise failure(f"{wanted}{f' {what}' if what else ''}", response)
        if self.scim_media_type and response.body and response.media_type != SCIM_MEDIA_TYPE:
            shown = response.headers.get("content-type", "no Content-Type")
            raise Failure(
                f"expected Content-Type {SCIM_MEDIA_TYPE}; {response.method} {response.target} "
                f"answered {response.status} with {shown}: {response.excerpt()}"
            )
        return response

    def resource(self, response: Response, *expected: int, what: str = "") -> Json:
        """Check the status, then that the body is a resource with a non-empty string ``id``."""
        self.status(response, *expected, what=what)
        document = response.document
        if not isinstance(document, dict):
            raise failure("a JSON resource in the body", response)
        identifier = field(document, "id")
        if not isinstance(identifier, str) or not identifier:
            raise failure("a resource with an id (Okta: 'returned empty user')", response)
        return document

    def listing(self, response: Response, *, count: int | None = None) -> list[Json]:
        """Check a ``ListResponse`` (200, integer counters, at most ``count`` resources)."""
        self.status(response, 200, what="with a ListResponse")
        document = response.document
        if not isinstance(document, dict):
            raise failure("a JSON ListResponse", response)
        schemas = field(document, "schemas")
        if not isinstance(schemas, list) or LIST_URN not in schemas:
            raise failure(f"a ListResponse whose schemas list {LIST_URN}", response)
        total = field(document, "totalResults")
        if not isinstance(total, int) or isinstance(total, bool):
            raise failure("an integer totalResults", response)
        resources = field(document, "Resources")
        if resources is None and total == 0:
            return []
        if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
            raise failure("Resources as a list of objects", response)
        if count is not None and len(resources) > count:
            raise failure(f"at most count={count} resources, got {len(resources)}", response)
        for name in ("itemsPerPage", "startIndex"):
            value = field(document, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise failure(f"an integer {name}", response)
        return resources

    def error(self, response: Response, status: int) -> None:
        """Check an RFC 7644 §3.12 Error answer with ``status``."""
        self.status(response, status, what="with a SCIM Error body")
        document = response.document
        if not isinstance(document, dict):
            raise failure(f"a SCIM Error body with status {status}", response)
        schemas = field(document, "schemas")
        if not isinstance(schemas, list) or ERROR_URN not in schemas:
            raise failure(f"a SCIM Error body whose schemas list {ERROR_URN}", response)
        # RFC 7644 writes the status as a string; a number is a common, harmless variant.
        if str(field(document, "status")) != str(status):
            raise failure(f'a SCIM Error body with "status": "{status}"', response)

    def active(self, resource: Json, expected: bool, response: Response) -> None:
        """Check that ``active`` is the JSON boolean ``expected``."""
        value = field(resource, "active")
        if value is not expected:
            shown = "absent" if value is None else json_value(value)
            raise failure(f"active {json_value(expected)} (got {shown})", response)


def json_value(value: Any) -> str:
    """A value as JSON text, for messages: ``false``, ``"False"``, ``null``."""
    return json.dumps(value)
