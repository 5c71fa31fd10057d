"""The front door: one object a host app builds once, from which every service comes.

:class:`PbIdentity` opens (or takes) the storage and builds the SCIM service,
the SAML service, the admin, the members and the event dispatcher on it,
all with one role set, one clock and one id factory, so that nothing can
disagree about which roles exist. The adapters (:mod:`pbidentity.wsgi`,
:mod:`pbidentity.asgi`, :mod:`pbidentity.flask`, :mod:`pbidentity.fastapi`),
the command line and ``pbidentity serve`` all take it.

It must stay light to import: ``import pbidentity`` imports this module, so
the services, the SQL backend and the SAML toolkit are imported only when an
object is built (and SAML only when it is configured).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING
from typing import Any

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._clock import new_id as _new_id
from pbidentity._clock import utc_now
from pbidentity.exceptions import ConfigurationError
from pbidentity.http import Handler
from pbidentity.http import Mount
from pbidentity.http import Router

if TYPE_CHECKING:
    from pbidentity.admin import Admin
    from pbidentity.events import EventDispatcher
    from pbidentity.members import Members
    from pbidentity.roles import RoleSet
    from pbidentity.saml import ResultHandler
    from pbidentity.saml import SamlConfig
    from pbidentity.saml import SamlService
    from pbidentity.scim import ScimConfig
    from pbidentity.scim import ScimService
    from pbidentity.storage import Storage

__all__ = ["SCIM_PREFIX", "PbIdentity"]

#: Where the adapters serve SCIM unless told otherwise (SAML's prefix is
#: :attr:`SamlConfig.prefix <pbidentity.saml.SamlConfig.prefix>`, which its
#: SP URLs are built from).
SCIM_PREFIX = "/scim/v2"


class PbIdentity:
    """pbidentity for one app: its storage, roles and configuration, and every service on them.

    ``storage`` is a database URL (``sqlite:///pbidentity.db``,
    ``postgresql+psycopg://...``, ``memory://``) or a
    :class:`~pbidentity.storage.Storage` the app built (``SqlStorage(engine)``
    on its own engine); with a URL, ``upgrade`` migrates an older schema on
    first use instead of refusing it. Either way the storage is this
    object's: :meth:`close` (or leaving a ``with`` block) releases it.

    ``roles`` is the app's :class:`~pbidentity.roles.RoleSet`, most
    privileged first (admin, maker, contributor, viewer by default): the
    values the SCIM role extension accepts, what tenant policies may map
    groups to, and what members created by the app or just in time at a
    SAML sign-in get. ``scim`` is the :class:`~pbidentity.scim.ScimConfig`;
    ``saml`` the :class:`~pbidentity.saml.SamlConfig`, or ``None`` for no
    SAML (python3-saml, the ``saml`` extra, is then never imported);
    ``on_result`` the app's handler of sign-in outcomes and
    ``fetch_metadata`` a replacement for the safe metadata fetcher (both
    for SAML). ``clock``, ``new_id`` and ``new_secret`` (SAML's browser
    binding nonces and one-time codes, unguessable by default) are
    injectable for tests.

    ::

        identity = PbIdentity("sqlite:///pbidentity.db", saml=SamlConfig(public_url=...))
        identity.admin.create_tenant("acme-corp")
        application = pbidentity.wsgi.make_app(identity)  # SCIM and SAML
    """

    def __init__(
        self,
        storage: str | Storage,
        *,
        roles: RoleSet | None = None,
        scim: ScimConfig | None = None,
        saml: SamlConfig | None = None,
        on_result: ResultHandler | None = None,
        fetch_metadata: Callable[..., Any] | None = None,
        clock: Clock = utc_now,
        new_id: IdFactory = _new_id,
        new_secret: IdFactory | None = None,
        upgrade: bool = False,
    ) -> None:
        from pbidentity.admin import Admin
        from pbidentity.events import EventDispatcher
        from pbidentity.members import Members
        from pbidentity.roles import RoleSet
        from pbidentity.scim import ScimService

        saml_only = (on_result, fetch_metadata, new_secret)
        if saml is None and any(given is not None for given in saml_only):
            # Without this the handler would be dropped silently and sign-ins
            # would never reach the app.
            raise ConfigurationError(
                "on_result, fetch_metadata and new_secret are for SAML, which is not configured: "
                "pass saml=SamlConfig(public_url=...) too"
            )
        if isinstance(storage, str):
            from pbidentity.storage import open_storage

            storage = open_storage(storage, upgrade=upgrade)
        elif upgrade:
            raise ConfigurationError(
                "upgrade=True applies to a database URL; a storage the app built is "
                "migrated with `pbidentity db upgrade` or its own upgrade option"
            )
        #: Where everything is kept; :meth:`close` releases it.
        self.storage: Storage = storage
        #: The app's roles, shared by every service below.
        self.roles: RoleSet = roles if roles is not None else RoleSet()
        self.clock = clock
        self.new_id = new_id
        #: The SCIM 2.0 service; serve it under ``/scim/v2``.
        self.scim: ScimService = ScimService(
            storage, scim, roles=self.roles, clock=clock, new_id=new_id
        )
        #: Tenants, their SCIM switch, tokens and policies (settings pages, CLI).
        self.admin: Admin = Admin(storage, clock=clock, new_id=new_id, roles=self.roles)
        #: A tenant's members as the app reads and edits them.
        self.members: Members = Members(
            storage,
            roles=self.roles,
            clock=clock,
            new_id=new_id,
            role_urn=self.scim.config.role_urn,
        )
        #: Delivers recorded events to the app's handlers (``events.subscribe``).
        self.events: EventDispatcher = EventDispatcher(
            storage, clock=clock, role_urn=self.scim.config.role_urn
        )
        self._saml: SamlService | None = None
        if saml is not None:
            from pbidentity.saml import SamlService

            secrets = {} if new_secret is None else {"new_secret": new_secret}
            self._saml = SamlService(
                storage,
                saml,
                on_result=on_result,
                clock=clock,
                new_id=new_id,
                fetch=fetch_metadata,
                roles=self.roles,
                **secrets,
            )

    @property
    def saml(self) -> SamlService:
        """The SAML 2.0 service; :class:`ConfigurationError` when SAML is not configured."""
        if self._saml is None:
            raise ConfigurationError(
                "SAML sign-in is not configured: build PbIdentity(..., "
                "saml=SamlConfig(public_url='https://app.example'))"
            )
        return self._saml

    @property
    def saml_enabled(self) -> bool:
        """Whether SAML is configured (:attr:`saml` then exists)."""
        return self._saml is not None

    def router(
        self, *, scim_prefix: str = SCIM_PREFIX, mounts: Mapping[str, Handler] | None = None
    ) -> Router:
        """The handlers to serve, by prefix: SCIM, SAML (when configured) and ``mounts``.

        SAML is served under its configuration's ``prefix`` (``/saml``), the
        one its SP URLs name. Every adapter serves this router; an adapter
        for another framework can too.
        """
        served = [Mount(scim_prefix, self.scim)]
        if self._saml is not None:
            served.append(Mount(self._saml.config.prefix, self._saml))
        served.extend(Mount(prefix, handler) for prefix, handler in (mounts or {}).items())
        return Router(served)

    def close(self) -> None:
        """Write the SCIM requests still buffered, then release the storage and its connections."""
        if self.scim.activity is not None:
            self.scim.activity.close()
        self.storage.close()

    def __enter__(self) -> PbIdentity:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        saml = "on" if self._saml is not None else "off"
        storage = type(self.storage).__name__
        return f"<PbIdentity storage={storage} roles={self.roles.names!r} saml={saml}>"
