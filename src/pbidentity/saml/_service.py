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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from urllib.parse import parse_qsl
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urlsplit

import attrs

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._clock import new_id
from pbidentity._clock import utc_now
from pbidentity.domain import Event
from pbidentity.domain import IdentityProvider
from pbidentity.domain import Member
from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRequest
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import InputError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PbIdentityError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.roles import RoleSet
from pbidentity.saml._protocol import AuthnRedirect
from pbidentity.saml._protocol import redirect_for
from pbidentity.saml._protocol import sp_metadata
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report
from pbidentity.saml._types import ServiceProvider
from pbidentity.storage import Storage
from pbidentity.storage import Transaction

if TYPE_CHECKING:
    from pbidentity.saml._attributes import Profile
    from pbidentity.saml._response import Assertion

__all__ = [
    "BINDING_COOKIE",
    "Authorized",
    "SamlConfig",
    "SamlConnections",
    "SamlService",
    "SaveResult",
    "SignIn",
    "SignInFailure",
    "SignInOutcome",
]

log = logging.getLogger("pbidentity.saml")

#: How far the IdP's clock may be from ours before the test sign-in warns,
#: and before it refuses (the skew the ACS tolerates is configured apart).
_CLOCK_WARN = timedelta(seconds=60)
#: How often an instance forgets expired requests and assertion ids.
_PURGE_EVERY = timedelta(minutes=5)
_CLOCK_ERROR = timedelta(seconds=300)

_HTML = (("Content-Type", "text/html; charset=utf-8"),)
_NO_STORE = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))
_SAML_EXTRA = "SAML sign-in needs the saml extra: pip install 'pbidentity[saml]'"

#: The cookie that binds a sign-in to the browser that started it (scoped
#: to the tenant's SAML path, so each workspace has its own).
BINDING_COOKIE = "pbidentity_saml"
#: Sign-ins one browser may have under way at once (tabs), newest kept.
_BINDINGS_KEPT = 4
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
#: How long a verified outcome waits for its browser at the finish step; the
#: browser follows the redirect at once, so this only covers a slow network.
_OUTCOME_LIFETIME = timedelta(minutes=2)
#: A request id: ``id``, the purpose (s: sign-in, a: the admin's test
#: sign-in), the issue time in hex seconds, the binding (hash of the
#: browser's nonce) and the MAC of all that with the tenant's key.
_REQUEST_ID = re.compile(r"id([sa])([0-9a-f]{10})([0-9a-f]{32})([0-9a-f]{32})")
_PURPOSES: dict[str, Literal["sign_in", "authorize"]] = {"s": "sign_in", "a": "authorize"}
#: The RelayState characters kept as they are; every other one is
#: percent-encoded, so that a RelayState is always ASCII and header-safe.
_PATH_SAFE = "/-._~!$&'()*+,;=:@%?#"


def new_secret() -> str:
    """An unguessable value: a browser's binding nonce, a one-time code."""
    return secrets.token_urlsafe(32)


@attrs.frozen(kw_only=True)
class SamlConfig:
    """How the app's SAML side is reached and how strict it is.

    ``public_url`` is the app's origin as browsers and IdPs see it
    (``https://app.example``): every SP value (entity ID, ACS URL) is built
    from it, and responses are checked against exactly those values, so it
    must not depend on how a request happened to arrive behind a proxy.
    """

    public_url: str
    #: Where :meth:`SamlService.handle` is mounted in the app.
    prefix: str = "/saml"
    #: How far the IdP's clock may be off when checking validity windows.
    clock_skew: timedelta = timedelta(seconds=120)
    #: How long a sign-in started here may take at the IdP.
    request_lifetime: timedelta = timedelta(minutes=10)
    #: The largest ACS POST body accepted; bigger ones are refused unread.
    max_body_bytes: int = 512 * 1024
    #: Hosts allowed over plain http and on private addresses (metadata URLs,
    #: SSO URLs, the app itself): for development only, empty in production.
    dev_hosts: frozenset[str] = frozenset()
    #: Seconds to wait for a metadata URL.
    fetch_timeout: float = 10.0
    #: The secret that signs sign-in request ids (each tenant gets a key
    #: derived from it). ``None``, the default: each tenant's key is made at
    #: random once and kept in storage, so every app instance on the
    #: database shares it with nothing to configure. Set it to keep the
    #: secret in the app's own configuration (every instance the same).
    secret_key: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if "://" not in self.public_url:
            raise ConfigurationError(
                f"SamlConfig.public_url must be the app's absolute origin, such as "
                f"https://app.example, not {self.public_url!r}"
            )


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_dev_hosts(host: str, public_url: str | None) -> frozenset[str]:
    """The ``dev_hosts`` of an app served on ``host`` and reached at ``public_url``.

    The machine itself (loopback metadata and SSO URLs, such as a test IdP's)
    only when both are loopback: the app is then reachable from this machine
    alone. Served on another address, or published at another URL (a proxy,
    a tunnel), others reach it, so plain http and private addresses are
    refused and the public URL must be https. ``public_url`` ``None`` means
    ``http://{host}:{port}``.
    """
    if not _is_loopback(host):
        return frozenset()
    if public_url is not None and not _is_loopback(urlsplit(public_url).hostname or ""):
        return frozenset()
    return frozenset({host, "localhost", "127.0.0.1"})


@attrs.frozen(kw_only=True)
class SamlConnections:
    """A tenant's connections by state (each may be missing)."""

    active: SamlConnection | None = None
    pending: SamlConnection | None = None
    previous: SamlConnection | None = None


@attrs.frozen(kw_only=True)
class SaveResult:
    """The outcome of saving a configuration: the report, and the pending connection if saved."""

    report: Report
    connection: SamlConnection | None = None

    @property
    def saved(self) -> bool:
        """Whether a pending connection was created (no error in the report)."""
        return self.connection is not None


@attrs.frozen(kw_only=True)
class SignIn:
    """A member signed in: the host app starts its session for ``member``."""

    tenant: Tenant
    member: Member
    #: Whether the member was created just now (the tenant creates unknown members).
    created: bool
    name_id: str
    session_index: str | None
    attributes: Mapping[str, tuple[str, ...]]
    #: The path of the app the member wanted (checked to be a local path).
    relay_state: str | None
    #: Whether the IdP started it (an Okta tile) rather than this app.
    idp_initiated: bool
    #: What was checked and decided, one sentence each.
    trail: tuple[str, ...]
    #: The AuthnRequest this answers (``None`` when the IdP started it).
    #: Through :meth:`SamlService.handle` a sign-in that answers a request
    #: reaches ``on_result`` only in the browser that started it.
    request_id: str | None = None


