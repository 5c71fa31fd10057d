"""PbIdentity, the front door: one object, one role set, every service, one storage to release."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

import pbidentity
from pbidentity import PbIdentity
from pbidentity.domain import Event
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import InputError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.policy import TenantPolicy
from pbidentity.roles import GroupMapping
from pbidentity.roles import RolePolicy
from pbidentity.roles import RoleSet
from pbidentity.saml import SamlConfig
from pbidentity.saml import SignIn
from pbidentity.scim import DEFAULT_ROLE_URN
from pbidentity.scim import ScimConfig
from pbidentity.storage.memory import MemoryStorage
from pbidentity.storage.sql import SqlStorage
from tests.saml.idp import TestIdp
from tests.saml.test_service import activate
from tests.saml.test_service import sign_in
from tests.scim.helpers import user

#: Roles unlike the defaults, so that a service falling back to its own set shows.
ROLES = RoleSet(("owner", "editor", "guest"))


def _scim(identity: PbIdentity, token: str, method: str, path: str, body: object) -> Response:
    return identity.scim.handle(
        Request(
            method=method,
            path=path,
            base_url="https://app.example/scim/v2",
            headers=(
                ("Authorization", f"Bearer {token}"),
                ("Content-Type", "application/scim+json"),
            ),
            body=json.dumps(body).encode(),
        )
    )


def test_every_service_decides_from_the_one_role_set(tmp_path: Path) -> None:
    """SCIM's role values, the admin's policy check, the app's edits and SAML's JIT role agree."""
    identity = PbIdentity(
        f"sqlite:///{tmp_path / 'identity.db'}",
        roles=ROLES,
        saml=SamlConfig(public_url="https://app.example"),
    )
    with identity:
        admin = identity.admin
        admin.create_tenant("acme")
        admin.set_scim_enabled("acme", True)
        token = admin.create_token("acme", "okta").secret
        # SCIM: the schema's canonical values and what a push may send.
        schema = identity.scim.handle(
            Request(
                method="GET",
                path=f"/Schemas/{DEFAULT_ROLE_URN}",
                base_url="https://app.example/scim/v2",
                headers=(("Authorization", f"Bearer {token}"),),
            )
        )
        assert schema.status == 200, schema.body
        (role,) = (a for a in json.loads(schema.body)["attributes"] if a["name"] == "role")
        assert role["canonicalValues"] == ["owner", "editor", "guest"]
        pushed = user("ada@acme.test", **{DEFAULT_ROLE_URN: {"role": "Owner"}})
        created = _scim(identity, token, "POST", "/Users", pushed)
        assert created.status == 201, created.body
        assert json.loads(created.body)[DEFAULT_ROLE_URN]["role"] == "owner"
        refused = _scim(
            identity,
            token,
            "POST",
            "/Users",
            user("bo@acme.test", **{DEFAULT_ROLE_URN: {"role": "maker"}}),
        )
        assert refused.status == 400
        assert "owner, editor, guest" in json.loads(refused.body)["detail"]
        # The admin: a policy may map groups to these roles, and to no other.
        with pytest.raises(ConfigurationError, match="maker"):
            admin.set_policy(
                "acme",
                TenantPolicy(
                    roles=RolePolicy(mappings=(GroupMapping(role="maker", group_name="X"),))
                ),
            )
        admin.set_policy(
            "acme",
            TenantPolicy(roles=RolePolicy(mappings=(GroupMapping(role="editor", group_name="X"),))),
        )
        # The app's own members: the least privileged of these by default.
        jane = identity.members.add("acme", "jane@acme.test", email="jane@acme.test")
        assert jane.role == "guest"
        with pytest.raises(InputError, match="owner, editor, guest"):
            identity.members.add("acme", "cy@acme.test", role="viewer")
        # SAML: a person signing in for the first time is created with the same default.
        idp = TestIdp(entity_id="https://idp.test/metadata", sso_url="https://idp.test/sso")
        activate(identity.saml, idp)
        identity.saml.update_options("acme", unknown_members="create")
        outcome = sign_in(identity.saml, idp, "new@acme.test")
        assert isinstance(outcome, SignIn), outcome
        assert (outcome.created, outcome.member.role) == (True, "guest")


def test_members_and_events_put_the_role_under_the_apps_urn() -> None:
    """A custom role URN reaches the typed profiles the members and the events hand out."""
    urn = "urn:okta:acme_app:1.0:user:custom"
    with PbIdentity("memory://", roles=ROLES, scim=ScimConfig(role_urn=urn)) as identity:
        identity.admin.create_tenant("acme")
        identity.admin.set_scim_enabled("acme", True)
        token = identity.admin.create_token("acme", "okta").secret
        pushed = _scim(
            identity, token, "POST", "/Users", user("ada@acme.test", **{urn: {"role": "editor"}})
        )
        assert pushed.status == 201, pushed.body
        read = identity.members.get("acme", json.loads(pushed.body)["id"])
        assert read.profile.role_extension is not None
        assert read.profile.role_extension.role == "editor"
        assert read.profile.model_dump()[urn] == {"role": "editor"}
        seen: list[Event] = []
        identity.events.subscribe(seen.append)
        identity.events.deliver_pending()
        (created,) = (event for event in seen if event.type == "member.created")
        assert created.profile is not None
        assert created.profile.model_dump()[urn] == {"role": "editor"}


def test_saml_is_optional_and_its_absence_names_the_fix() -> None:
    """Without SamlConfig: no SAML service, route or SAML-only option; the error says why."""
    with PbIdentity("memory://") as identity:
        assert not identity.saml_enabled
        with pytest.raises(ConfigurationError, match=re.escape("saml=SamlConfig(public_url=")):
            _ = identity.saml
        assert [mount.prefix for mount in identity.router().mounts] == ["/scim/v2"]
    for saml_only in ("on_result", "fetch_metadata", "new_secret"):
        with pytest.raises(ConfigurationError, match="SAML, which is not configured"):
            PbIdentity("memory://", **{saml_only: lambda *args: None})  # type: ignore[arg-type]


def test_the_router_serves_saml_where_its_urls_point() -> None:
    """SAML is mounted at its config's prefix; SCIM's prefix and more mounts are the app's."""
    saml = SamlConfig(public_url="https://app.example", prefix="/auth/saml")
    with PbIdentity("memory://", saml=saml) as identity:
        router = identity.router(scim_prefix="/identity/scim/", mounts={"/hooks": identity.scim})
        assert {mount.prefix: mount.handler for mount in router.mounts} == {
            "/identity/scim": identity.scim,
            "/auth/saml": identity.saml,
            "/hooks": identity.scim,
        }
        assert identity.saml.service_provider("acme").acs_url.startswith(
            "https://app.example/auth/saml/"
        )
        with pytest.raises(ValueError, match="two handlers"):
            identity.router(mounts={"/auth/saml": identity.scim})


