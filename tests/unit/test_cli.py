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


def _console(*args: str, blocked: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command in a fresh interpreter, with one package made impossible to import."""
    block = f"sys.modules[{blocked!r}] = None; " if blocked else ""
    code = f"import sys; {block}from pbidentity.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )


def test_an_unknown_database_scheme_names_the_ones_that_work() -> None:
    """mysql:// (no driver here) or a typo is one line listing sqlite, postgresql and memory."""
    for url in ("nosuchdb://x", "postgresq://u@h/db"):
        result = _console("--database", url, "tenants", "list")
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1, result.stderr
        assert "unknown scheme" in result.stderr
        assert "postgresql://USER@HOST/DATABASE (postgres:// too)" in result.stderr


def test_postgresql_without_the_extra_names_the_pip_line() -> None:
    """No psycopg: one line with the pip install that brings it, and no password shown."""
    for url in ("postgresql://app:s3cret@127.0.0.1:1/db", "postgres://app:s3cret@127.0.0.1:1/db"):
        result = _console("--database", url, "tenants", "list", blocked="psycopg")
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1, result.stderr
        assert "psycopg is not installed: pip install 'pbidentity[postgres]'" in result.stderr
        assert "s3cret" not in result.stderr


def test_postgres_scheme_is_postgresql_with_psycopg(postgres_url: str) -> None:
    """postgres:// (as hosts hand it out) and a bare postgresql:// both reach the server."""
    from sqlalchemy.engine import make_url

    from pbidentity.storage.sql import database_url

    server = make_url(postgres_url)
    assert database_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert database_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert database_url("postgres+psycopg://u@h/db").drivername == "postgresql+psycopg"
    for scheme in ("postgres", "postgresql"):
        url = server.set(drivername=scheme).render_as_string(hide_password=False)
        result = _console("--database", url, "tenants", "list")
        assert result.returncode == 0, result.stderr
        assert _console("--database", url, "db", "status").returncode == 0


@pytest.mark.parametrize(
    ("port", "words"),
    [
        ("80000", "80000 is not a port number (0 to 65535)"),
        ("-1", "-1 is not a port"),
        ("http", "'http' is not a port number"),
    ],
)
def test_a_bad_port_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], db: list[str], port: str, words: str
) -> None:
    """A port out of range or not a number: argparse's exit 2, one line, no usage block."""
    with pytest.raises(SystemExit) as exit_:
        main([*db, "serve", "--port", port])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("pbidentity serve: error: argument --port: ")
    assert words in err
    assert err.rstrip().endswith("(see pbidentity serve --help)")


def test_usage_mistakes_are_one_line() -> None:
    """An unknown option or a missing argument: one line naming --help, exit 2, from the script."""
    for args in (["--nope"], ["tenants", "create"], ["serve", "--port"]):
        result = _console(*args)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert "--help)" in result.stderr


