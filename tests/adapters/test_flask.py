"""The Flask integration: configuration, the blueprint's routes, and the identity for host views."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import flask
import pytest

import pbidentity.flask
from pbidentity import PbIdentity
from pbidentity.exceptions import ConfigurationError
from pbidentity.flask import get_identity
from pbidentity.saml import SamlConfig
from tests.adapters.request_table import Recorder
from tests.scim.helpers import user


@pytest.fixture
def host(tmp_path: Path) -> Iterator[flask.Flask]:
    """A host app configured with a database URL only, its own views beside pbidentity's."""
    app = flask.Flask("host")
    app.config["PBIDENTITY_DATABASE_URL"] = f"sqlite:///{tmp_path / 'identity.db'}"
    app.config["MAX_CONTENT_LENGTH"] = 10  # the host's own limit; pbidentity reads its own way
    identity = pbidentity.flask.init_app(app)

    @app.post("/settings/token")
    def new_token() -> str:
        # A host view uses the identity the endpoints serve.
        admin = get_identity().admin
        admin.create_tenant("acme")
        admin.set_scim_enabled("acme", True)
        return admin.create_token("acme", "okta").secret

    yield app
    identity.close()


def _token(app: flask.Flask) -> str:
    return app.test_client().post("/settings/token").get_data(as_text=True)


def test_endpoints_and_host_views_share_the_service(host: flask.Flask) -> None:
    """The identity is in app.extensions; a token made by a host view works on /scim/v2."""
    assert isinstance(host.extensions["pbidentity"], PbIdentity)
    assert get_identity(host) is host.extensions["pbidentity"]
    client = host.test_client()
    auth = {"Authorization": f"Bearer {_token(host)}"}
    created = client.post("/scim/v2/Users", json=user("flask@example.com"), headers=auth)
    assert created.status_code == 201, created.get_data()
    assert created.headers["Location"].startswith("http://localhost/scim/v2/Users/")
    assert created.headers["Content-Length"] == str(len(created.get_data()))
    listed = client.get("/scim/v2/Users", headers=auth)
    assert listed.json is not None
    assert listed.json["totalResults"] == 1


def test_script_name_is_part_of_the_locations(host: flask.Flask) -> None:
    """A Flask app mounted under a SCRIPT_NAME gives locations that carry it."""
    token = _token(host)
    created = host.test_client().post(
        "/scim/v2/Users",
        json=user("mounted@example.com"),
        headers={"Authorization": f"Bearer {token}"},
        base_url="https://app.example/identity",
    )
    assert created.headers["Location"].startswith("https://app.example/identity/scim/v2/Users/")


def test_the_core_answers_every_method_and_headers_pass_verbatim(host: flask.Flask) -> None:
    """OPTIONS and HEAD reach the core; a 204 gets no Content-Type from Flask."""
    client = host.test_client()
    auth = {"Authorization": f"Bearer {_token(host)}"}
    options = client.options("/scim/v2/Users", headers=auth)
    assert options.status_code == 405
    assert options.headers["Allow"] == "GET, POST"
    created = client.post("/scim/v2/Users", json=user("gone@example.com"), headers=auth).json
    assert created is not None
    deleted = client.delete(f"/scim/v2/Users/{created['id']}", headers=auth)
    assert deleted.status_code == 204
    assert "Content-Type" not in deleted.headers
    assert deleted.get_data() == b""


def test_the_prefix_paths_reach_the_core_and_others_stay_flasks(host: flask.Flask) -> None:
    """/scim/v2 and /scim/v2/ are the core's (SCIM 404s); /scim/v2x is Flask's own 404."""
    client = host.test_client()
    for path in ("/scim/v2", "/scim/v2/"):
        answer = client.get(path, headers={"Authorization": "Bearer x"})
        assert (answer.status_code, answer.content_type) == (404, "application/scim+json")
    assert client.get("/scim/v2x").content_type.startswith("text/html")


def test_the_body_cap_is_the_services_not_flasks(host: flask.Flask) -> None:
    """Flask's MAX_CONTENT_LENGTH does not apply; the service's cap is a SCIM 413."""
    client = host.test_client()
    auth = {"Authorization": f"Bearer {_token(host)}"}
    assert (
        client.post("/scim/v2/Users", json=user("a@example.com"), headers=auth).status_code == 201
    )
    huge = user("b@example.com", displayName="x" * (2 * 1024 * 1024))
    refused = client.post("/scim/v2/Users", json=huge, headers=auth)
    assert refused.status_code == 413
    assert refused.json is not None
    assert refused.json["status"] == "413"


def test_prefixes_from_the_config_and_more_handlers(tmp_path: Path) -> None:
    """PBIDENTITY_SCIM_PREFIX moves SCIM; SAML is served under its config's prefix; mounts too."""
    app = flask.Flask("host")
    app.config["PBIDENTITY_SCIM_PREFIX"] = "/identity/scim"
    extra = Recorder(max_body_bytes=100)
    identity = PbIdentity(
        f"sqlite:///{tmp_path / 'identity.db'}",
        saml=SamlConfig(public_url="https://app.example", prefix="/sso"),
    )
    assert pbidentity.flask.init_app(app, identity, mounts={"/hooks": extra}) is identity
    client = app.test_client()
    config = client.get("/identity/scim/ServiceProviderConfig")
    assert b'"http://localhost/identity/scim/ServiceProviderConfig"' in config.get_data()
    assert client.get("/scim/v2/ServiceProviderConfig").status_code == 404
    # The SAML service answers under /sso, where its SP URLs point.
    identity.admin.create_tenant("acme")
    metadata = client.get("/sso/acme/metadata")
    assert metadata.status_code == 200, metadata.get_data()
    assert b'Location="https://app.example/sso/acme/acs"' in metadata.get_data()
    assert client.get("/saml/acme/metadata").status_code == 404
    assert client.get("/hooks/a?b=1").status_code == 200
    assert extra.requests[0].query == (("b", "1"),)
    identity.close()


def test_one_identity_on_two_apps_serves_the_same_services(tmp_path: Path) -> None:
    """One identity can be served by several apps: the same services behind each."""
    identity = PbIdentity(f"sqlite:///{tmp_path / 'identity.db'}")
    first, second = flask.Flask("first"), flask.Flask("second")
    pbidentity.flask.init_app(first, identity)
    pbidentity.flask.init_app(second, identity)
    assert get_identity(second) is get_identity(first) is identity
    assert second.test_client().get("/scim/v2/Users").status_code == 401
    identity.close()


def test_configuration_mistakes_are_named() -> None:
    """Nothing to serve, or an app without pbidentity, is a ConfigurationError naming the fix."""
    with pytest.raises(ConfigurationError, match="PBIDENTITY_DATABASE_URL"):
        pbidentity.flask.init_app(flask.Flask("host"))
    with pytest.raises(ConfigurationError, match="init_app"):
        get_identity(flask.Flask("bare"))