@attrs.frozen(kw_only=True)
class Authorized:
    """The admin's test sign-in succeeded: the pending configuration is now active."""

    tenant: Tenant
    connection: SamlConnection
    previous: SamlConnection | None
    #: What the test sign-in found (warnings and information; no errors).
    report: Report
    name_id: str
    #: The member the admin's identity matched, if any.
    member: Member | None
    relay_state: str | None
    #: The test sign-in's AuthnRequest (see :attr:`SignIn.request_id`).
    request_id: str | None = None


@attrs.frozen(kw_only=True)
class SignInFailure:
    """A sign-in or test sign-in was refused; nothing changed.

    ``report`` says which check failed, what was received and what was
    expected, in words an admin can act on. A member sees only
    :attr:`message`; the details go to the admin page and the log.
    """

    tenant: Tenant | None
    purpose: Literal["sign_in", "authorize"]
    report: Report
    relay_state: str | None = None
    #: The HTTP status the default page answers with.
    status: int = 403

    @property
    def finding(self) -> Finding:
        """The first error: the reason."""
        return self.report.errors[0]

    @property
    def message(self) -> str:
        """The reason in one sentence."""
        return self.finding.message


#: What a POST to the ACS gives the host app.
SignInOutcome = SignIn | Authorized | SignInFailure

#: The host app's answer to a sign-in outcome: it starts the session (or
#: shows the failure) and returns the response for the browser.
ResultHandler = Callable[[Request, SignInOutcome], Response]


class _Refused(Exception):
    """A sign-in check failed; carries the finding (internal control flow)."""

    def __init__(self, finding: Finding, *, status: int = 403) -> None:
        super().__init__(finding.message)
        self.finding = finding
        self.status = status


def _error(code: str, message: str, *, where: str = "", suggestion: str = "") -> Finding:
    return Finding(code=code, severity="error", message=message, where=where, suggestion=suggestion)


def _local_path(value: str | None) -> str | None:
    """A RelayState kept only if it is a path of this app (never an open redirect).

    Whatever bytes it held, what is kept is ASCII, with no control
    character, so a host app can put it in a ``Location`` header as it is.
    """
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    # Browsers drop tabs and newlines inside URLs ("/\t/evil" is "//evil"),
    # so control characters refuse the whole value rather than being encoded.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value) or len(value) > 2000:
        return None
    try:
        return quote(value, safe=_PATH_SAFE)
    except UnicodeEncodeError:  # a lone surrogate: no text at all
        return None


def _binding(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()[:32]


def _request_mac(key: bytes, tenant_id: str, connection_id: str, body: str) -> str:
    message = "\x1f".join(("pbidentity-saml-request", tenant_id, connection_id, body))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:32]