def test_close_releases_the_storage_it_opened_or_was_given(tmp_path: Path) -> None:
    """Leaving the block disposes the engine's pooled connections; a given storage is closed too."""
    with PbIdentity(f"sqlite:///{tmp_path / 'identity.db'}") as identity:
        identity.admin.create_tenant("acme")
        storage = identity.storage
        assert isinstance(storage, SqlStorage)
        pool = storage.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedin() >= 1
    assert pool.checkedin() == 0

    closed: list[bool] = []

    class Recorded(MemoryStorage):
        def close(self) -> None:
            closed.append(True)
            super().close()

    given = Recorded()
    with PbIdentity(given) as identity:
        assert identity.storage is given
        assert identity.admin.create_tenant("acme").slug == "acme"
    assert closed == [True]
    with pytest.raises(ConfigurationError, match="database URL"):
        PbIdentity(MemoryStorage(), upgrade=True)


def test_building_it_without_saml_imports_no_saml_toolkit() -> None:
    """python3-saml is an optional extra: a SCIM-only front door never imports it."""
    code = (
        "import sys, pbidentity\n"
        "identity = pbidentity.PbIdentity('memory://')\n"
        "identity.router()\n"
        "banned = ('onelogin', 'xmlsec', 'lxml')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in banned)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_the_package_docstring_points_to_entry_points_that_exist() -> None:
    """help(pbidentity) starts from PbIdentity and names adapter functions that really exist."""
    doc = pbidentity.__doc__ or ""
    assert "PbIdentity" in doc.split("::")[0]
    assert "PbIdentity" in pbidentity.__all__
    named = re.findall(r"pbidentity\.(wsgi|asgi|flask|fastapi)\.([a-z_]+)\(", doc)
    assert {module for module, _ in named} == {"wsgi", "asgi", "flask", "fastapi"}
    for module, function in named:
        imported = __import__(f"pbidentity.{module}", fromlist=[function])
        assert callable(getattr(imported, function)), (module, function)


def test_the_saml_hooks_reach_the_saml_service() -> None:
    """on_result, fetch_metadata, clock and new_id given to the front door are SAML's own."""
    fetched: list[str] = []

    class Fetched:
        body = b"<EntityDescriptor/>"

    def fetch(url: str, **options: object) -> Fetched:
        # A stand-in for the IdP on the internet: what was asked is recorded.
        fetched.append(url)
        return Fetched()

    def on_result(request: Request, outcome: object) -> Response:
        return Response(status=204)

    def clock() -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    def new_id() -> str:
        return "fixed-id"

    saml = SamlConfig(public_url="https://app.example")
    with PbIdentity(
        "memory://",
        saml=saml,
        on_result=on_result,
        fetch_metadata=fetch,
        clock=clock,
        new_id=new_id,
    ) as identity:
        assert identity.saml.fetch_metadata("https://idp.test/metadata") == b"<EntityDescriptor/>"
        assert fetched == ["https://idp.test/metadata"]
        assert identity.saml.on_result is on_result
        assert identity.admin.create_tenant("acme").id == "fixed-id"
        assert identity.saml.clock is identity.scim.clock is identity.admin.clock is clock
