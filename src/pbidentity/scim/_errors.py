"""SCIM client errors that scim2-models has no class for, and the error response.

Client errors travel as scim2-models exceptions (``InvalidValueException``,
``UniquenessException``, ...) and render through their ``to_error()``, so the
body is exactly RFC 7644 §3.12. This module adds the few HTTP statuses the RFC
table lacks (405, 415, 429, 503) and builds the response value.
"""

from __future__ import annotations

import orjson
from scim2_models import SCIMException

from pbidentity.http import Response

SCIM_JSON = "application/scim+json"


class MethodNotAllowedException(SCIMException):
    """The endpoint exists but does not take this HTTP method."""

    status = 405
    _default_detail = "This endpoint does not support that HTTP method."

    def __init__(self, *, allow: tuple[str, ...], detail: str | None = None) -> None:
        super().__init__(detail=detail)
        self.allow = allow


class UnsupportedMediaTypeException(SCIMException):
    """The request body is not JSON."""

    status = 415
    _default_detail = "Send the body as application/scim+json or application/json."


class ServiceUnavailableException(SCIMException):
    """The database cannot be reached; the client should retry later."""

    status = 503
    _default_detail = "The service is temporarily unavailable; retry later."

    def __init__(self, *, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail=detail)
        self.retry_after = retry_after


class TooManyRequestsException(SCIMException):
    """The tenant sends more requests per second than the service allows."""

    status = 429
    _default_detail = "Too many requests; retry later."

    def __init__(self, *, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail=detail)
        self.retry_after = retry_after


def error_body(status: int, detail: str, scim_type: str | None = None) -> bytes:
    """An RFC 7644 §3.12 Error body (``status`` is a string, as the RFC's examples show)."""
    body: dict[str, str | list[str]] = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": str(status),
    }
    if scim_type:
        body["scimType"] = scim_type
    body["detail"] = detail
    return orjson.dumps(body)


def error_response(error: SCIMException) -> Response:
    """The response for a SCIM client error, with the headers its status calls for."""
    headers: list[tuple[str, str]] = [("Content-Type", SCIM_JSON)]
    if error.status == 401:
        headers.append(("WWW-Authenticate", 'Bearer realm="SCIM"'))
    if isinstance(error, MethodNotAllowedException):
        headers.append(("Allow", ", ".join(error.allow)))
    if isinstance(error, ServiceUnavailableException | TooManyRequestsException):
        # An integer number of seconds: Okta honours it as such and waits
        # five minutes for anything else.
        headers.append(("Retry-After", str(error.retry_after)))
    return Response(
        status=error.status,
        headers=tuple(headers),
        body=error_body(error.status, error.detail, error.scim_type or None),
    )
