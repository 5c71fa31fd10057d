"""The FastAPI integration: routes beside the app's own, dependencies, root_path, no blocking."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from typing import Any

import fastapi
import httpx
import pytest

import pbidentity.fastapi
from pbidentity import PbIdentity
from pbidentity.domain import Member
from pbidentity.exceptions import ConfigurationError
from pbidentity.fastapi import get_identity
from pbidentity.fastapi import pbidentity_member
from pbidentity.fastapi import pbidentity_saml
from pbidentity.fastapi import pbidentity_scim
from pbidentity.saml import SamlService
from pbidentity.scim import ScimService
from tests.adapters.request_table import Recorder
from tests.adapters.request_table import uvicorn_server
from tests.scim.helpers import user

Scim = Annotated[ScimService, fastapi.Depends(pbidentity_scim)]
Identity = Annotated[PbIdentity, fastapi.Depends(get_identity)]


@pytest.fixture
def slow() -> Recorder:
    """A handler whose sync work takes half a second, like a core waiting on its database."""
    return Recorder(max_body_bytes=100, delay=0.5)


@pytest.fixture
def identity(tmp_path: Path) -> Iterator[PbIdentity]:
    """The front door on a fresh database (SCIM only)."""
    with PbIdentity(f"sqlite:///{tmp_path / 'identity.db'}") as identity:
        yield identity


@pytest.fixture
def host(identity: PbIdentity, slow: Recorder) -> fastapi.FastAPI:
    """A host app with its own endpoints, and pbidentity's (and the slow handler under /slow)."""
    app = fastapi.FastAPI()
    assert pbidentity.fastapi.init_app(app, identity, mounts={"/slow": slow}) is identity

    @app.post("/settings/token")
    def new_token(identity: Identity) -> str:
        # A plain def: FastAPI runs it in a thread, as the service's calls block.
        admin = identity.admin
        admin.create_tenant("acme")
        admin.set_scim_enabled("acme", True)
        return admin.create_token("acme", "okta").secret

    return app


class Client:
    """A synchronous client that calls the app in process (a new event loop per request)."""

    def __init__(self, app: Any, base_url: str = "http://testserver") -> None:
        self.app = app
        self.base_url = base_url

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        """Send one request through httpx's ASGI transport."""

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
                return await client.request(method, url, **options)

        return asyncio.run(send())

    def get(self, url: str, **options: Any) -> httpx.Response:
        """GET ``url``."""
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        """POST to ``url``."""
        return self.request("POST", url, **options)


def _token(client: Client, path: str = "/settings/token") -> str:
    token: str = client.post(path).json()
    return token


def test_endpoints_and_host_routes_share_the_service(host: fastapi.FastAPI) -> None:
    """The dependency gives the served service; SCIM works next to the app's routes."""
    client = Client(host, base_url="https://app.example")
    auth = {"Authorization": f"Bearer {_token(client)}"}
    created = client.post("/scim/v2/Users", json=user("fast@example.com"), headers=auth)
    assert created.status_code == 201, created.text
    assert created.headers["location"].startswith("https://app.example/scim/v2/Users/")
    assert client.get("/scim/v2/Users", headers=auth).json()["totalResults"] == 1


def test_the_prefix_paths_reach_the_core_and_others_stay_fastapis(host: fastapi.FastAPI) -> None:
    """/scim/v2 and /scim/v2/ are the core's; /scim/v2x is FastAPI's 404; no OpenAPI entries."""
    client = Client(host)
    for path in ("/scim/v2", "/scim/v2/"):
        answer = client.get(path, headers={"Authorization": "Bearer x"})
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/scim+json"
    assert client.get("/scim/v2x").json() == {"detail": "Not Found"}
    assert client.request("OPTIONS", "/scim/v2/Users").headers["allow"] == "GET, POST"
    assert set(host.openapi()["paths"]) == {"/settings/token"}