@pytest.mark.parametrize("app", ["reference app", "SCIM and SAML only"])
def test_serve_on_a_busy_port_suggests_another(
    capsys: pytest.CaptureFixture[str], db: list[str], app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port something else listens on: one line suggesting --port, exit 1, nothing served."""
    import socket

    from pbidentity import _server

    if app != "reference app":
        monkeypatch.setattr(_server, "reference_app", lambda: (None, "no app"))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        code, out, err = _run(capsys, *db, "serve", "--port", port)
    assert code == 1
    assert out == ""
    assert err == (
        f"pbidentity: error: cannot listen on 127.0.0.1:{port}: the port is in use; stop what "
        "listens there or choose another with --port (--port 0 picks a free one)\n"
    )


def test_serve_on_an_address_not_of_this_machine_says_check_host(
    capsys: pytest.CaptureFixture[str], db: list[str]
) -> None:
    """--host naming no address here: one line pointing at --host."""
    code, _, err = _run(capsys, *db, "serve", "--host", "no-such-host.invalid", "--port", "0")
    assert code == 1
    assert err.count("\n") == 1
    assert "'no-such-host.invalid' is not an address of this machine; check --host" in err


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


DATA = Path(__file__).parent.parent / "data"


def test_link_plans_applies_and_a_second_run_changes_nothing(
    capsys: pytest.CaptureFixture[str], db: list[str]
) -> None:
    """`pbidentity link`: dry run, apply with progress, then nothing left to do."""
    from pbidentity.members import Members
    from pbidentity.storage import open_storage

    _run(capsys, *db, "tenants", "create", "acme")
    storage = open_storage(db[1])
    members = Members(storage)
    jane = members.add("acme", "Jane.Doe@example.com", email="jane.doe@example.com", role="maker")
    raj = members.add("acme", "raj", email="raj.patel@example.com")
    export = str(DATA / "okta-export-users.csv")

    code, out, _ = _run(capsys, *db, "link", "--tenant", "acme", "--from", export, "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == (
        f"6 identities from {export}: 4 to create, 2 to link, 0 to reactivate, 0 unchanged, "
        "0 conflicts"
    )
    assert f"link: jane.doe@example.com -> member {jane.id} (by userName)" in out
    assert f"link: Raj.Patel@Example.com -> member {raj.id} (by email)" in out
    assert "dry run: nothing was changed" in out
    assert not members.get("acme", jane.id).scim_managed

    code, out, err = _run(capsys, *db, "link", "--tenant", "acme", "--from", export)
    assert code == 0, err
    assert out.splitlines()[-1] == "4 created, 2 linked, 0 reactivated, 0 unchanged, 0 skipped"
    assert "] 6/6" in err
    linked = members.get("acme", jane.id)
    assert (linked.scim_managed, linked.external_id) == (True, "00u1abcd2EFGH3ijk4x7")
    # The export says admin: the personal value decides (hybrid mode).
    assert (linked.role, linked.role_source) == ("admin", "attribute")
    assert members.get("acme", raj.id).user_name == "Raj.Patel@Example.com"
    everyone = members.all("acme")
    assert len(everyone) == 6
    li = next(m for m in everyone if m.user_name == "li.wei@example.com")
    assert not li.active  # DEPROVISIONED in Okta

    code, out, _ = _run(capsys, *db, "link", "--tenant", "acme", "--from", export)
    assert code == 0
    assert out.splitlines()[0].endswith(
        "0 to create, 0 to link, 0 to reactivate, 6 unchanged, 0 conflicts"
    )
    assert out.splitlines()[-1] == "0 created, 0 linked, 0 reactivated, 6 unchanged, 0 skipped"
    storage.close()


def test_link_reports_conflicts_and_exits_1(
    capsys: pytest.CaptureFixture[str], db: list[str]
) -> None:
    """A conflict is shown with its reason, left alone, and makes the exit status 1."""
    from pbidentity.members import Members
    from pbidentity.storage import open_storage

    _run(capsys, *db, "tenants", "create", "acme")
    storage = open_storage(db[1])
    members = Members(storage)
    a = members.add("acme", "jane.doe@example.com")
    b = members.add("acme", "jd", email="jane.doe@example.com")
    storage.close()
    export = str(DATA / "okta-export-users.csv")
    code, out, _ = _run(capsys, *db, "link", "--tenant", "acme", "--from", export, "--quiet")
    assert code == 1
    assert "1 conflict" in out.splitlines()[0]
    conflict = next(line for line in out.splitlines() if "conflict: jane.doe" in line)
    assert a.id in conflict
    assert b.id in conflict
    assert out.splitlines()[-1] == "5 created, 0 linked, 0 reactivated, 0 unchanged, 1 skipped"


def test_link_with_a_bad_file_is_one_line(
    capsys: pytest.CaptureFixture[str], db: list[str], tmp_path: Path
) -> None:
    """An unreadable export is one error line and exit 1."""
    _run(capsys, *db, "tenants", "create", "acme")
    bad = tmp_path / "people.xlsx"
    bad.write_bytes(b"PK")
    code, _, err = _run(capsys, *db, "link", "--tenant", "acme", "--from", str(bad))
    assert code == 1
    assert err.startswith("pbidentity: error: ")
    assert len(err.strip().splitlines()) == 1


def test_policy_set_show_and_audit(capsys: pytest.CaptureFixture[str], db: list[str]) -> None:
    """Group mappings from the command line, shown back, and changes in the audit trail."""
    _run(capsys, *db, "tenants", "create", "acme")
    code, out, err = _run(
        capsys,
        *db,
        "policy",
        "set",
        "--tenant",
        "acme",
        "--mode",
        "group-based",
        "--map",
        "Admins=Admin:10",
        "--map",
        "id:g-42=maker",
        "--admin-guard",
        "on",
        "--on-delete",
        "deactivate",
    )
    assert code == 0, err
    code, out, _ = _run(capsys, *db, "policy", "show", "--tenant", "acme")
    shown = json.loads(out)
    assert shown["roles"]["mode"] == "group-based"
    assert shown["roles"]["mappings"][0] == {
        "role": "admin",
        "group_id": None,
        "group_name": "Admins",
        "priority": 10,
    }
    assert shown["roles"]["mappings"][1]["group_id"] == "g-42"
    assert shown["roles"]["admin_guard"] is True
    assert shown["on_delete"] == "deactivate"
    code, _, err = _run(capsys, *db, "policy", "set", "--tenant", "acme", "--map", "X=owner")
    assert code == 1
    assert "'owner' is not one of the app's roles" in err
    code, _, err = _run(capsys, *db, "policy", "set", "--tenant", "acme", "--map", "nonsense")
    assert code == 1
    assert "expected GROUP=ROLE[:PRIORITY]" in err
    from pbidentity.members import Members
    from pbidentity.storage import open_storage

    storage = open_storage(db[1])
    Members(storage).add("acme", "jane@example.com", role="maker")
    storage.close()
    code, out, _ = _run(capsys, *db, "audit", "--tenant", "acme")
    assert code == 0
    assert "\tapp\tmember.created\t" in out
    code, out, _ = _run(capsys, *db, "audit", "--tenant", "acme", "--json")
    listed = json.loads(out)
    (created,) = [e for e in listed if e["type"] == "member.created"]
    assert created["data"]["role"] == "maker"
    # The policy set above is in the trail too.
    assert [e["data"]["policy"]["on_delete"] for e in listed if e["type"] == "policy.changed"] == [
        "deactivate"
    ]


def test_serve_without_the_reference_app_serves_one_identity(tmp_path: Path) -> None:
    """The plain server's SCIM and SAML share one PbIdentity: its demo token works, SAML answers."""
    import queue
    import threading

    import httpx

    code = (
        "import sys\n"
        "from pbidentity import _server, cli\n"
        "_server.reference_app = lambda: (None, 'left out by the test')\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    url = f"sqlite:///{tmp_path / 'served.db'}"
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", code, "--database", url, "serve", "--port", "0", "--demo"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    # Lines are read by a thread: select() on the pipe would wait for lines
    # the text wrapper has already buffered when several arrive at once.
    printed_lines: queue.Queue[str] = queue.Queue()
    output = process.stdout
    assert output is not None

    def read_lines() -> None:
        for line in output:
            printed_lines.put(line)
        printed_lines.put("")  # the end of the output: the server exited

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Press Ctrl+C"):
            try:
                line = printed_lines.get(timeout=60)
            except queue.Empty:
                raise AssertionError(
                    f"the server stopped talking after {lines}: {errors.read_text()}"
                ) from None
            assert line, f"the server exited after {lines}: {errors.read_text()}"
            lines.append(line.strip())
        printed = dict(line.split(": ", 1) for line in lines if ": " in line)
        scim = printed["SCIM base URL"]
        token = printed["Demo workspace token (shown once)"]
        public = scim.removesuffix("/scim/v2")
        users = httpx.get(f"{scim}/Users", headers={"Authorization": f"Bearer {token}"})
        assert users.status_code == 200, users.text
        metadata = httpx.get(f"{public}/saml/demo/metadata")
        assert metadata.status_code == 200, metadata.text
        assert f'Location="{public}/saml/demo/acs"' in metadata.text
        root = httpx.get(f"{public}/").text
        assert f"Set-up portal: {public}/portal/" in root
        assert "Set-up portal" in printed
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


#: A host app's module that builds its PbIdentity, as ``--identity`` imports it.
_APP_MODULE = """
import os

import pbidentity
from pbidentity.roles import RoleSet
from pbidentity.saml import SamlConfig

identity = pbidentity.PbIdentity(
    os.environ["HOST_APP_DATABASE"],
    roles=RoleSet(("owner", "editor", "guest")),
    saml=SamlConfig(public_url="https://host.example", prefix="/sso"),
)


def make_identity():
    return identity


not_an_identity = 42
"""


def test_the_cli_acts_with_the_apps_own_identity(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--identity MODULE:NAME gives the CLI the app's roles and SAML settings, not the defaults."""
    (tmp_path / "host_app_identity.py").write_text(_APP_MODULE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOST_APP_DATABASE", f"sqlite:///{tmp_path / 'host.db'}")
    monkeypatch.delitem(sys.modules, "host_app_identity", raising=False)
    app = ["--identity", "host_app_identity:identity"]
    assert _run(capsys, *app, "tenants", "create", "acme")[0] == 0
    # The app's roles decide: "owner" is one of them, "admin" (a default role) is not.
    mapped = ("policy", "set", "--tenant", "acme", "--map")
    assert _run(capsys, *app, *mapped, "Admins=owner:10")[0] == 0
    code, _, err = _run(capsys, *app, *mapped, "Admins=admin:10")
    assert code == 1
    assert "owner, editor, guest" in err
    # SAML's values come from the app's configuration: no --public-url needed.
    code, out, _ = _run(capsys, *app, "saml", "status", "--tenant", "acme", "--json")
    assert code == 0
    assert json.loads(out)["service_provider"]["acs_url"] == "https://host.example/sso/acme/acs"
    # A factory works too; what is not an identity is named, as is a missing name.
    factory = ["--identity", "host_app_identity:make_identity"]
    assert "acme" in _run(capsys, *factory, "tenants", "list")[1]
    for target, message in (
        ("host_app_identity:not_an_identity", "of type int, not a pbidentity.PbIdentity"),
        ("host_app_identity:missing", "has no 'missing'"),
        ("no_such_host_module:identity", "no module 'no_such_host_module'"),
        ("host_app_identity", "expected MODULE:NAME"),
    ):
        code, _, err = _run(capsys, "--identity", target, "tenants", "list")
        assert (code, message in err) == (1, True), err
    code, _, err = _run(capsys, *app, "db", "status")
    assert (code, "leave out --identity" in err) == (1, True), err


def test_policy_set_dry_run_prints_the_preview_and_saves_nothing(
    capsys: pytest.CaptureFixture[str], db: list[str]
) -> None:
    """--dry-run prints counts per change with examples and rules; the real run then does that."""
    import re

    from pbidentity.admin import Admin
    from pbidentity.policy import TenantPolicy
    from pbidentity.storage import open_storage
    from tests.members.test_bulk_roles import ROLES
    from tests.members.test_policy_preview import seeded

    storage = open_storage(db[1])
    seeded(storage, 2, TenantPolicy().check(ROLES))
    storage.close()
    change = (
        "policy",
        "set",
        "--tenant",
        "acme",
        "--mode",
        "group-based",
        "--map",
        "G-ENG=maker:3",
    )
    code, out, err = _run(capsys, *db, *change, "--dry-run")
    assert code == 0, err
    summary = re.search(r"nothing saved: (\d+) of (\d+) SCIM-managed members", out)
    assert summary, out
    pairs = re.findall(r"^  (\d+)\t(.+) -> (\S+)$", out, re.M)
    assert pairs
    assert sum(int(count) for count, _, _ in pairs) == int(summary.group(1))
    assert ": group 'g-eng' (priority 3) maps to maker" in out
    assert re.search(r"^active admins: \d+ now, \d+ after$", out, re.M)
    storage = open_storage(db[1])
    assert Admin(storage).get_policy("acme") == TenantPolicy()
    storage.close()
    code, out, err = _run(capsys, *db, *change)
    assert code == 0, err
    code, out, _ = _run(capsys, *db, "audit", "--tenant", "acme", "--json", "--limit", "1000")
    moved = [e for e in json.loads(out) if e["type"] == "member.role_changed"]
    assert len(moved) == int(summary.group(1))


def test_events_prune_deletes_only_delivered_events_past_the_age(
    capsys: pytest.CaptureFixture[str], db: list[str]
) -> None:
    """`events prune` deletes events delivered more than DAYS ago, keeps the rest, says how many."""
    from datetime import UTC
    from datetime import datetime
    from datetime import timedelta

    from pbidentity.members import Members
    from pbidentity.storage import open_storage

    _run(capsys, *db, "tenants", "create", "acme")
    storage = open_storage(db[1])
    members = Members(storage)
    for n in range(3):
        members.add("acme", f"user{n}@example.com")
    with storage.transaction() as tx:
        seqs = [e.seq or 0 for e in tx.pending_events(10)]
        tx.mark_delivered(seqs[:1], datetime.now(UTC) - timedelta(days=40))
        tx.mark_delivered(seqs[1:2], datetime.now(UTC) - timedelta(days=20))
    storage.close()
    code, out, _ = _run(capsys, *db, "events", "prune")
    assert (code, out) == (0, "pruned 0 events delivered more than 90 days ago\n")
    code, out, _ = _run(capsys, *db, "events", "prune", "--older-than", "30")
    assert (code, out) == (0, "pruned 1 event delivered more than 30 days ago\n")
    code, out, _ = _run(capsys, *db, "events", "prune", "--older-than", "1")
    assert (code, out) == (0, "pruned 1 event delivered more than 1 day ago\n")
    code, out, _ = _run(capsys, *db, "audit", "--tenant", "acme")
    # The undelivered one stays, however old a prune asks for.
    assert [line.split("\t")[3] for line in out.splitlines()] == ["member.created"]
    with pytest.raises(SystemExit) as exit_info:
        main([*db, "events", "prune", "--older-than", "0"])
    assert exit_info.value.code == 2
    assert "would prune what was just delivered" in capsys.readouterr().err


def test_audit_filters_like_the_portal_page(
    capsys: pytest.CaptureFixture[str], db: list[str]
) -> None:
    """`audit --type --actor --from --to --newest-first` narrow the trail; a bad value says why."""
    from datetime import UTC
    from datetime import datetime
    from datetime import timedelta

    from pbidentity.members import Members
    from pbidentity.storage import open_storage

    _run(capsys, *db, "tenants", "create", "acme")
    storage = open_storage(db[1])
    members = Members(storage)
    first = members.add("acme", "ann@example.com", actor="portal:1")
    members.add("acme", "bo@example.com", actor="app")
    members.edit("acme", first.id, active=False, actor="portal:1")
    storage.close()

    def kinds(*options: str) -> list[tuple[str, str]]:
        code, out, err = _run(capsys, *db, "audit", "--tenant", "acme", *options)
        assert code == 0, err
        return [(line.split("\t")[2], line.split("\t")[3]) for line in out.splitlines()]

    assert kinds("--actor", "portal:1") == [
        ("portal:1", "member.created"),
        ("portal:1", "member.deactivated"),
    ]
    assert kinds("--type", "member.created", "--newest-first") == [
        ("app", "member.created"),
        ("portal:1", "member.created"),
    ]
    assert kinds("--type", "member.deactivated", "--type", "member.created", "--actor", "app") == [
        ("app", "member.created")
    ]
    today = datetime.now(UTC).date()
    assert len(kinds("--from", today.isoformat(), "--to", today.isoformat())) == 3
    assert kinds("--to", (today - timedelta(days=1)).isoformat()) == []
    assert kinds("--from", (datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    code, _, err = _run(capsys, *db, "audit", "--tenant", "acme", "--from", "yesterday")
    assert code == 1
    assert "--from 'yesterday' is neither a day" in err
    code, _, err = _run(capsys, *db, "audit", "--tenant", "acme", "--type", "member.nope")
    assert code == 1
    assert "no event type 'member.nope'" in err
