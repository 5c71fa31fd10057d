"""SAML 2.0 sign-in: metadata import and validation, staged activation, a hardened ACS.

python3-saml (the ``saml`` extra) does the XML signature work; this package
adds what it leaves to the app: a safe metadata fetcher, a validator that
speaks to the admin, "Save & authorize" with rollback, exact URL checks,
single-use requests and a replay cache shared through storage. Importing it
does not import python3-saml, lxml, xmlsec or cryptography; they load when
first needed.

The host app builds one :class:`SamlService` on its storage, serves its
:meth:`~SamlService.handle` under ``/saml`` (any adapter), calls its typed
methods from its settings pages, and starts a session when it hands it a
:class:`SignIn`: at the sign-in's finish step, in the browser that started
it (login CSRF is closed here, not left to each app).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from pbidentity.saml._config import SamlConfig
from pbidentity.saml._config import local_dev_hosts
from pbidentity.saml._fetch import MetadataFetchError
from pbidentity.saml._outcomes import Authorized
from pbidentity.saml._outcomes import ResultHandler
from pbidentity.saml._outcomes import SamlConnections
from pbidentity.saml._outcomes import SaveResult
from pbidentity.saml._outcomes import SignIn
from pbidentity.saml._outcomes import SignInFailure
from pbidentity.saml._outcomes import SignInOutcome
from pbidentity.saml._pages import default_result_page
from pbidentity.saml._protocol import AuthnRedirect
from pbidentity.saml._service import SamlService
from pbidentity.saml._types import EMAIL_NAMEID
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report
from pbidentity.saml._types import ServiceProvider
from pbidentity.saml._types import Severity

if TYPE_CHECKING:
    from pbidentity.saml._keys import SpKey
    from pbidentity.saml._keys import SpKeys
    from pbidentity.saml._keys import generate_sp_key

#: Names loaded on first use: they need cryptography (the saml extra).
_LAZY = {"SpKey", "SpKeys", "generate_sp_key"}

__all__ = [
    "EMAIL_NAMEID",
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
    "SignInFailure",
    "SignInOutcome",
    "SpKey",
    "SpKeys",
    "default_result_page",
    "generate_sp_key",
    "local_dev_hosts",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from pbidentity.saml import _keys

        return getattr(_keys, name)
    raise AttributeError(f"module 'pbidentity.saml' has no attribute {name!r}")