def test_mounted_under_a_prefix_the_locations_carry_it(host: fastapi.FastAPI) -> None:
    """In an app mounted at /identity (root_path), locations include /identity."""
    outer = fastapi.FastAPI()
    outer.mount("/identity", host)
    client = Client(outer, base_url="https://app.example")
    created = client.post(
        "/identity/scim/v2/Users",
        json=user("mounted@example.com"),
        headers={"Authorization": f"Bearer {_token(client, '/identity/settings/token')}"},
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location.startswith("https://app.example/identity/scim/v2/Users/")


def test_dependencies_need_init_app(identity: PbIdentity) -> None:
    """Without init_app the dependency fails with a ConfigurationError that says what to do."""
    app = fastapi.FastAPI()

    @app.get("/uses-scim")
    def uses_scim(scim: Scim) -> int:
        return scim.max_body_bytes

    with pytest.raises(ConfigurationError, match="init_app"):
        Client(app).get("/uses-scim")
    pbidentity.fastapi.init_app(app, identity)
    assert Client(app).get("/uses-scim").json() == identity.scim.max_body_bytes


def test_the_saml_dependency_names_the_missing_configuration(identity: PbIdentity) -> None:
    """Asking for SAML from an identity without it is a ConfigurationError naming SamlConfig."""
    app = fastapi.FastAPI()
    pbidentity.fastapi.init_app(app, identity)

    @app.get("/uses-saml")
    def uses_saml(saml: Annotated[SamlService, fastapi.Depends(pbidentity_saml)]) -> int:
        return saml.max_body_bytes

    with pytest.raises(ConfigurationError, match=r"saml=SamlConfig\(public_url="):
        Client(app).get("/uses-saml")


def test_a_slow_core_call_does_not_hold_up_other_requests(
    host: fastapi.FastAPI, slow: Recorder
) -> None:
    """Over real HTTP (uvicorn), a fast request finishes while a slow core call still runs."""
    finished: dict[str, float] = {}

    def fetch(name: str, url: str) -> None:
        httpx.get(url, timeout=10).raise_for_status()
        finished[name] = time.monotonic()

    with uvicorn_server(host) as port:
        base = f"http://127.0.0.1:{port}"
        slow_request = threading.Thread(target=fetch, args=("slow", f"{base}/slow/x"))
        slow_request.start()
        deadline = time.monotonic() + 5
        while not slow.requests:  # then the slow call is in the core
            assert time.monotonic() < deadline, "the slow request never reached the core"
            time.sleep(0.01)
        fetch("fast", f"{base}/scim/v2/ServiceProviderConfig")
        slow_request.join(10)
    assert finished["fast"] < finished["slow"]


def test_the_event_loop_keeps_running_during_a_core_call(
    host: fastapi.FastAPI, slow: Recorder
) -> None:
    """In process, a ticker on the loop keeps ticking while two slow calls run side by side."""

    async def run() -> tuple[int, float]:
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.example") as client:
            started = time.monotonic()
            calls = asyncio.ensure_future(
                asyncio.gather(client.get("/slow/a"), client.get("/slow/b"))
            )
            ticks = 0
            while not calls.done():
                await asyncio.sleep(0.01)
                ticks += 1
            assert [r.status_code for r in await calls] == [200, 200]
            return ticks, time.monotonic() - started

    ticks, elapsed = asyncio.run(run())
    assert ticks >= 20  # a blocked loop would tick once or twice
    assert elapsed < 0.9  # the two calls ran side by side


def test_the_signed_in_member_dependency(tmp_path: Path) -> None:
    """pbidentity_member reads the session through session_member, and the member from storage."""

    def from_headers(request: fastapi.Request) -> tuple[str, str] | None:
        # A stand-in for the host app's session: the workspace and member id it stored.
        member_id = request.headers.get("x-member")
        return None if member_id is None else ("acme", member_id)

    identity = PbIdentity(f"sqlite:///{tmp_path / 'identity.db'}")
    app = fastapi.FastAPI()
    pbidentity.fastapi.init_app(app, identity, session_member=from_headers)

    @app.get("/me")
    def me(member: Annotated[Member, fastapi.Depends(pbidentity_member)]) -> dict[str, Any]:
        return {"userName": member.user_name, "role": member.role}

    identity.admin.create_tenant("acme")
    members = identity.members
    jane = members.add("acme", "jane@acme.test", role="maker")
    client = Client(app)
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"x-member": "nobody"}).status_code == 401
    answer = client.get("/me", headers={"x-member": jane.id})
    assert answer.json() == {"userName": "jane@acme.test", "role": "maker"}
    members.edit("acme", jane.id, active=False)
    assert client.get("/me", headers={"x-member": jane.id}).status_code == 403
    identity.close()


def test_the_member_dependency_needs_the_session_reader(identity: PbIdentity) -> None:
    """Without session_member, pbidentity_member is a ConfigurationError naming it."""
    app = fastapi.FastAPI()
    pbidentity.fastapi.init_app(app, identity)

    @app.get("/me")
    def me(member: Annotated[Member, fastapi.Depends(pbidentity_member)]) -> str:
        return member.id

    with pytest.raises(ConfigurationError, match="session_member"):
        Client(app).get("/me")
