"""SAML 2.0 sign-in: metadata import and validation, staged activation, a hardened ACS.

python3-saml (the ``saml`` extra) does the XML signature work; this package
adds what it leaves to the app: a safe metadata fetcher, a validator that
speaks to the admin, "Save & authorize" with rollback, exact URL checks,
single-use requests and a replay cache shared through storage. Importing it
does not import python3-saml, lxml or xmlsec; they load when first needed.

The host app builds one :class:`SamlService` on its storage, serves its
:meth:`~SamlService.handle` under ``/saml`` (any adapter), calls its typed
methods from its settings pages, and starts a session when it hands it a
:class:`SignIn`: at the sign-in's finish step, in the browser that started
it (login CSRF is closed here, not left to each app).

:func:`verify_response` is the ACS's verification on its own, for a tool
that checks a SAMLResponse it holds against an SP and an IdP (the
benchmarks time it); :func:`settings_dict` is the python3-saml settings it
spells out. Both import python3-saml when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING
from typing import Any

from pbidentity.saml._fetch import MetadataFetchError
from pbidentity.saml._protocol import AuthnRedirect
from pbidentity.saml._service import Authorized
from pbidentity.saml._service import ResultHandler
from pbidentity.saml._service import SamlConfig
from pbidentity.saml._service import SamlConnections
from pbidentity.saml._service import SamlService
from pbidentity.saml._service import SaveResult
from pbidentity.saml._service import SignIn
from pbidentity.saml._service import SignInFailure
from pbidentity.saml._service import SignInOutcome
from pbidentity.saml._service import default_result_page
from pbidentity.saml._service import local_dev_hosts
from pbidentity.saml._types import EMAIL_NAMEID
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report
from pbidentity.saml._types import ServiceProvider
from pbidentity.saml._types import Severity

if TYPE_CHECKING:
    from pbidentity.saml._response import Assertion
    from pbidentity.saml._response import SignInError
    from pbidentity.saml._response import settings_dict
    from pbidentity.saml._response import verify_response

__all__ = [
    "EMAIL_NAMEID",
    "Assertion",
    "AuthnRedirect",
    "Authorized",
    "Finding",
    "MetadataFetchError",
    "Report",
    "ResultHandler",
    "SamlConfig",
    "SamlConnections",
    "SamlService",
    "SaveResult",
    "ServiceProvider",
    "Severity",
    "SignIn",
    "SignInError",
    "SignInFailure",
    "SignInOutcome",
    "default_result_page",
    "local_dev_hosts",
    "settings_dict",
    "verify_response",
]

#: The names that need python3-saml: imported on first use (PEP 562), so
#: that importing this package stays free of the ``saml`` extra.
_VERIFY = frozenset({"Assertion", "SignInError", "settings_dict", "verify_response"})


def __getattr__(name: str) -> Any:
    """``verify_response`` and its companions, imported with python3-saml when first asked for."""
    if name in _VERIFY:
        return getattr(importlib.import_module("pbidentity.saml._response"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
