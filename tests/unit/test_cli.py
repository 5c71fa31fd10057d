"""The pbidentity command: each sub-command, and one-line errors with non-zero exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pbidentity.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    """The --database option pointing at a fresh SQLite file."""
    return ["--database", f"sqlite:///{tmp_path / 'cli.db'}"]


def test_tenant_scim_and_token_lifecycle(capsys: pytest.CaptureFixture[str], db: list[str]) -> None:
    """Tenant, SCIM switch, token create/list/revoke: every step reports what it did."""
    assert _run(capsys, *db, "tenants", "create", "acme", "--name", "Acme Corp")[0] == 0
    code, out, _ = _run(capsys, *db, "tenants", "list")
    assert code == 0
    assert out.split("\t")[:2] == ["acme", "Acme Corp"]
    assert "SCIM off" in out
    assert "on for acme" in _run(capsys, *db, "scim", "enable", "--tenant", "acme")[1]
    code, out, _ = _run(capsys, *db, "tokens", "create", "--tenant", "acme", "--name", "okta")
    assert code == 0
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("pbi_")
    code, out, _ = _run(capsys, *db, "tokens", "list", "--tenant", "acme", "--json")
    listed = json.loads(out)
    assert listed[0]["name"] == "okta"
    assert "digest" not in listed[0]
    assert secret not in out
    assert _run(capsys, *db, "tokens", "revoke", "--tenant", "acme", "okta")[0] == 0
    assert "revoked" in _run(capsys, *db, "tokens", "list", "--tenant", "acme")[1]
    assert "off for acme" in _run(capsys, *db, "scim", "disable", "--tenant", "acme")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenants", "create", "Bad Slug"], "not a valid tenant slug"),
        (["scim", "enable", "--tenant", "nope"], "no tenant 'nope'"),
        (["tokens", "create", "--tenant", "nope", "--name", "x"], "no tenant 'nope'"),
        (["tokens", "revoke", "--tenant", "acme", "missing"], "no active token named 'missing'"),
    ],
)
def test_mistakes_give_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], db: list[str], args: list[str], message: str
) -> None:
    """Wrong input prints one 'pbidentity: error:' line and exits 1, without a traceback."""
    main([*db, "tenants", "create", "acme"])
    capsys.readouterr()
    code, _, err = _run(capsys, *db, *args)
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("pbidentity: error: ")
    assert message in err


def test_duplicate_slug_is_an_error(capsys: pytest.CaptureFixture[str], db: list[str]) -> None:
    """Creating a tenant twice is refused with a one-line error."""
    main([*db, "tenants", "create", "acme"])
    code, _, err = _run(capsys, *db, "tenants", "create", "acme")
    assert code == 1
    assert "acme" in err
    assert "Traceback" not in err


def test_bad_database_url_is_one_line(tmp_path: Path) -> None:
    """A database URL that cannot work is a one-line error from the real console script."""
    result = subprocess.run(
        [sys.executable, "-m", "pbidentity.cli", "--database", "nosuchdb://x", "tenants", "list"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("pbidentity: error: ")
    assert result.stderr.count("\n") == 1


def test_database_defaults_to_env_then_working_directory(tmp_path: Path) -> None:
    """Without --database, PBIDENTITY_DATABASE_URL wins, else ./pbidentity.db is created."""
    subprocess.run(
        [sys.executable, "-m", "pbidentity.cli", "tenants", "create", "here"],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    assert (tmp_path / "pbidentity.db").exists()
    other = tmp_path / "env.db"
    env_result = subprocess.run(
        [sys.executable, "-m", "pbidentity.cli", "tenants", "create", "there"],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        env={"PBIDENTITY_DATABASE_URL": f"sqlite:///{other}", "PATH": ""},
    )
    assert env_result.returncode == 0
    assert other.exists()
