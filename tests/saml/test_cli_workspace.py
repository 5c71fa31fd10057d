"""``pbidentity saml check --tenant``, ``saml status`` and ``saml rollback`` on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pbidentity.admin import Admin
from pbidentity.cli import main
from pbidentity.members import Members
from pbidentity.saml import SamlConfig
from pbidentity.saml import SamlService
from pbidentity.storage import open_storage
from tests.saml.idp import TestIdp
from tests.saml.test_service import activate

PUBLIC = "https://app.example"


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A SQLite file with workspaces acme and globex, both on the same IdP."""
    url = f"sqlite:///{tmp_path / 'pbidentity.db'}"
    storage = open_storage(url)
    Admin(storage).create_tenant("acme", "Acme")
    Admin(storage).create_tenant("globex", "Globex")
    Members(storage).add("acme", "jane@acme.test")
    Members(storage).add("globex", "jane@acme.test")
    storage.close()
    return url


@pytest.fixture(scope="module")
def idp() -> TestIdp:
    """The IdP both workspaces use."""
    return TestIdp(entity_id="http://www.okta.com/exk1", sso_url="https://acme.okta.test/sso")


def run(capsys: pytest.CaptureFixture[str], database: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database", database, "saml", *args])
    out, err = capsys.readouterr()
    return code, out, err


def service(database: str) -> SamlService:
    return SamlService(open_storage(database), SamlConfig(public_url=PUBLIC))


def test_check_against_a_workspace(
    capsys: pytest.CaptureFixture[str], database: str, idp: TestIdp, tmp_path: Path
) -> None:
    saml = service(database)
    activate(saml, idp, "globex")
    saml.storage.close()
    metadata = tmp_path / "okta.xml"
    metadata.write_bytes(idp.metadata_xml())
    code, out, err = run(
        capsys,
        database,
        "check",
        str(metadata),
        "--tenant",
        "acme",
        "--public-url",
        PUBLIC,
        "--json",
    )
    assert (code, err) == (0, "")
    codes = {f["code"] for f in json.loads(out)["findings"]}
    # The same IdP and certificate already serve globex: worth a warning.
    assert "cert.shared" in codes
    code, out, err = run(
        capsys, database, "check", str(metadata), "--tenant", "nobody", "--public-url", PUBLIC
    )
    assert code == 1
    assert "nobody" in err


def test_workspace_commands_need_the_public_url(
    capsys: pytest.CaptureFixture[str], database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PBIDENTITY_PUBLIC_URL", raising=False)
    code, _, err = run(capsys, database, "status", "--tenant", "acme")
    assert code == 1
    assert "--public-url" in err
    assert len(err.strip().splitlines()) == 1


def test_status_and_rollback(
    capsys: pytest.CaptureFixture[str], database: str, idp: TestIdp
) -> None:
    code, out, _ = run(capsys, database, "status", "--tenant", "acme", "--public-url", PUBLIC)
    assert code == 0
    assert "ACS URL (single sign-on URL): https://app.example/saml/acme/acs" in out
    assert "active: none" in out
    code, _, err = run(capsys, database, "rollback", "--tenant", "acme", "--public-url", PUBLIC)
    assert code == 1
    assert "no previous" in err
    saml = service(database)
    activate(saml, idp)
    second = TestIdp(entity_id="http://www.okta.com/exk2", sso_url="https://acme.okta.test/two")
    activate(saml, second)
    saml.storage.close()
    code, out, _ = run(
        capsys, database, "status", "--tenant", "acme", "--public-url", PUBLIC, "--json"
    )
    status = json.loads(out)
    assert status["active"]["idp_entity_id"] == second.entity_id
    assert status["previous"]["idp_entity_id"] == idp.entity_id
    assert status["service_provider"]["audience_uri"] == "https://app.example/saml/acme/metadata"
    code, out, _ = run(capsys, database, "rollback", "--tenant", "acme", "--public-url", PUBLIC)
    assert code == 0
    assert idp.entity_id in out
    code, out, _ = run(
        capsys, database, "status", "--tenant", "acme", "--public-url", PUBLIC, "--json"
    )
    assert json.loads(out)["active"]["idp_entity_id"] == idp.entity_id


def test_status_shows_signed_requests_and_assertion_encryption(
    capsys: pytest.CaptureFixture[str], database: str, idp: TestIdp
) -> None:
    """The status JSON says whether requests are signed and assertions encrypted."""
    saml = service(database)
    activate(saml, idp)
    saml.update_options("acme", sign_requests=True, assertion_encryption="require")
    saml.storage.close()

    code, out, _ = run(
        capsys, database, "status", "--tenant", "acme", "--public-url", PUBLIC, "--json"
    )

    assert code == 0
    active = json.loads(out)["active"]
    assert (active["sign_requests"], active["assertion_encryption"]) == (True, "require")