def _browser_nonces(request: Request | None) -> list[str]:
    """The nonces of the sign-ins under way in the browser (from its binding cookie)."""
    if request is None:
        return []
    found: list[str] = []
    for name, value in request.headers:
        if name != "cookie":
            continue
        for pair in value.split(";"):
            key, _, held = pair.strip().partition("=")
            if key == BINDING_COOKIE:
                found.extend(n for n in held.split(".") if _NONCE.fullmatch(n))
    return found[:_BINDINGS_KEPT]


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


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
        self.storage = storage
        self.config = config
        self.on_result = on_result
        self.clock = clock
        self.new_id = new_id
        self._fetch = fetch
        self._new_secret = new_secret
        #: Tenant id to its request signing key (a key never changes).
        self._keys: dict[str, bytes] = {}
        #: The app's roles (one RoleSet with SCIM's): members created just in
        #: time get the least privileged one.
        self.roles = roles or RoleSet()
        self._purged: datetime | None = None

    @property
    def max_body_bytes(self) -> int:
        """The largest request body an adapter should read for this service."""
        return self.config.max_body_bytes

    # -- SP values -------------------------------------------------------------

    def service_provider(self, tenant_slug: str) -> ServiceProvider:
        """The values the admin pastes into the IdP for this tenant."""
        base = self.config.public_url.rstrip("/") + self.config.prefix.rstrip("/")
        root = f"{base}/{quote(tenant_slug, safe='')}"
        return ServiceProvider(
            entity_id=f"{root}/metadata",
            acs_url=f"{root}/acs",
            metadata_url=f"{root}/metadata",
            login_url=f"{root}/login",
        )

    def connections(self, tenant_slug: str) -> SamlConnections:
        """The tenant's active, pending and previous connections."""
        with self.storage.transaction(write=False) as tx:
            tenant = self._tenant(tx, tenant_slug)
            return self._connections(tx, tenant)

    @staticmethod
    def _connections(tx: Transaction, tenant: Tenant) -> SamlConnections:
        found = {c.state: c for c in tx.saml_connections(tenant.id)}
        return SamlConnections(
            active=found.get("active"), pending=found.get("pending"), previous=found.get("previous")
        )

    @staticmethod
    def _tenant(tx: Transaction, slug: str) -> Tenant:
        tenant = tx.find_tenant(slug)
        if tenant is None:
            raise NotFoundError(f"no workspace {slug!r}")
        return tenant

    # -- Save ------------------------------------------------------------------

    def check_metadata(
        self, tenant_slug: str, xml: bytes
    ) -> tuple[IdentityProvider | None, Report]:
        """Read and check IdP metadata against this tenant without saving anything."""
        from pbidentity.saml._metadata import read_metadata

        idp, report = read_metadata(xml, now=self.clock())
        if idp is None:
            return None, report
        return idp, report.plus(self._check(tenant_slug, idp, {}).findings)

    def _check(self, slug: str, idp: IdentityProvider, mapping: Mapping[str, str]) -> Report:
        from pbidentity.saml._validate import check_connection
        from pbidentity.saml._validate import check_service_provider

        with self.storage.transaction(write=False) as tx:
            tenant = self._tenant(tx, slug)
            active = self._connections(tx, tenant).active
            # Whether, never where: one workspace's admin learns nothing of the others.
            shared = any(
                c.tenant_id != tenant.id and set(c.idp.certificates) & set(idp.certificates)
                for c in tx.active_saml_connections(idp.entity_id)
            )
        sp = self.service_provider(slug)
        report = check_connection(
            idp,
            sp=sp,
            now=self.clock(),
            attribute_mapping=mapping or None,
            active=None if active is None else active.idp,
            shared_elsewhere=shared,
            dev_hosts=self.config.dev_hosts,
        )
        # The app's own side too: an http public URL in production would make
        # every sign-in fail at the IdP, so the admin learns it here.
        sp_report = check_service_provider(sp, tenant_slug=slug, dev_hosts=self.config.dev_hosts)
        return report.plus(sp_report.findings)

    def fetch_metadata(self, url: str) -> bytes:
        """Fetch a metadata URL through the safe fetcher.

        Raises :class:`~pbidentity.saml.MetadataFetchError`, whose ``finding``
        tells the admin why (not https, a private address, a timeout...).
        """
        from pbidentity.saml._fetch import fetch_metadata

        fetch = self._fetch or fetch_metadata
        fetched = fetch(url, timeout=self.config.fetch_timeout, dev_hosts=self.config.dev_hosts)
        return bytes(fetched.body)

    def save_metadata_url(self, tenant_slug: str, url: str, **options: Any) -> SaveResult:
        """Fetch the IdP's metadata URL (Okta's "Metadata URL"), check it, save it as pending."""
        from pbidentity.saml._fetch import MetadataFetchError

        try:
            xml = self.fetch_metadata(url.strip())
        except MetadataFetchError as error:
            return SaveResult(report=Report((error.finding,)))
        return self.save_metadata_xml(tenant_slug, xml, source=url.strip(), **options)

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
        from pbidentity.saml._metadata import read_metadata

        idp, report = read_metadata(xml, now=self.clock())
        if idp is None or not report.ok:
            return SaveResult(report=report)
        return self._save(
            tenant_slug,
            idp,
            report,
            source=source,
            metadata_xml=xml.decode("utf-8", "replace"),
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
        from pbidentity.saml._metadata import idp_from_fields

        idp, report = idp_from_fields(entity_id, sso_url, certificate, binding)
        if idp is None or not report.ok:
            return SaveResult(report=report)
        return self._save(
            tenant_slug,
            idp,
            report,
            source="manual",
            metadata_xml=None,
            attribute_mapping=attribute_mapping,
            allow_idp_initiated=allow_idp_initiated,
            unknown_members=unknown_members,
            actor=actor,
        )

    def _save(
        self,
        slug: str,
        idp: IdentityProvider,
        report: Report,
        *,
        source: str,
        metadata_xml: str | None,
        attribute_mapping: Mapping[str, str] | None,
        allow_idp_initiated: bool | None,
        unknown_members: Literal["refuse", "create"] | None,
        actor: str,
    ) -> SaveResult:
        mapping = dict(attribute_mapping or {})
        report = report.plus(self._check(slug, idp, mapping).findings)
        if not report.ok:
            return SaveResult(report=report)
        now = self.clock()
        with self.storage.transaction() as tx:
            tenant = self._tenant(tx, slug)
            current = self._connections(tx, tenant)
            # Options not given carry over from the configuration in use, so
            # re-importing rotated metadata keeps the tenant's choices.
            basis = current.active or current.pending
            if not mapping and basis is not None:
                mapping = dict(basis.attribute_mapping)
            if current.pending is not None:
                tx.delete_saml_connection(tenant.id, current.pending.id)
            pending = SamlConnection(
                id=self.new_id(),
                tenant_id=tenant.id,
                state="pending",
                idp=idp,
                attribute_mapping=mapping,
                allow_idp_initiated=(
                    allow_idp_initiated
                    if allow_idp_initiated is not None
                    else basis is not None and basis.allow_idp_initiated
                ),
                unknown_members=(
                    unknown_members
                    if unknown_members is not None
                    else basis.unknown_members
                    if basis is not None
                    else "refuse"
                ),
                source=source,
                metadata_xml=metadata_xml,
                created=now,
            )
            tx.add_saml_connection(pending)
            self._event(tx, tenant, "saml.saved", pending, actor, {"idp": idp.entity_id})
        log.info("tenant %s saved a pending SAML configuration for %s", slug, idp.entity_id)
        return SaveResult(report=report, connection=pending)

    def update_options(
        self,
        tenant_slug: str,
        *,
        attribute_mapping: Mapping[str, str] | None = None,
        allow_idp_initiated: bool | None = None,
        unknown_members: Literal["refuse", "create"] | None = None,
        actor: str = "app",
    ) -> SamlConnections:
        """Change how sign-ins are handled, on the active and the pending connection.

        These options change what happens after a verified sign-in, never
        which IdP is trusted, so they apply at once, without a test sign-in.
        """
        if unknown_members not in (None, "refuse", "create"):
            raise InputError("unknown_members must be 'refuse' or 'create'")
        with self.storage.transaction() as tx:
            tenant = self._tenant(tx, tenant_slug)
            for connection in tx.saml_connections(tenant.id):
                if connection.state == "previous":
                    continue
                changed = attrs.evolve(
                    connection,
                    attribute_mapping=dict(
                        connection.attribute_mapping
                        if attribute_mapping is None
                        else attribute_mapping
                    ),
                    allow_idp_initiated=connection.allow_idp_initiated
                    if allow_idp_initiated is None
                    else allow_idp_initiated,
                    unknown_members=unknown_members or connection.unknown_members,
                    version=connection.version + 1,
                )
                tx.replace_saml_connection(changed, expected_version=connection.version)
                self._event(tx, tenant, "saml.options_changed", changed, actor, {})
            return self._connections(tx, tenant)

    def discard_pending(self, tenant_slug: str, *, actor: str = "app") -> bool:
        """Drop the pending configuration; the active one is untouched."""
        with self.storage.transaction() as tx:
            tenant = self._tenant(tx, tenant_slug)
            pending = self._connections(tx, tenant).pending
            if pending is None:
                return False
            tx.delete_saml_connection(tenant.id, pending.id)
            self._event(tx, tenant, "saml.discarded", pending, actor, {})
            return True

    def rollback(self, tenant_slug: str, *, actor: str = "app") -> SamlConnection:
        """Make the previous configuration active again (and the active one previous)."""
        now = self.clock()
        with self.storage.transaction() as tx:
            tenant = self._tenant(tx, tenant_slug)
            current = self._connections(tx, tenant)
            if current.previous is None:
                raise InputError(
                    "there is no previous SAML configuration to go back to in this workspace"
                )
            back = current.previous
            if current.active is not None:
                # Through a free state, as the one-per-state rule wants.
                tx.delete_saml_connection(tenant.id, current.active.id)
            restored = attrs.evolve(back, state="active", activated=now, version=back.version + 1)
            tx.replace_saml_connection(restored, expected_version=back.version)
            if current.active is not None:
                demoted = attrs.evolve(current.active, state="previous", version=1)
                tx.add_saml_connection(demoted)
            self._event(tx, tenant, "saml.rolled_back", restored, actor, {})
        log.info("tenant %s rolled back to SAML configuration %s", tenant_slug, restored.id)
        return restored

    # -- Starting a sign-in ----------------------------------------------------

    def begin_authorize(
        self, tenant_slug: str, *, relay_state: str | None = None, request: Request | None = None
    ) -> AuthnRedirect:
        """Start the admin's test sign-in with the pending configuration (Save & authorize).

        As :meth:`begin_sign_in`; the request is also kept in storage (an
        authenticated admin's action), bound to the pending configuration.
        """
        return self._begin(tenant_slug, "authorize", relay_state, request)

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
        return self._begin(tenant_slug, "sign_in", relay_state, request)

    def _begin(
        self,
        slug: str,
        purpose: Literal["sign_in", "authorize"],
        relay_state: str | None,
        browser: Request | None,
    ) -> AuthnRedirect:
        now = self.clock()
        relay = _local_path(relay_state)
        with self.storage.transaction(write=False) as tx:
            tenant = self._tenant(tx, slug)
            current = self._connections(tx, tenant)
            key = self._stored_key(tx, tenant)
        connection = current.pending if purpose == "authorize" else current.active
        if connection is None:
            raise NotFoundError(
                "there is no pending SAML configuration to authorize: save one first"
                if purpose == "authorize"
                else f"workspace {slug!r} has no active SAML configuration: SSO is not set up"
            )
        if key is None:
            key = self._create_key(tenant)
        nonce = self._new_secret()
        body = (
            f"{'a' if purpose == 'authorize' else 's'}{int(now.timestamp()):010x}{_binding(nonce)}"
        )
        request_id = f"id{body}{_request_mac(key, tenant.id, connection.id, body)}"
        if purpose == "authorize":
            # The test sign-in keeps its row: it is an admin's action, and the
            # row ties it to the pending configuration and its RelayState.
            with self.storage.transaction() as tx:
                self._purge(tx, now)
                tx.add_saml_request(
                    SamlRequest(
                        id=request_id,
                        tenant_id=tenant.id,
                        connection_id=connection.id,
                        purpose=purpose,
                        relay_state=relay,
                        created=now,
                        expires=now + self.config.request_lifetime,
                    )
                )
        nonces = [nonce, *(n for n in _browser_nonces(browser) if n != nonce)]
        return redirect_for(
            request_id=request_id,
            sp=self.service_provider(slug),
            idp=connection.idp,
            now=now,
            relay_state=relay,
            cookie=self._binding_cookie(slug, nonces[:_BINDINGS_KEPT]),
        )

    def _binding_cookie(self, slug: str, nonces: Sequence[str]) -> str:
        """The ``Set-Cookie`` value holding ``nonces`` (none: the cookie is deleted)."""
        path = f"{self.config.prefix.rstrip('/')}/{quote(slug, safe='')}/"
        # Lax: sent on the top-level GET to the finish URL, never on another
        # site's POST or fetch. Secure whenever the app is served over https.
        attributes = f"; Path={path}; HttpOnly; SameSite=Lax"
        if self.config.public_url.lower().startswith("https://"):
            attributes += "; Secure"
        if not nonces:
            return f"{BINDING_COOKIE}=; Max-Age=0{attributes}"
        seconds = int(self.config.request_lifetime.total_seconds())
        return f"{BINDING_COOKIE}={'.'.join(nonces)}; Max-Age={seconds}{attributes}"

    def _stored_key(self, tx: Transaction, tenant: Tenant) -> bytes | None:
        """The tenant's request signing key; ``None`` if it has none yet."""
        key = self._keys.get(tenant.id)
        if key is not None:
            return key
        if self.config.secret_key is not None:
            secret = self.config.secret_key.encode()
            key = hmac.new(
                secret, b"pbidentity-saml-key\x1f" + tenant.id.encode(), "sha256"
            ).digest()
        else:
            stored = tx.saml_signing_key(tenant.id)
            if stored is None:
                return None
            key = stored.encode()
        self._keys[tenant.id] = key
        return key

    def _create_key(self, tenant: Tenant) -> bytes:
        """Make the tenant's key: once per tenant ever, the first instance's wins."""
        with self.storage.transaction() as tx:
            key = tx.add_saml_signing_key(tenant.id, secrets.token_hex(32)).encode()
        self._keys[tenant.id] = key
        return key

    def _purge(self, tx: Transaction, now: datetime) -> None:
        if self._purged is None or now - self._purged > _PURGE_EVERY:
            # Expired requests, assertion ids and outcomes are dead weight;
            # each instance sweeps them now and then, in a write transaction
            # it opens anyway.
            self._purged = now
            tx.purge_saml_state(now)

    # -- The ACS -----------------------------------------------------------------

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
        relay = _local_path(relay_state)
        purpose: Literal["sign_in", "authorize"] = "sign_in"
        tenant: Tenant | None = None
        try:
            with self.storage.transaction() as tx:
                tenant = tx.find_tenant(tenant_slug)
                if tenant is None:
                    raise _Refused(
                        _error("tenant.unknown", f"There is no workspace {tenant_slug!r}."),
                        status=404,
                    )
                self._purge(tx, self.clock())
                answered = _in_response_to(saml_response, self.config.max_body_bytes)
                request: SamlRequest | None = None
                if answered is not None:
                    # Used up here, before verification: a request id is
                    # good for one response, even one that fails.
                    request = self._answered(tx, tenant, answered)
                if request is not None:
                    purpose = request.purpose
                routed: _Refused | tuple[SamlConnection, Literal["sign_in", "authorize"]]
                try:
                    routed = self._connection_for(tx, tenant, answered, request)
                except _Refused as refused:
                    routed = refused  # raised after the commit, so that the id stays used
            if isinstance(routed, _Refused):
                raise routed
            connection, purpose = routed
            if request is not None and request.relay_state and not relay:
                relay = request.relay_state
            assertion = self._verify(saml_response, tenant_slug, connection, request)
            if purpose == "authorize":
                return self._authorize(tenant, connection, assertion, relay)
            return self._sign_in(tenant, connection, assertion, relay, request is None)
        except _Refused as refused:
            failure = SignInFailure(
                tenant=tenant,
                purpose=purpose,
                report=Report((refused.finding,)),
                relay_state=relay,
                status=refused.status,
            )
            if purpose == "authorize" and tenant is not None:
                self._record_attempt(tenant, failure.report)
            log.warning(
                "SAML %s refused for workspace %s: %s (%s)",
                purpose,
                tenant_slug,
                refused.finding.code,
                refused.finding.message,
            )
            return failure

    def _answered(self, tx: Transaction, tenant: Tenant, answered: str) -> SamlRequest | None:
        """The request a response answers, used up; ``None`` if unknown, forged, used or expired.

        A member's sign-in request was never stored: its id is checked
        against the tenant's key and consumed in the replay cache. The
        admin's test sign-in request is taken from storage.
        """
        parsed = _REQUEST_ID.fullmatch(answered)
        if parsed is None:
            return None
        mark, issued_hex, _, mac = parsed.groups()
        purpose = _PURPOSES[mark]
        now = self.clock()
        issued = datetime.fromtimestamp(int(issued_hex, 16), UTC)
        expires = issued + self.config.request_lifetime
        key = self._stored_key(tx, tenant)
        if key is None or expires <= now or issued > now + self.config.clock_skew:
            return None
        if purpose == "authorize":
            request = tx.take_saml_request(tenant.id, answered)
            if request is None or request.expires <= now:
                return None
        else:
            active = self._connections(tx, tenant).active
            if active is None:
                return None
            request = SamlRequest(
                id=answered,
                tenant_id=tenant.id,
                connection_id=active.id,
                purpose="sign_in",
                created=issued,
                expires=expires,
            )
        # The MAC covers the connection, so a request made for a configuration
        # replaced since then is as unknown as one never sent.
        body = answered[2:-32]
        if not hmac.compare_digest(mac, _request_mac(key, tenant.id, request.connection_id, body)):
            return None
        # ":" cannot occur in an XML ID, so no assertion id can take this slot.
        if purpose == "sign_in" and not tx.remember_assertion(
            tenant.id, f"request:{answered}", expires
        ):
            return None
        return request

    def _connection_for(
        self,
        tx: Transaction,
        tenant: Tenant,
        answered: str | None,
        request: SamlRequest | None,
    ) -> tuple[SamlConnection, Literal["sign_in", "authorize"]]:
        current = self._connections(tx, tenant)
        if answered is not None and request is None:
            raise _Refused(
                _error(
                    "response.in_response_to",
                    f"The response answers sign-in request {answered!r}, which this app did not "
                    "send, already used, which expired "
                    f"({int(self.config.request_lifetime.total_seconds() // 60)} minutes), or "
                    "whose SSO configuration was replaced meanwhile.",
                    where="Response/@InResponseTo",
                    suggestion="Start the sign-in again from the app.",
                )
            )
        if request is None:
            active = current.active
            if active is None:
                raise _Refused(
                    _error(
                        "connection.none",
                        "SSO is not set up for this workspace.",
                        suggestion="Ask an admin to set up SAML in Settings, SSO.",
                    ),
                    status=404,
                )
            if not active.allow_idp_initiated:
                raise _Refused(
                    _error(
                        "response.unsolicited",
                        "This workspace accepts only sign-ins started from the app, and this "
                        "response answers no sign-in request (it was started at the identity "
                        "provider, for example from an app tile).",
                        where="Response/@InResponseTo",
                        suggestion="Sign in from the app's sign-in page, or let an admin allow "
                        "sign-ins started at the identity provider.",
                    )
                )
            return active, "sign_in"
        wanted = current.pending if request.purpose == "authorize" else current.active
        if wanted is None or wanted.id != request.connection_id:
            raise _Refused(
                _error(
                    "connection.changed",
                    "The SAML configuration changed while this sign-in was under way.",
                    suggestion="Start again: "
                    + ("click Save & authorize." if request.purpose == "authorize" else "sign in."),
                )
            )
        return wanted, request.purpose

    def _verify(
        self,
        saml_response: str,
        slug: str,
        connection: SamlConnection,
        request: SamlRequest | None,
    ) -> Assertion:
        try:
            from pbidentity.saml._response import SignInError
            from pbidentity.saml._response import verify_response
        except ImportError as error:  # pragma: no cover - depends on the installed extras
            raise _Refused(_error("saml.unavailable", _SAML_EXTRA), status=500) from error
        try:
            return verify_response(
                saml_response,
                sp=self.service_provider(slug),
                idp=connection.idp,
                request_id=None if request is None else request.id,
                now=self.clock(),
                clock_skew=self.config.clock_skew,
                max_bytes=self.config.max_body_bytes,
            )
        except SignInError as error:
            raise _Refused(error.finding) from error

    def _remember(self, tx: Transaction, tenant: Tenant, assertion: Assertion) -> None:
        # not_on_or_after already includes the clock skew: the id is kept as
        # long as the assertion could be accepted at all.
        expires = assertion.not_on_or_after
        if not tx.remember_assertion(tenant.id, assertion.assertion_id, expires):
            raise _Refused(
                _error(
                    "response.replay",
                    f"This response (assertion {assertion.assertion_id!r}) was already used to "
                    "sign in; each response is good for one sign-in.",
                    where="Assertion/@ID",
                    suggestion="Sign in again.",
                )
            )

    @staticmethod
    def _profile(connection: SamlConnection, assertion: Assertion) -> Profile:
        """The person the assertion describes, through the connection's attribute mapping.

        Its ``email`` is the identity the sign-in matches: the NameID when it
        is an email address, else the mapped email attribute.
        """
        from pbidentity.saml._attributes import map_profile

        return map_profile(
            assertion.attributes,
            mapping=connection.attribute_mapping or None,
            name_id=assertion.name_id,
            name_id_format=assertion.name_id_format,
        )

    @staticmethod
    def _attribute_findings(connection: SamlConnection, assertion: Assertion) -> list[Finding]:
        """What the test sign-in tells the admin about the attributes the IdP sends."""
        from pbidentity.saml._attributes import check_attributes
        from pbidentity.saml._identity import identity_findings

        _, findings = check_attributes(
            list(assertion.attributes),
            mapping=connection.attribute_mapping or None,
            name_id=assertion.name_id,
            name_id_format=assertion.name_id_format,
        )
        return [*findings, *identity_findings(SamlService._profile(connection, assertion))]

    def _find_member(self, tx: Transaction, tenant: Tenant, email: str) -> Member | None:
        # Exact identities, never the lossy fold: see pbidentity.saml._identity.
        from pbidentity.saml._identity import IdentityRefused
        from pbidentity.saml._identity import find_member

        try:
            return find_member(tx, tenant.id, email)
        except IdentityRefused as refused:
            raise _Refused(refused.finding) from None

    def _sign_in(
        self,
        tenant: Tenant,
        connection: SamlConnection,
        assertion: Assertion,
        relay: str | None,
        idp_initiated: bool,
    ) -> SignIn:
        from pbidentity.saml._identity import other_email

        profile = self._profile(connection, assertion)
        email = profile.email
        trail = [
            f"response signed by IdP certificate #{assertion.signed_by + 1}",
            "started at the identity provider" if idp_initiated else "answers our sign-in request",
        ]
        ignored = other_email(profile)
        if ignored is not None:
            trail.append(f"the email attribute {ignored} is not the NameID {email}; not matched")
        if not email:
            raise _Refused(
                _error(
                    "member.no_email",
                    "The identity provider sent no email address, so the sign-in cannot find "
                    "the member.",
                    suggestion="In the IdP app, set the NameID format to EmailAddress or add an "
                    "'email' attribute statement.",
                )
            )
        signed_in = {"idp_initiated": idp_initiated, "created": False}
        # The usual case (a known, active member) is one write transaction:
        # the assertion id consumed, the member found, the sign-in recorded.
        with self.storage.transaction() as tx:
            self._remember(tx, tenant, assertion)
            member = self._find_member(tx, tenant, email)
            if member is not None:
                trail.append(f"matched member {member.id} by email {email}")
                if member.active:
                    self._signed_in_event(tx, tenant, member, signed_in)
        if member is None:
            if connection.unknown_members != "create":
                raise _Refused(
                    _error(
                        "member.unknown",
                        f"{email} is not a member of this workspace.",
                        suggestion="Ask an admin to assign you the app in the identity provider "
                        "(with provisioning on, that creates your membership).",
                    )
                )
            member = self._create_member(tenant, email, profile)
            signed_in["created"] = True
            trail.append(f"created member {member.id} just in time for {email}")
            if member.active:
                with self.storage.transaction() as tx:
                    self._signed_in_event(tx, tenant, member, signed_in)
        if not member.active:
            raise _Refused(
                _error(
                    "member.deactivated",
                    f"The membership of {email} in this workspace is deactivated.",
                    suggestion="Ask an admin to reactivate it (in the identity provider when "
                    "provisioning manages it).",
                )
            )
        return SignIn(
            tenant=tenant,
            member=member,
            created=signed_in["created"],
            name_id=assertion.name_id,
            session_index=assertion.session_index,
            attributes=assertion.attributes,
            relay_state=relay,
            idp_initiated=idp_initiated,
            trail=tuple(trail),
            request_id=assertion.in_response_to,
        )

    def _signed_in_event(
        self, tx: Transaction, tenant: Tenant, member: Member, data: Mapping[str, Any]
    ) -> None:
        self._event(tx, tenant, "member.signed_in", None, "saml", data, subject_id=member.id)

    def _create_member(self, tenant: Tenant, email: str, profile: Profile) -> Member:
        """Create the member ``email`` just in time, named from the profile.

        Its userName and only email are the identity the IdP authenticated
        (never an email attribute naming someone else: a member's emails are
        matching keys of later sign-ins and links).
        """
        from pbidentity.exceptions import LinkConflictError
        from pbidentity.members import Members

        members = Members(self.storage, clock=self.clock, new_id=self.new_id, roles=self.roles)
        try:
            return members.add(
                tenant.slug,
                email,
                given_name=profile.first_name,
                family_name=profile.last_name,
                email=email,
                actor="saml",
            )
        except (InputError, LinkConflictError):
            # The folded userName or email was taken since the lookup: by a
            # first sign-in of the same person at once (then it is that
            # member), or by someone whose address only looks like this one
            # (then _find_member refuses it as a look-alike).
            with self.storage.transaction(write=False) as tx:
                found = self._find_member(tx, tenant, email)
            if found is None:
                raise _Refused(
                    _error(
                        "member.unknown",
                        f"The membership of {email} changed while you were signing in.",
                        suggestion="Sign in again.",
                    )
                ) from None
            return found

    def _authorize(
        self,
        tenant: Tenant,
        connection: SamlConnection,
        assertion: Assertion,
        relay: str | None,
    ) -> Authorized:
        findings: list[Finding] = [
            Finding(
                code="test.signed_by",
                severity="info",
                message=f"The response was signed by certificate #{assertion.signed_by + 1} of "
                "the pending configuration.",
            )
        ]
        offset = timedelta(seconds=abs(assertion.clock_offset))
        if offset > _CLOCK_ERROR:
            raise _Refused(
                _error(
                    "test.clock",
                    f"The identity provider's clock is {int(offset.total_seconds())} seconds "
                    "away from this server's; sign-ins would fail at random.",
                    suggestion="Check the time (NTP) of the server and, for a self-hosted IdP, "
                    "of the IdP.",
                )
            )
        if offset > _CLOCK_WARN:
            findings.append(
                Finding(
                    code="test.clock",
                    severity="warning",
                    message=f"The identity provider's clock is {int(offset.total_seconds())} "
                    "seconds away from this server's.",
                    suggestion="Check the server's time synchronisation (NTP).",
                )
            )
        profile = self._profile(connection, assertion)
        report = Report((*findings, *self._attribute_findings(connection, assertion)))
        if not report.ok:
            raise _Refused(report.errors[0])
        now = self.clock()
        with self.storage.transaction() as tx:
            self._remember(tx, tenant, assertion)
            member = self._find_member(tx, tenant, profile.email) if profile.email else None
            if member is None:
                report = report.plus(
                    (
                        Finding(
                            code="test.member",
                            severity="warning",
                            message=f"You signed in as {profile.email or assertion.name_id}, "
                            "who is not a member of this workspace; members sign in with the "
                            "email address of their membership.",
                            suggestion="Check that the IdP sends members' email addresses.",
                        ),
                    )
                )
            current = self._connections(tx, tenant)
            pending = current.pending
            if pending is None or pending.id != connection.id:
                raise _Refused(
                    _error(
                        "connection.changed",
                        "The pending SAML configuration changed while you were signing in.",
                        suggestion="Click Save & authorize again.",
                    )
                )
            if current.previous is not None:
                tx.delete_saml_connection(tenant.id, current.previous.id)
            previous = None
            if current.active is not None:
                previous = attrs.evolve(
                    current.active, state="previous", version=current.active.version + 1
                )
                tx.replace_saml_connection(previous, expected_version=current.active.version)
            active = attrs.evolve(
                pending,
                state="active",
                activated=now,
                last_attempt=report.to_dict(),
                version=pending.version + 1,
            )
            tx.replace_saml_connection(active, expected_version=pending.version)
            self._event(tx, tenant, "saml.activated", active, "saml", {"idp": active.idp.entity_id})
        log.info("tenant %s activated SAML configuration %s", tenant.slug, active.id)
        return Authorized(
            tenant=tenant,
            connection=active,
            previous=previous,
            report=report,
            name_id=assertion.name_id,
            member=member,
            relay_state=relay,
            request_id=assertion.in_response_to,
        )

    def _record_attempt(self, tenant: Tenant, report: Report) -> None:
        """Keep the failed test sign-in's findings on the pending connection, for the admin page."""
        try:
            with self.storage.transaction() as tx:
                pending = self._connections(tx, tenant).pending
                if pending is None:
                    return
                tx.replace_saml_connection(
                    attrs.evolve(
                        pending, last_attempt=report.to_dict(), version=pending.version + 1
                    ),
                    expected_version=pending.version,
                )
                code = report.errors[0].code if report.errors else ""
                self._event(tx, tenant, "saml.activation_failed", pending, "saml", {"code": code})
        except PbIdentityError:
            log.exception("could not record the failed test sign-in of tenant %s", tenant.slug)

    def _event(
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

    # -- HTTP ------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Serve one request to the metadata, login or ACS endpoint of a tenant."""
        try:
            return self._dispatch(request)
        except StorageUnavailableError:
            return _page(
                503,
                "Sign-in is unavailable",
                "The app cannot reach its database right now. Try again in a minute.",
                extra=(("Retry-After", "5"),),
            )
        except Exception:
            error_id = secrets.token_hex(6)
            log.exception("SAML request failed (error id %s)", error_id)
            return _page(
                500,
                "Sign-in failed",
                f"An unexpected error occurred (error id {error_id}).",
            )

    def _dispatch(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        # No workspace slug has a NUL, and PostgreSQL refuses to look one up.
        if len(parts) != 2 or "\x00" in request.path:
            return _page(404, "Not found", "There is no SAML endpoint here.")
        slug, endpoint = parts
        method = request.method.upper()
        if endpoint == "metadata" and method in ("GET", "HEAD"):
            with self.storage.transaction(write=False) as tx:
                if tx.find_tenant(slug) is None:
                    return _page(404, "Not found", f"There is no workspace {slug!r}.")
            body = sp_metadata(self.service_provider(slug))
            return Response(
                status=200,
                headers=(("Content-Type", "application/samlmetadata+xml"),),
                body=b"" if method == "HEAD" else body,
            )
        if endpoint == "login" and method == "GET":
            relay = request.query_value("RelayState") or request.query_value("next")
            try:
                return self.begin_sign_in(slug, relay_state=relay, request=request).to_response()
            except NotFoundError as error:
                return _page(404, "Single sign-on is not available", str(error))
        if endpoint == "acs" and method == "POST":
            return self._acs(request, slug)
        if endpoint == "finish" and method == "GET":
            return self._finish(request, slug)
        if endpoint in _ALLOWED:
            allowed = _ALLOWED[endpoint]
            return _page(
                405, "Method not allowed", f"Use {allowed} here.", extra=(("Allow", allowed),)
            )
        return _page(404, "Not found", "There is no SAML endpoint here.")

    def _result(self, request: Request, outcome: SignInOutcome) -> Response:
        if self.on_result is not None:
            return self.on_result(request, outcome)
        return default_result_page(outcome)

    def _acs(self, request: Request, slug: str) -> Response:
        form = self._acs_form(request)
        if isinstance(form, SignInFailure):
            return self._result(request, form)
        outcome = self.consume(slug, form["SAMLResponse"], form.get("RelayState"))
        if isinstance(outcome, SignInFailure):
            # A refusal grants nothing, so it needs no binding to the browser.
            return self._result(request, outcome)
        code = self._new_secret()
        document = _outcome_document(outcome)
        with self.storage.transaction() as tx:
            tx.add_saml_outcome(
                outcome.tenant.id, _code_hash(code), document, self.clock() + _OUTCOME_LIFETIME
            )
        base = self.config.public_url.rstrip("/") + self.config.prefix.rstrip("/")
        finish = f"{base}/{quote(slug, safe='')}/finish?{urlencode({'code': code})}"
        # 303: the browser follows with a top-level GET, which carries its
        # SameSite=Lax cookies even after the IdP's cross-site POST.
        return Response(
            status=303,
            headers=(("Location", finish), *_NO_STORE, ("Referrer-Policy", "no-referrer")),
        )

    def _acs_form(self, request: Request) -> dict[str, str] | SignInFailure:
        """The ACS form fields, or the refusal of a body that is none (413 or 400)."""
        if request.body_truncated or len(request.body) > self.config.max_body_bytes:
            return _form_refused(
                _error(
                    "response.too_large",
                    f"The sign-in response is larger than {self.config.max_body_bytes} bytes.",
                ),
                413,
            )
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        fields: list[tuple[str, str]] = []
        if content_type == "application/x-www-form-urlencoded":
            try:
                # A form body is ASCII (everything else is percent-encoded),
                # and what the escapes stand for is UTF-8.
                fields = parse_qsl(
                    request.body.decode("ascii"),
                    max_num_fields=10,
                    encoding="utf-8",
                    errors="strict",
                )
            except ValueError:  # more fields than any IdP sends, or not text
                return _form_refused(
                    _error(
                        "request.malformed",
                        "The sign-in form is malformed: it is not URL-encoded UTF-8 text, or "
                        "it has more than 10 fields.",
                    ),
                    400,
                )
        names = [name for name, _ in fields]
        for name in ("SAMLResponse", "RelayState"):
            if names.count(name) > 1:
                return _form_refused(
                    _error("request.malformed", f"The sign-in form has the field {name} twice."),
                    400,
                )
        form = dict(fields)
        if not form.get("SAMLResponse"):
            return _form_refused(
                _error(
                    "response.missing",
                    "The request carries no SAMLResponse form field; the identity provider "
                    "must POST the response here.",
                ),
                400,
            )
        return form

    def _finish(self, request: Request, slug: str) -> Response:
        """Hand a verified outcome to the host app, in the browser that started the sign-in."""
        code = request.query_value("code") or ""
        nonces = _browser_nonces(request)
        now = self.clock()
        outcome: SignInOutcome | None = None
        used: str | None = None
        tenant: Tenant | None = None
        # Without a code there is nothing to take: no write transaction.
        with self.storage.transaction(write=bool(code)) as tx:
            tenant = tx.find_tenant(slug)
            document = (
                tx.take_saml_outcome(tenant.id, _code_hash(code), now)
                if tenant is not None and code
                else None
            )
            if tenant is not None and document is not None:
                data = json.loads(document)
                binding = data.get("binding")
                # The whole point: an outcome that answers a request finishes
                # only where the request's nonce is, in the browser that
                # started it. An IdP-initiated one has no binding by nature.
                matches = [n for n in nonces if hmac.compare_digest(_binding(n), binding or "")]
                if binding is not None and not matches:
                    outcome = _finish_refused(
                        tenant,
                        _error(
                            "signin.other_browser",
                            "This sign-in was not started in this browser, so it cannot "
                            "finish here.",
                            suggestion="Start the sign-in again from this browser; if this "
                            "keeps happening, allow cookies for this site.",
                        ),
                        data.get("purpose", "sign_in"),
                    )
                else:
                    used = matches[0] if matches else None
                    outcome = self._outcome_from(tx, tenant, data)
        if outcome is None:
            outcome = _finish_refused(
                tenant,
                _error(
                    "signin.finish",
                    "This sign-in link was already used or has expired.",
                    suggestion="Sign in again.",
                ),
                "sign_in",
                status=400,
            )
        if isinstance(outcome, SignInFailure):
            log.warning(
                "SAML sign-in not finished for workspace %s: %s", slug, outcome.finding.code
            )
        response = self._result(request, outcome)
        extra: list[tuple[str, str]] = []
        if response.header("referrer-policy") is None:
            # The page's URL holds the (now spent) code: no need to send it on.
            extra.append(("Referrer-Policy", "no-referrer"))
        if used is not None:
            rest = [n for n in nonces if n != used]
            extra.append(("Set-Cookie", self._binding_cookie(slug, rest)))
        return attrs.evolve(response, headers=(*response.headers, *extra))

    def _outcome_from(
        self, tx: Transaction, tenant: Tenant, data: Mapping[str, Any]
    ) -> SignInOutcome:
        """The outcome kept at the ACS, with its tenant, member and connections read again."""
        member_id = data.get("member_id")
        member = tx.get_member(tenant.id, member_id) if member_id else None
        if data["kind"] == "authorize":
            found = {c.id: c for c in tx.saml_connections(tenant.id)}
            connection = found.get(data["connection_id"])
            if connection is None:
                return _finish_refused(
                    tenant,
                    _error(
                        "connection.changed",
                        "The SAML configuration changed while this sign-in was under way.",
                        suggestion="Click Save & authorize again.",
                    ),
                    "authorize",
                )
            return Authorized(
                tenant=tenant,
                connection=connection,
                previous=found.get(data.get("previous_id") or ""),
                report=_report_from(data["report"]),
                name_id=data["name_id"],
                member=member,
                relay_state=data["relay_state"],
                request_id=data["request_id"],
            )
        if member is None:
            return _finish_refused(
                tenant,
                _error(
                    "member.unknown",
                    "The membership was removed while signing in.",
                    suggestion="Ask an admin of the workspace.",
                ),
                "sign_in",
            )
        return SignIn(
            tenant=tenant,
            member=member,
            created=data["created"],
            name_id=data["name_id"],
            session_index=data["session_index"],
            attributes={name: tuple(values) for name, values in data["attributes"].items()},
            relay_state=data["relay_state"],
            idp_initiated=data["idp_initiated"],
            trail=tuple(data["trail"]),
            request_id=data["request_id"],
        )


_ALLOWED = {"metadata": "GET, HEAD", "login": "GET", "acs": "POST", "finish": "GET"}


def _form_refused(finding: Finding, status: int) -> SignInFailure:
    return SignInFailure(tenant=None, purpose="sign_in", report=Report((finding,)), status=status)


def _finish_refused(
    tenant: Tenant | None,
    finding: Finding,
    purpose: Literal["sign_in", "authorize"],
    *,
    status: int = 403,
) -> SignInFailure:
    return SignInFailure(tenant=tenant, purpose=purpose, report=Report((finding,)), status=status)


def _outcome_document(outcome: SignIn | Authorized) -> str:
    """A verified outcome as JSON, for the finish step (ids, not copies, of stored things)."""
    parsed = _REQUEST_ID.fullmatch(outcome.request_id or "")
    common = {
        "binding": parsed.group(3) if parsed else None,
        "name_id": outcome.name_id,
        "relay_state": outcome.relay_state,
        "request_id": outcome.request_id,
    }
    if isinstance(outcome, Authorized):
        return json.dumps(
            {
                **common,
                "kind": "authorize",
                "purpose": "authorize",
                "connection_id": outcome.connection.id,
                "previous_id": outcome.previous.id if outcome.previous else None,
                "report": outcome.report.to_dict(),
                "member_id": outcome.member.id if outcome.member else None,
            }
        )
    return json.dumps(
        {
            **common,
            "kind": "sign_in",
            "purpose": "sign_in",
            "member_id": outcome.member.id,
            "created": outcome.created,
            "session_index": outcome.session_index,
            "attributes": {name: list(values) for name, values in outcome.attributes.items()},
            "idp_initiated": outcome.idp_initiated,
            "trail": list(outcome.trail),
        }
    )


def _report_from(data: Mapping[str, Any]) -> Report:
    return Report(
        tuple(
            Finding(
                code=f["code"],
                severity=f["severity"],
                message=f["message"],
                where=f["where"],
                suggestion=f["suggestion"],
            )
            for f in data["findings"]
        )
    )


def _in_response_to(saml_response: str, max_bytes: int) -> str | None:
    """The InResponseTo of a posted response, read only to route it (it is verified later).

    Malformed input is refused here with the same finding verification would give.
    """
    if len(saml_response) > max_bytes * 4 // 3 + 4:
        raise _Refused(
            _error("response.too_large", f"The sign-in response is larger than {max_bytes} bytes."),
            status=413,
        )
    try:
        xml = base64.b64decode("".join(saml_response.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise _Refused(
            _error("response.malformed", "The SAMLResponse is not valid base64."), status=400
        ) from error
    try:
        from lxml import etree
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise _Refused(_error("saml.unavailable", _SAML_EXTRA), status=500) from error
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as error:
        raise _Refused(
            _error("response.malformed", f"The SAMLResponse is not well-formed XML: {error}."),
            status=400,
        ) from error
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise _Refused(
            _error(
                "response.malformed",
                "The SAMLResponse carries a document type declaration, which SAML forbids.",
            ),
            status=400,
        )
    value = root.get("InResponseTo")
    if value is None:
        claimed = root.xpath(".//*[@InResponseTo]")
        if claimed:
            # No InResponseTo on the Response, yet something in it answers a
            # request: a response to someone's SP-initiated sign-in, stripped
            # to pass as one the IdP started. Refused wherever the claim is.
            name = etree.QName(claimed[0]).localname
            raise _Refused(
                _error(
                    "response.in_response_to",
                    f"The response passes for one the identity provider started, yet its {name} "
                    "answers a sign-in request.",
                    where=f"{name}/@InResponseTo",
                    suggestion="Start the sign-in again from the app.",
                )
            )
    return None if value is None else str(value)


def _page(
    status: int, title: str, message: str, *, extra: Sequence[tuple[str, str]] = ()
) -> Response:
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(message)}</p></body></html>"
    )
    return Response(status=status, headers=(*_HTML, *_NO_STORE, *extra), body=body.encode())


def default_result_page(outcome: SignInOutcome) -> Response:
    """A plain page for an ACS outcome, for apps that pass no ``on_result``."""
    if isinstance(outcome, SignInFailure):
        finding = outcome.finding
        text = finding.message + (f" {finding.suggestion}" if finding.suggestion else "")
        return _page(outcome.status, "Sign-in refused", text)
    if isinstance(outcome, Authorized):
        return _page(
            200,
            "SAML configuration active",
            f"The test sign-in as {outcome.name_id} succeeded; the new configuration is active.",
        )
    return _page(200, "Signed in", f"Signed in as {outcome.member.user_name}.")
