"""The SCIM 2.0 protocol layer (RFC 7643, RFC 7644): the service core and its configuration.

The core is framework-agnostic: :meth:`ScimService.handle` takes a
:class:`~pbidentity.http.Request` and returns a :class:`~pbidentity.http.Response`.
Adapters (:mod:`pbidentity.wsgi`, ...) connect it to a server.
"""

from __future__ import annotations

from pbidentity.scim._activity import DEFAULT_ACTIVITY_RETENTION
from pbidentity.scim._activity import ActivityConfig
from pbidentity.scim._activity import ActivityRecorder
from pbidentity.scim._limits import RateLimit
from pbidentity.scim._limits import ScimLimits
from pbidentity.scim._service import DEFAULT_ROLE_URN
from pbidentity.scim._service import ScimConfig
from pbidentity.scim._service import ScimService

__all__ = [
    "DEFAULT_ACTIVITY_RETENTION",
    "DEFAULT_ROLE_URN",
    "ActivityConfig",
    "ActivityRecorder",
    "RateLimit",
    "ScimConfig",
    "ScimLimits",
    "ScimService",
]
