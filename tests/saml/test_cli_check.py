"""``pbidentity saml check``: the admin page's checks from a shell, with exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest

from pbidentity.cli import SAML_EXTRA_MISSING
from pbidentity.cli import main
from pbidentity.saml import Finding
from pbidentity.saml import _fetch
from tests.saml.certs import make_certificate
from tests.saml.test_metadata import OKTA_ENTITY
from tests.saml.test_metadata import OKTA_SSO
from tests.saml.test_metadata import idp_metadata
from tests.saml.test_metadata import okta_metadata

# The command checks against the real clock, so certificates are made around it.
TODAY = datetime.now(UTC)
VALID = make_certificate(
    cn="okta", not_before=TODAY - timedelta(days=30), not_after=TODAY + timedelta(days=400)
)[1]
EXPIRED = make_certificate(
    cn="okta", not_before=TODAY - timedelta(days=400), not_after=TODAY - timedelta(days=2)
)[1]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line in-process: (exit status, stdout, stderr)."""
    code = main(["saml", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def okta_file(tmp_path: Path) -> Path:
    """Sound Okta metadata in a file."""
    path = tmp_path / "okta.xml"
    path.write_bytes(okta_metadata(VALID))
    return path


def test_sound_metadata_file_exits_0(capsys: pytest.CaptureFixture[str], okta_file: Path) -> None:
    """A summary of the IdP, then the findings (only information here)."""
    code, out, err = run(capsys, str(okta_file))
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"IdP {OKTA_ENTITY}: SSO {OKTA_SSO} (HTTP-Redirect), 1 signing certificate"
    assert any(line.startswith("INFO    algorithms.enforced") for line in lines)
    assert "ERROR" not in out
    assert "WARNING" not in out


def test_errors_exit_1_and_come_first(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An expired certificate blocks: exit status 1, the error on the first finding line."""
    path = tmp_path / "expired.xml"
    path.write_bytes(okta_metadata(EXPIRED))
    code, out, _ = run(capsys, str(path))
    assert code == 1
    first = out.splitlines()[1]
    assert first.startswith("ERROR   cert.expired [signing certificate 'CN=okta']: ")
    assert "expired on" in first


def test_json_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--json prints the report as data, nothing else."""
    path = tmp_path / "expired.xml"
    path.write_bytes(okta_metadata(EXPIRED))
    code, out, _ = run(capsys, str(path), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["findings"][0]["code"] == "cert.expired"
    assert report["findings"][0]["severity"] == "error"
    assert {"algorithms.enforced", "attributes.not_listed"} <= {
        f["code"] for f in report["findings"]
    }


def test_unusable_document_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A DOCTYPE: refused, no IdP summary, exit 1."""
    path = tmp_path / "evil.xml"
    path.write_bytes(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    code, out, _ = run(capsys, str(path))
    assert code == 1
    assert out.startswith("ERROR   metadata.unsafe [metadata]: ")


def test_dev_host_turns_plain_http_into_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Plain http on localhost: an error, unless --dev-host names it."""
    path = tmp_path / "dev.xml"
    path.write_bytes(
        idp_metadata(
            certs=[VALID],
            sso=[("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", "http://localhost:8080/sso")],
        )
    )
    code, out, _ = run(capsys, str(path))
    assert code == 1
    assert "ERROR   sso.not_https" in out
    code, out, _ = run(capsys, str(path), "--dev-host", "localhost")
    assert code == 0
    assert "WARNING sso.dev_http" in out


def test_sp_side_is_checked_when_given(capsys: pytest.CaptureFixture[str], okta_file: Path) -> None:
    """--sp-entity-id and --acs-url add the app's side; without them it is skipped."""
    code, out, _ = run(
        capsys,
        str(okta_file),
        "--sp-entity-id",
        "https://app.test/saml/acme",
        "--acs-url",
        "http://app.test/saml/acme/acs",
    )
    assert code == 1
    assert "ERROR   sp.not_https [ACS URL]" in out
    code, out, _ = run(
        capsys,
        str(okta_file),
        "--sp-entity-id",
        "https://app.test/saml/acme",
        "--acs-url",
        "https://app.test/saml/acme/acs",
    )
    assert code == 0
    assert "sp." not in out


def test_sp_options_go_together(capsys: pytest.CaptureFixture[str], okta_file: Path) -> None:
    """One without the other is a usage error: exit 2, one line."""
    code, out, err = run(capsys, str(okta_file), "--acs-url", "https://app.test/acs")
    assert code == 2
    assert out == ""
    assert err == "pbidentity saml check: error: --sp-entity-id and --acs-url go together\n"


def test_missing_source_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """No SOURCE: argparse's own usage error, exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["saml", "check"])
    assert exit_info.value.code == 2
    assert "SOURCE" in capsys.readouterr().err


def test_unreadable_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file that is not there: the usual one-line error, exit 1."""
    code, out, err = run(capsys, str(tmp_path / "nope.xml"))
    assert code == 1
    assert out == ""
    assert err.startswith("pbidentity: error: cannot read the metadata file ")
    assert err.count("\n") == 1


def test_url_is_fetched(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL goes to the fetcher, with the dev hosts; its body is checked like a file."""
    calls: list[tuple[str, frozenset[str]]] = []

    def fake_fetch(url: str, *, dev_hosts: frozenset[str] = frozenset()) -> _fetch.FetchedMetadata:
        calls.append((url, dev_hosts))
        return _fetch.FetchedMetadata(url, okta_metadata(VALID), (), "application/xml")

    monkeypatch.setattr(_fetch, "fetch_metadata", fake_fetch)
    url = "https://acme.okta.com/app/exk1abcd2EFGH3ijk4l5/sso/saml/metadata"
    code, out, _ = run(capsys, url, "--dev-host", "idp.local")
    assert code == 0
    assert calls == [(url, frozenset({"idp.local"}))]
    assert out.startswith(f"IdP {OKTA_ENTITY}: ")


def test_fetch_failure_is_reported_as_a_finding(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetcher's finding is the report: exit 1, in JSON too."""
    finding = Finding(
        code="fetch.not_https",
        severity="error",
        message="The metadata URL must start with https://.",
        where="metadata URL",
    )

    def failing_fetch(url: str, *, dev_hosts: frozenset[str] = frozenset()) -> None:
        raise _fetch.MetadataFetchError(finding)

    monkeypatch.setattr(_fetch, "fetch_metadata", failing_fetch)
    code, out, _ = run(capsys, "ftp://idp.test/metadata", "--json")
    assert code == 1
    assert json.loads(out) == {"ok": False, "findings": [finding.to_dict()]}


def test_without_the_saml_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, okta_file: Path
) -> None:
    """No lxml: one line saying which extra to install, exit 1."""
    monkeypatch.delitem(sys.modules, "pbidentity.saml._metadata")
    monkeypatch.setitem(sys.modules, "lxml", None)
    code, out, err = run(capsys, str(okta_file))
    assert code == 1
    assert out == ""
    assert err == f"pbidentity: error: {SAML_EXTRA_MISSING}\n"


def test_installed_command(okta_file: Path) -> None:
    """The real entry point, in a subprocess: output and exit status."""
    done = subprocess.run(
        [sys.executable, "-m", "pbidentity.cli", "saml", "check", str(okta_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"IdP {OKTA_ENTITY}: ")
