"""What every part of the SAML service shares: storage, configuration, clock, and tenant look-ups.

:class:`SamlContext` is built once by :class:`~pbidentity.saml.SamlService`
and handed to its configuration, sign-in and HTTP parts, so that a setting
changed on the service (``on_result``, ``clock``) is seen by all of them.
It holds no protocol logic.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from datetime import datetime
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity.domain import Event
from pbidentity.domain import SamlConnection
from pbidentity.domain import Tenant
from pbidentity.exceptions import NotFoundError
from pbidentity.roles import RoleSet
from pbidentity.saml._config import SamlConfig
from pbidentity.saml._outcomes import ResultHandler
from pbidentity.saml._outcomes import SamlConnections
from pbidentity.saml._types import ServiceProvider
from pbidentity.storage import Storage
from pbidentity.storage import Transaction

__all__ = ["SamlContext"]

#: How often an instance forgets expired requests and assertion ids.
_PURGE_EVERY = timedelta(minutes=5)


class SamlContext:
    """The service's settings and the look-ups its parts share."""

    def __init__(
        self,
        storage: Storage,
        config: SamlConfig,
        *,
        on_result: ResultHandler | None,
        clock: Clock,
        new_id: IdFactory,
        fetch: Callable[..., Any] | None,
        new_secret: IdFactory,
        roles: RoleSet,
    ) -> None:
        self.storage = storage
        self.config = config
        self.on_result = on_result
        self.clock = clock
        self.new_id = new_id
        self.fetch = fetch
        self.new_secret = new_secret
        self.roles = roles
        self._purged: datetime | None = None

    def base_url(self) -> str:
        """Where the service's endpoints are, as browsers and IdPs reach them."""
        return self.config.public_url.rstrip("/") + self.config.prefix.rstrip("/")

    def service_provider(self, tenant_slug: str) -> ServiceProvider:
        """The values the admin pastes into the IdP for this tenant."""
        root = f"{self.base_url()}/{quote(tenant_slug, safe='')}"
        return ServiceProvider(
            entity_id=f"{root}/metadata",
            acs_url=f"{root}/acs",
            metadata_url=f"{root}/metadata",
            login_url=f"{root}/login",
        )

    @staticmethod
    def connections(tx: Transaction, tenant: Tenant) -> SamlConnections:
        """The tenant's connections by state, as ``tx`` sees them."""
        found = {c.state: c for c in tx.saml_connections(tenant.id)}
        return SamlConnections(
            active=found.get("active"), pending=found.get("pending"), previous=found.get("previous")
        )

    @staticmethod
    def tenant(tx: Transaction, slug: str) -> Tenant:
        """The tenant ``slug``; :class:`~pbidentity.exceptions.NotFoundError` if there is none."""
        tenant = tx.find_tenant(slug)
        if tenant is None:
            raise NotFoundError(f"no workspace {slug!r}")
        return tenant

    def purge(self, tx: Transaction, now: datetime) -> None:
        """Sweep expired SAML state now and then, in a write transaction opened anyway."""
        if self._purged is None or now - self._purged > _PURGE_EVERY:
            # Expired requests, assertion ids and outcomes are dead weight;
            # each instance sweeps them now and then.
            self._purged = now
            tx.purge_saml_state(now)

    def event(
        self,
        tx: Transaction,
        tenant: Tenant,
        kind: str,
        connection: SamlConnection | None,
        actor: str,
        data: Mapping[str, Any],
        *,
        subject_id: str | None = None,
    ) -> None:
        """Record an event about a connection (or, with ``subject_id``, a member)."""
        tx.add_events(
            [
                Event(
                    id=self.new_id(),
                    tenant_id=tenant.id,
                    type=kind,
                    subject_id=subject_id or (connection.id if connection else tenant.id),
                    actor=actor,
                    occurred=self.clock(),
                    data=dict(data),
                )
            ]
        )
