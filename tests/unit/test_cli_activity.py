"""`pbidentity scim activity` and `scim prune-activity`: a tenant's SCIM requests from a shell."""

from __future__ import annotations

import json

import httpx
import pytest

from pbidentity import PbIdentity
from pbidentity.wsgi import ScimWsgiApp
from tests.unit.test_cli import _run
from tests.unit.test_cli import db

__all__ = ["db"]


def _push(url: str) -> None:
    """Tenant acme with SCIM on; its IdP creates a user, repeats it (409) and lists users."""
    with PbIdentity(url) as identity:
        identity.admin.create_tenant("acme")
        identity.admin.create_tenant("beta")
        identity.admin.set_scim_enabled("acme", True)
        secret = identity.admin.create_token("acme", "okta").secret
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a@x.com"}
        with httpx.Client(
            transport=httpx.WSGITransport(app=ScimWsgiApp(identity.scim)),
            base_url="https://app.example/scim/v2",
            headers={"Authorization": f"Bearer {secret}"},
        ) as okta:
            assert okta.post("/Users", json=body).status_code == 201
            assert okta.post("/Users", json=body).status_code == 409
            assert okta.get("/Users").status_code == 200


def test_activity_prints_the_requests_newest_first_and_the_failures(
    capsys: pytest.CaptureFixture[str], db: list[str]
) -> None:
    """A line per request (time, token, method, path, status, scimType, detail, id); --failures."""
    _push(db[1])
    code, out, _ = _run(capsys, *db, "scim", "activity", "--tenant", "acme")
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert [line[1:5] for line in lines] == [
        ["okta", "GET", "/Users", "200"],
        ["okta", "POST", "/Users", "409"],
        ["okta", "POST", "/Users", "201"],
    ]
    assert lines[1][5] == "uniqueness"
    assert "already provisioned" in lines[1][6]
    code, out, _ = _run(capsys, *db, "scim", "activity", "--tenant", "acme", "--failures")
    assert [line.split("\t")[4] for line in out.splitlines()] == ["409"]
    code, out, _ = _run(capsys, *db, "scim", "activity", "--tenant", "acme", "--json")
    assert [entry["status"] for entry in json.loads(out)] == [200, 409, 201]
    assert _run(capsys, *db, "scim", "activity", "--tenant", "beta")[1] == ""
    code, _, err = _run(capsys, *db, "scim", "activity", "--tenant", "nobody")
    assert code != 0
    assert "nobody" in err


def test_prune_activity_drops_requests_past_the_bounds(
    capsys: pytest.CaptureFixture[str], db: list[str]
) -> None:
    """`scim prune-activity --keep 1` keeps the newest request; a zero --keep is refused."""
    _push(db[1])
    code, out, _ = _run(capsys, *db, "scim", "prune-activity")
    assert (code, out) == (0, "pruned 0 SCIM requests\n")
    code, out, _ = _run(capsys, *db, "scim", "prune-activity", "--keep", "1")
    assert (code, out) == (0, "pruned 2 SCIM requests\n")
    code, out, _ = _run(capsys, *db, "scim", "activity", "--tenant", "acme")
    assert [line.split("\t")[2] for line in out.splitlines()] == ["GET"]
    code, _, err = _run(capsys, *db, "scim", "prune-activity", "--keep", "0")
    assert code != 0
    assert "--keep" in err
