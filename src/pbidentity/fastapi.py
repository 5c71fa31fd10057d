"""The FastAPI (Starlette) integration: a PbIdentity's endpoints, its services as dependencies.

::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    import pbidentity
    import pbidentity.fastapi
    from pbidentity.fastapi import get_identity

    app = FastAPI()
    identity = pbidentity.PbIdentity("postgresql+psycopg://...")
    pbidentity.fastapi.init_app(app, identity)    # /scim/v2 (and /saml)

    @app.post("/settings/scim/token")
    def new_token(identity: Annotated[pbidentity.PbIdentity, Depends(get_identity)]):
        ...  # a plain def: the services' calls block, FastAPI runs them in a thread

The endpoints are served by :class:`pbidentity.asgi.AsgiApp`, so the core
runs in a worker thread and the body is read up to each handler's cap,
never by FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from concurrent.futures import Executor

import attrs
from fastapi import Request
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.routing import Route

from pbidentity._front import SCIM_PREFIX
from pbidentity._front import PbIdentity
from pbidentity.asgi import AsgiApp
from pbidentity.domain import Member
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import NotFoundError
from pbidentity.http import Handler
from pbidentity.http import Router
from pbidentity.saml import SamlService
from pbidentity.scim import ScimService

__all__ = [
    "SessionMember",
    "get_identity",
    "init_app",
    "pbidentity_member",
    "pbidentity_saml",
    "pbidentity_scim",
]

#: Reads the host app's session: the signed-in member's (workspace slug, member id), or ``None``.
SessionMember = Callable[[Request], "tuple[str, str] | None"]


@attrs.frozen
class _Served:
    """What :func:`init_app` leaves in ``app.state.pbidentity`` for the dependencies."""

    identity: PbIdentity
    session_member: SessionMember | None


def init_app(
    app: Starlette,
    identity: PbIdentity,
    *,
    scim_prefix: str = SCIM_PREFIX,
    mounts: Mapping[str, Handler] | None = None,
    executor: Executor | None = None,
    session_member: SessionMember | None = None,
) -> PbIdentity:
    """Serve ``identity``'s endpoints in ``app`` (FastAPI or Starlette) and its services.

    SCIM is served under ``scim_prefix``, SAML (when configured) under its
    configuration's prefix, and ``mounts`` are more handlers by prefix; the
    routes take every method and stay out of the OpenAPI schema. The core
    runs on ``executor`` (see :class:`~pbidentity.asgi.AsgiApp`).
    ``session_member`` reads the host app's session: it returns the
    signed-in member's workspace slug and id (what the app stored when
    ``on_result`` gave it a :class:`~pbidentity.saml.SignIn`), or ``None``;
    :func:`pbidentity_member` uses it. Returns ``identity``.
    """
    router = identity.router(scim_prefix=scim_prefix, mounts=mounts)
    # Added to the app's own route list: APIRouter.include_router only
    # copies routes that have a fixed set of methods.
    app.router.routes.extend(_routes(router, AsgiApp(router, executor=executor)))
    app.state.pbidentity = _Served(identity, session_member)
    return identity


def _routes(router: Router, asgi: AsgiApp) -> list[BaseRoute]:
    """Starlette routes for every prefix: the prefix itself and every path below it."""
    routes: list[BaseRoute] = []
    for mount in router.mounts:
        name = f"pbidentity{mount.prefix}"
        if mount.prefix:
            routes.append(Route(mount.prefix, asgi, name=name, include_in_schema=False))
        routes.append(
            Route(f"{mount.prefix}/{{rest:path}}", asgi, name=name, include_in_schema=False)
        )
    return routes


def _served(request: Request) -> _Served:
    served = getattr(request.app.state, "pbidentity", None)
    if not isinstance(served, _Served):
        raise ConfigurationError(
            "pbidentity is not set up in this app: call pbidentity.fastapi.init_app(app, identity)"
        )
    return served


def get_identity(request: Request) -> PbIdentity:
    """FastAPI dependency: the app's :class:`~pbidentity.PbIdentity` (``Depends(get_identity)``)."""
    return _served(request).identity


def pbidentity_scim(request: Request) -> ScimService:
    """FastAPI dependency: the app's SCIM service (``Depends(pbidentity_scim)``)."""
    return _served(request).identity.scim


def pbidentity_saml(request: Request) -> SamlService:
    """FastAPI dependency: the app's SAML service (``Depends(pbidentity_saml)``)."""
    return _served(request).identity.saml


def pbidentity_member(request: Request) -> Member:
    """FastAPI dependency: the signed-in member (``Depends(pbidentity_member)``).

    Read again from storage on each request, so that a member the IdP has
    deactivated since signing in is refused at once: 401 when nobody is
    signed in (or the member is gone), 403 when the member is deactivated.
    Declare it in a plain ``def`` endpoint or dependency chain: it reads the
    database, and FastAPI runs sync dependencies in a worker thread.
    """
    from fastapi import HTTPException

    served = _served(request)
    if served.session_member is None:
        raise ConfigurationError(
            "pbidentity_member needs to know the app's session: "
            "pbidentity.fastapi.init_app(app, identity, session_member=...)"
        )
    signed_in = served.session_member(request)
    if signed_in is None:
        raise HTTPException(status_code=401, detail="Sign in first.")
    slug, member_id = signed_in
    try:
        member = served.identity.members.get(slug, member_id)
    except NotFoundError:
        raise HTTPException(status_code=401, detail="Sign in again.") from None
    if not member.active:
        raise HTTPException(status_code=403, detail="This membership is deactivated.")
    return member
