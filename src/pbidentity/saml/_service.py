"""The SAML service: per-tenant SP values, Save & authorize, and the ACS.

:class:`SamlService` is the framework-agnostic core of SAML sign-in, as
:class:`~pbidentity.scim.ScimService` is for provisioning. The host app's
settings pages call its typed methods (:meth:`~SamlService.save_metadata_url`,
:meth:`~SamlService.begin_authorize`, :meth:`~SamlService.rollback`...); its
:meth:`~SamlService.handle` serves the three endpoints an IdP and a browser
reach, under the service's prefix::

    GET  /{tenant}/metadata   the SP metadata document
    GET  /{tenant}/login      start an SP-initiated sign-in (302 or auto-post to the IdP)
    POST /{tenant}/acs        the Assertion Consumer Service: verify, then 303 to finish
    GET  /{tenant}/finish     check the browser, hand the outcome to the host app

A sign-in is bound to the browser that started it (no login CSRF): the
login sets a short-lived cookie holding a random nonce, and the AuthnRequest
id carries the nonce's hash, signed with the tenant's key, so that starting
a sign-in writes nothing. The ACS, a cross-site POST that carries no
``SameSite=Lax`` cookie, verifies the response and keeps the outcome under
a one-time code; it redirects to the finish URL, a top-level GET on which
the browser does send the cookie, and only if the cookie's nonce matches is
the outcome (:data:`SignInOutcome`) handed to the host app's ``on_result``,
which starts its session and answers the browser. Refusals go to
``on_result`` at once: they grant nothing.

Staged activation: saving a configuration creates a *pending* connection;
the active one keeps serving sign-ins until the admin's test sign-in with the
pending one succeeds, which swaps them in one transaction (the old one is
kept as *previous*, for :meth:`~SamlService.rollback`).

:class:`SamlService` is the facade: it composes the configuration part
(:mod:`pbidentity.saml._setup`), the sign-in protocol
(:mod:`pbidentity.saml._signin`, with the browser binding of
:mod:`pbidentity.saml._binding`) and the HTTP endpoints
(:mod:`pbidentity.saml._routes`), which share one
:class:`~pbidentity.saml._context.SamlContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._clock import new_id
from pbidentity._clock import utc_now
from pbidentity.domain import IdentityProvider
from pbidentity.domain import SamlConnection
from pbidentity.domain import Tenant
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.roles import RoleSet
from pbidentity.saml._binding import BINDING_COOKIE
from pbidentity.saml._binding import RequestKeys
from pbidentity.saml._config import SamlConfig
from pbidentity.saml._config import local_dev_hosts
from pbidentity.saml._config import new_secret
from pbidentity.saml._context import SamlContext
from pbidentity.saml._outcomes import Authorized
from pbidentity.saml._outcomes import ResultHandler
from pbidentity.saml._outcomes import SamlConnections
from pbidentity.saml._outcomes import SaveResult
from pbidentity.saml._outcomes import SignIn
from pbidentity.saml._outcomes import SignInFailure
from pbidentity.saml._outcomes import SignInOutcome
from pbidentity.saml._pages import default_result_page
from pbidentity.saml._protocol import AuthnRedirect
from pbidentity.saml._routes import SamlEndpoints
from pbidentity.saml._setup import SamlSetup
from pbidentity.saml._signin import SignInFlow
from pbidentity.saml._types import Report
from pbidentity.saml._types import ServiceProvider
from pbidentity.storage import Storage

if TYPE_CHECKING:
    # Keys need cryptography (the saml extra), loaded when first used.
    from pbidentity.saml._keys import SpKey
    from pbidentity.saml._keys import SpKeys

__all__ = [
    "BINDING_COOKIE",
    "Authorized",
    "ResultHandler",
    "SamlConfig",
    "SamlConnections",
    "SamlService",
    "SaveResult",
    "SignIn",
    "SignInFailure",
    "SignInOutcome",
    "default_result_page",
    "local_dev_hosts",
    "new_secret",
]


class SamlService:
    """SAML sign-in for every tenant of the app, on one storage.

    ``on_result`` is the host app's handler of sign-in outcomes, called at
    the finish step in the browser that started the sign-in; without one, a
    plain page says what happened (useful for trying things out, not for
    production, where the host app must start a session). ``clock``,
    ``new_id`` and ``new_secret`` (binding nonces and one-time codes:
    unguessable by default) are injectable for tests; ``fetch`` replaces the
    safe metadata fetcher.
    """

    def __init__(
        self,
        storage: Storage,
        config: SamlConfig,
        *,
        on_result: ResultHandler | None = None,
        clock: Clock = utc_now,
        new_id: IdFactory = new_id,
        fetch: Callable[..., Any] | None = None,
        new_secret: IdFactory = new_secret,
        roles: RoleSet | None = None,
    ) -> None:
        self._context = SamlContext(
            storage,
            config,
            on_result=on_result,
            clock=clock,
            new_id=new_id,
            fetch=fetch,
            new_secret=new_secret,
            # The app's roles (as in its ScimConfig): members created just in
            # time get the least privileged one.
            roles=roles or RoleSet(),
        )
        self._setup = SamlSetup(self._context)
        self._sign_ins = SignInFlow(self._context, RequestKeys(self._context), self._setup)
        self._endpoints = SamlEndpoints(self._context, self._sign_ins)

    # -- Settings, shared by every part ----------------------------------------

    @property
    def storage(self) -> Storage:
        """Where connections, requests and members are kept."""
        return self._context.storage

    @property
    def config(self) -> SamlConfig:
        """How the app's SAML side is reached and how strict it is."""
        return self._context.config

    @property
    def on_result(self) -> ResultHandler | None:
        """The host app's handler of sign-in outcomes (``None``: a plain page)."""
        return self._context.on_result

    @on_result.setter
    def on_result(self, handler: ResultHandler | None) -> None:
        self._context.on_result = handler

    @property
    def clock(self) -> Clock:
        """The service's clock."""
        return self._context.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._context.clock = clock

    @property
    def new_id(self) -> IdFactory:
        """What makes ids of connections and events."""
        return self._context.new_id

    @new_id.setter
    def new_id(self, factory: IdFactory) -> None:
        self._context.new_id = factory

    @property
    def roles(self) -> RoleSet:
        """The app's roles: members created just in time get the least privileged one."""
        return self._context.roles

    @roles.setter
    def roles(self, roles: RoleSet) -> None:
        self._context.roles = roles

    @property
    def max_body_bytes(self) -> int:
        """The largest request body an adapter should read for this service."""
        return self._context.config.max_body_bytes

    # -- SP values -------------------------------------------------------------

    def service_provider(self, tenant_slug: str) -> ServiceProvider:
        """The values the admin pastes into the IdP for this tenant."""
        return self._context.service_provider(tenant_slug)

    def connections(self, tenant_slug: str) -> SamlConnections:
        """The tenant's active, pending and previous connections."""
        return self._setup.connections(tenant_slug)

    # -- Configuration ---------------------------------------------------------

    def check_metadata(
        self, tenant_slug: str, xml: bytes
    ) -> tuple[IdentityProvider | None, Report]:
        """Read and check IdP metadata against this tenant without saving anything."""
        return self._setup.check_metadata(tenant_slug, xml)

    def fetch_metadata(self, url: str) -> bytes:
        """Fetch a metadata URL through the safe fetcher.

        Raises :class:`~pbidentity.saml.MetadataFetchError`, whose ``finding``
        tells the admin why (not https, a private address, a timeout...).
        """
        return self._setup.fetch_metadata(url)

    def save_metadata_url(self, tenant_slug: str, url: str, **options: Any) -> SaveResult:
        """Fetch the IdP's metadata URL (Okta's "Metadata URL"), check it, save it as pending."""
        return self._setup.save_metadata_url(tenant_slug, url, **options)

    def save_metadata_xml(
        self,
        tenant_slug: str,
        xml: bytes,
        *,
        source: str = "upload",
        attribute_mapping: Mapping[str, str] | None = None,
        allow_idp_initiated: bool | None = None,
        unknown_members: Literal["refuse", "create"] | None = None,
        actor: str = "app",
    ) -> SaveResult:
        """Check IdP metadata (an uploaded file) and save it as the pending configuration."""
        return self._setup.save_metadata_xml(
            tenant_slug,
            xml,
            source=source,
            attribute_mapping=attribute_mapping,
            allow_idp_initiated=allow_idp_initiated,
            unknown_members=unknown_members,
            actor=actor,
        )

    def save_fields(
        self,
        tenant_slug: str,
        *,
        entity_id: str,
        sso_url: str,
        certificate: str,
        binding: Literal["redirect", "post"] = "redirect",
        attribute_mapping: Mapping[str, str] | None = None,
        allow_idp_initiated: bool | None = None,
        unknown_members: Literal["refuse", "create"] | None = None,
        actor: str = "app",
    ) -> SaveResult:
        """Check values typed by hand (entity ID, SSO URL, certificate) and save them as pending."""
        return self._setup.save_fields(
            tenant_slug,
            entity_id=entity_id,
            sso_url=sso_url,
            certificate=certificate,
            binding=binding,
            attribute_mapping=attribute_mapping,
            allow_idp_initiated=allow_idp_initiated,
            unknown_members=unknown_members,
            actor=actor,
        )

    def update_options(
        self,
        tenant_slug: str,
        *,
        attribute_mapping: Mapping[str, str] | None = None,
        allow_idp_initiated: bool | None = None,
        unknown_members: Literal["refuse", "create"] | None = None,
        sign_requests: bool | None = None,
        assertion_encryption: Literal["off", "accept", "require"] | None = None,
        actor: str = "app",
    ) -> SamlConnections:
        """Change how sign-ins are handled, on the active and the pending connection.

        These options never change which IdP is trusted, so they apply at
        once, without a test sign-in. ``sign_requests`` signs AuthnRequests
        with the SP's signing key; ``assertion_encryption`` (``off``,
        ``accept``, ``require``) publishes the SP's encryption certificate
        and decrypts encrypted assertions, ``require`` refusing plaintext
        ones. Both change what the IdP must be told: give it the SP metadata
        again before turning on what it enforces.
        """
        return self._setup.update_options(
            tenant_slug,
            attribute_mapping=attribute_mapping,
            allow_idp_initiated=allow_idp_initiated,
            unknown_members=unknown_members,
            sign_requests=sign_requests,
            assertion_encryption=assertion_encryption,
            actor=actor,
        )

    def sp_keys(self, tenant_slug: str) -> SpKeys:
        """The SP key pairs the workspace uses (made now if it has none and needs them).

        ``SamlConfig.sp_keys`` when the app provides them; otherwise the
        workspace's own, made the first time it turns on encrypted assertions
        or signed requests (or when asked here).
        """
        from pbidentity.saml._sp_keys import SpKeyStore

        tenant = self._tenant(tenant_slug)
        return SpKeyStore(self._context).keys(tenant, create=True)

    def start_sp_key_rollover(
        self, tenant_slug: str, use: Literal["signing", "encryption"], *, actor: str = "app"
    ) -> SpKey:
        """Add a new SP key of that use after the current one; return it.

        The SP metadata lists both keys from now on. A new encryption key
        decrypts at once, so the IdP can switch to its certificate whenever
        the admin gives it the metadata; a new signing key signs only once the
        rollover is finished. Raises ``ConfigurationError`` when the app
        provides the keys (``SamlConfig.sp_keys``).
        """
        from pbidentity.saml._sp_keys import SpKeyStore

        tenant = self._tenant(tenant_slug)
        return SpKeyStore(self._context).start_rollover(tenant, use, actor=actor)

    def finish_sp_key_rollover(
        self, tenant_slug: str, use: Literal["signing", "encryption"], *, actor: str = "app"
    ) -> SpKey:
        """Drop the old SP key of that use; return the new one, now the only one.

        For encryption, finish once the IdP encrypts to the new certificate
        (an assertion encrypted to the old key is refused from then on); for
        signing, once the IdP trusts the new certificate.
        """
        from pbidentity.saml._sp_keys import SpKeyStore

        tenant = self._tenant(tenant_slug)
        return SpKeyStore(self._context).finish_rollover(tenant, use, actor=actor)

    def _tenant(self, slug: str) -> Tenant:
        with self._context.storage.transaction(write=False) as tx:
            return self._context.tenant(tx, slug)

    def discard_pending(self, tenant_slug: str, *, actor: str = "app") -> bool:
        """Drop the pending configuration; the active one is untouched."""
        return self._setup.discard_pending(tenant_slug, actor=actor)

    def rollback(self, tenant_slug: str, *, actor: str = "app") -> SamlConnection:
        """Make the previous configuration active again (and the active one previous)."""
        return self._setup.rollback(tenant_slug, actor=actor)

    # -- Sign-in ---------------------------------------------------------------

    def begin_authorize(
        self, tenant_slug: str, *, relay_state: str | None = None, request: Request | None = None
    ) -> AuthnRedirect:
        """Start the admin's test sign-in with the pending configuration (Save & authorize).

        As :meth:`begin_sign_in`; the request is also kept in storage (an
        authenticated admin's action), bound to the pending configuration.
        """
        return self._sign_ins.begin(tenant_slug, "authorize", relay_state, request)

    def begin_sign_in(
        self, tenant_slug: str, *, relay_state: str | None = None, request: Request | None = None
    ) -> AuthnRedirect:
        """Start a member's SP-initiated sign-in with the active configuration.

        The answer must go to the browser with its binding cookie
        (:meth:`AuthnRedirect.to_response`): the sign-in finishes only in
        that browser. ``request`` is the browser's request, if at hand: the
        sign-ins it has under way in other tabs then stay valid. Nothing is
        written: the request id is signed, not stored.
        """
        return self._sign_ins.begin(tenant_slug, "sign_in", relay_state, request)

    def consume(
        self, tenant_slug: str, saml_response: str, relay_state: str | None = None
    ) -> SignInOutcome:
        """Verify a posted SAMLResponse and decide: a sign-in, an activation, or a refusal.

        Never raises for anything the browser or the IdP sent; a storage
        outage raises :class:`~pbidentity.exceptions.StorageUnavailableError`.
        This is the ACS's verification alone: :meth:`handle` adds the check
        that the browser posting it is the one that started the sign-in, so
        a host app serving the ACS itself must bind it in its own way.
        """
        return self._sign_ins.consume(tenant_slug, saml_response, relay_state)

    # -- HTTP ------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Serve one request to the metadata, login, ACS or finish endpoint of a tenant."""
        return self._endpoints.handle(request)
