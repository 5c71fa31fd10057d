"""The FastAPI (Starlette) integration: the endpoints in the app, the services as dependencies.

::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from pbidentity.fastapi import PbIdentity, pbidentity_scim

    app = FastAPI()
    PbIdentity(database_url="postgresql+psycopg://...").init_app(app)

    @app.post("/settings/scim/token")
    def new_token(scim: Annotated[ScimService, Depends(pbidentity_scim)]):
        ...  # a plain def: the service's calls block, FastAPI runs them in a thread

The endpoints are served by :class:`pbidentity.asgi.AsgiApp`, so the core
runs in a worker thread and the body is read up to each handler's cap,
never by FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from concurrent.futures import Executor

from fastapi import Request
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.routing import Route

from pbidentity.asgi import AsgiApp
from pbidentity.domain import Member
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import NotFoundError
from pbidentity.http import Handler
from pbidentity.http import Router
from pbidentity.saml import SamlService
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimService

__all__ = ["PbIdentity", "SessionMember", "pbidentity_member", "pbidentity_saml", "pbidentity_scim"]

#: Reads the host app's session: the signed-in member's (workspace slug, member id), or ``None``.
SessionMember = Callable[[Request], "tuple[str, str] | None"]


class PbIdentity:
    """Serve SCIM (and SAML) under their prefixes in a FastAPI or Starlette app.

    The SCIM service is ``scim`` if given, else one built on ``database_url``
    (with ``scim_config``); ``saml`` is a SAML handler to serve too, and
    ``mounts`` more handlers by prefix. ``session_member`` reads the host
    app's session: it returns the signed-in member's workspace slug and id
    (what the app stored when ``on_result`` gave it a
    :class:`~pbidentity.saml.SignIn`), or ``None``; :func:`pbidentity_member`
    uses it.
    :meth:`init_app` adds the routes to an app; :attr:`asgi` is the same
    endpoints as an ASGI app, to mount or to run on its own.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        scim: ScimService | None = None,
        scim_config: ScimConfig | None = None,
        saml: SamlService | None = None,
        mounts: Mapping[str, Handler] | None = None,
        scim_prefix: str = "/scim/v2",
        saml_prefix: str = "/saml",
        executor: Executor | None = None,
        session_member: SessionMember | None = None,
    ) -> None:
        #: How the host app's session names the signed-in member, for
        #: :func:`pbidentity_member`.
        self.session_member = session_member
        if scim is None and database_url:
            from pbidentity.storage import open_storage

            scim = ScimService(open_storage(database_url), scim_config)
        self._scim = scim
        self._saml = saml
        served = dict(mounts or {})
        if scim is not None:
            served[scim_prefix] = scim
        if saml is not None:
            served[saml_prefix] = saml
        if not served:
            raise ConfigurationError(
                "pbidentity has nothing to serve: pass database_url=, scim= or saml= to PbIdentity"
            )
        self.router = Router(served)
        self.asgi = AsgiApp(self.router, executor=executor)

    @property
    def scim(self) -> ScimService:
        """The SCIM service, for the host app's own endpoints (settings pages, admin)."""
        if self._scim is None:
            raise ConfigurationError("pbidentity was given no SCIM service")
        return self._scim

    @property
    def saml(self) -> SamlService:
        """The SAML service given to the integration."""
        if self._saml is None:
            raise ConfigurationError("pbidentity was given no SAML service (saml=...)")
        return self._saml

    def routes(self) -> list[BaseRoute]:
        """Starlette routes for every prefix: the prefix itself and every path below it.

        They take every method and stay out of the OpenAPI schema; the core
        answers 405 itself where it must.
        """
        routes: list[BaseRoute] = []
        for mount in self.router.mounts:
            name = f"pbidentity{mount.prefix}"
            if mount.prefix:
                routes.append(Route(mount.prefix, self.asgi, name=name, include_in_schema=False))
            routes.append(
                Route(
                    f"{mount.prefix}/{{rest:path}}", self.asgi, name=name, include_in_schema=False
                )
            )
        return routes

    def init_app(self, app: Starlette) -> None:
        """Serve the endpoints in ``app`` (FastAPI or Starlette), the services as dependencies."""
        # Added to the app's own route list: APIRouter.include_router only
        # copies routes that have a fixed set of methods.
        app.router.routes.extend(self.routes())
        app.state.pbidentity = self


def _extension(request: Request) -> PbIdentity:
    extension = getattr(request.app.state, "pbidentity", None)
    if not isinstance(extension, PbIdentity):
        raise ConfigurationError("pbidentity is not set up in this app: call PbIdentity.init_app")
    return extension


def pbidentity_scim(request: Request) -> ScimService:
    """FastAPI dependency: the app's SCIM service (``Depends(pbidentity_scim)``)."""
    return _extension(request).scim


def pbidentity_saml(request: Request) -> SamlService:
    """FastAPI dependency: the app's SAML service (``Depends(pbidentity_saml)``)."""
    return _extension(request).saml


def pbidentity_member(request: Request) -> Member:
    """FastAPI dependency: the signed-in member (``Depends(pbidentity_member)``).

    Read again from storage on each request, so that a member the IdP has
    deactivated since signing in is refused at once: 401 when nobody is
    signed in (or the member is gone), 403 when the member is deactivated.
    Declare it in a plain ``def`` endpoint or dependency chain: it reads the
    database, and FastAPI runs sync dependencies in a worker thread.
    """
    from fastapi import HTTPException

    from pbidentity.members import Members

    extension = _extension(request)
    if extension.session_member is None:
        raise ConfigurationError(
            "pbidentity_member needs to know the app's session: PbIdentity(session_member=...)"
        )
    signed_in = extension.session_member(request)
    if signed_in is None:
        raise HTTPException(status_code=401, detail="Sign in first.")
    slug, member_id = signed_in
    storage = extension.scim.storage if extension._scim is not None else extension.saml.storage
    try:
        member = Members(storage).get(slug, member_id)
    except NotFoundError:
        raise HTTPException(status_code=401, detail="Sign in again.") from None
    if not member.active:
        raise HTTPException(status_code=403, detail="This membership is deactivated.")
    return member
