"""A tenant's policy for its members: role mapping, linking and deprovisioning.

It is kept with the tenant as a JSON document (``Tenant.settings``), so that
every app instance reading the tenant reads the same policy in the same
lookup; :meth:`TenantPolicy.of` turns it into typed values.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any
from typing import Literal

import attrs
import cattrs
import orjson

from pbidentity._converter import converter
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConfigurationError
from pbidentity.linking import LinkPolicy
from pbidentity.roles import RolePolicy
from pbidentity.roles import RoleSet

__all__ = ["Deprovisioning", "TenantPolicy", "policy_from_mapping"]

#: What a SCIM DELETE of a user does: remove the member (RFC 7644), or only
#: deactivate it, so that its work, memberships and role stay and a later
#: re-assignment brings the same member back.
Deprovisioning = Literal["delete", "deactivate"]


@attrs.frozen(kw_only=True)
class TenantPolicy:
    """Everything a tenant decides about how its members are provisioned."""

    roles: RolePolicy = attrs.field(factory=RolePolicy)
    linking: LinkPolicy = attrs.field(factory=LinkPolicy)
    on_delete: Deprovisioning = "delete"

    @classmethod
    def of(cls, tenant: Tenant) -> TenantPolicy:
        """The tenant's policy (the default one for a tenant that never set it)."""
        settings = tenant.settings
        if not settings:
            return _DEFAULT
        cached = _BY_SETTINGS.get(id(settings))
        if cached is not None and cached[0] is settings:
            return cached[1]
        policy = _parse(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS))
        if len(_BY_SETTINGS) >= _PARSED_CACHE_SIZE:
            _BY_SETTINGS.clear()
        # The entry holds the document, so its id() cannot be reused meanwhile.
        _BY_SETTINGS[id(settings)] = (settings, policy)
        return policy

    def settings(self) -> dict[str, Any]:
        """The JSON document to keep in ``Tenant.settings``."""
        document: dict[str, Any] = converter.unstructure(self)
        return document

    @property
    def fingerprint(self) -> str:
        """A short digest of the policy: equal policies have equal fingerprints.

        A form that previews a new policy carries the fingerprint of the one
        it replaces, so that applying refuses if someone changed it meanwhile.
        """
        document = orjson.dumps(self.settings(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(document).hexdigest()[:20]

    def check(self, roles: RoleSet) -> TenantPolicy:
        """The policy with role names in the app's spelling; ``ConfigurationError`` if unknown."""
        return attrs.evolve(self, roles=self.roles.check(roles))


_DEFAULT = TenantPolicy()
_PARSED_CACHE_SIZE = 256
# The policies of the settings documents read lately, by identity: the SQL
# backend shares one parsed document per stored text, so the policy of a
# tenant whose settings did not change is found without serialising them
# again (a write's unit of work asks for it on every request).
_BY_SETTINGS: dict[int, tuple[Mapping[str, Any], TenantPolicy]] = {}


@functools.lru_cache(maxsize=256)
def _parse(document: bytes) -> TenantPolicy:
    # Every request reads its tenant's policy; the same few documents come
    # back again and again, so their parsed form is cached by content.
    try:
        return converter.structure(orjson.loads(document), TenantPolicy)
    except (cattrs.BaseValidationError, ValueError, TypeError) as error:
        raise ConfigurationError(f"the tenant's stored policy cannot be read: {error}") from error


def policy_from_mapping(document: Mapping[str, Any]) -> TenantPolicy:
    """Read a policy from a JSON-like document (a file, a settings form)."""
    return _parse(orjson.dumps(dict(document), option=orjson.OPT_SORT_KEYS))
