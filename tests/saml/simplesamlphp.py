"""SimpleSAMLphp as a real IdP: Debian's package under ``php -S``, configured in a temp folder.

SimpleSAMLphp reads its configuration folder from ``SIMPLESAMLPHP_CONFIG_DIR``,
so the installed package (``/usr/share/simplesamlphp``) serves an IdP made
for one test run: the test IdP's key and certificate, a hosted IdP with the
package's own signing defaults, ``exampleauth:UserPass`` with one member,
and pbidentity's SP known from the SP metadata pbidentity serves (read as a
SAML metadata file, as an IdP admin would upload it). Options the hosted IdP
leaves to each SP (signed AuthnRequests, encrypted assertions) are given as
``idp_options``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx

SIMPLESAMLPHP = Path("/usr/share/simplesamlphp")
PHP = shutil.which("php")
HOW_TO_INSTALL = (
    "the SimpleSAMLphp interoperability test runs Debian's simplesamlphp package under "
    "php -S with PHP's DOM and mbstring extensions, which are not all installed: "
    "apt-get install simplesamlphp php-cli php-xml php-mbstring"
)
USERNAME = "ada"
PASSWORD = "correct horse battery staple"


def available() -> bool:
    """Whether SimpleSAMLphp, the PHP command line and the extensions it needs are installed."""
    if PHP is None or not (SIMPLESAMLPHP / "www" / "saml2" / "idp" / "SSOService.php").exists():
        return False
    probe = subprocess.run(
        [PHP, "-r", 'exit(extension_loaded("dom") && extension_loaded("mbstring") ? 0 : 1);'],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@attrs.define
class SimpleSamlPhp:
    """A running SimpleSAMLphp IdP and where its pages are."""

    base_url: str
    directory: Path
    #: The hosted IdP's own settings (its key, its members), before ``set_idp_options``.
    hosted: dict[str, object] = attrs.field(factory=dict)

    @property
    def metadata_url(self) -> str:
        """The IdP's metadata, as SimpleSAMLphp generates it."""
        return f"{self.base_url}/saml2/idp/metadata.php"

    @property
    def entity_id(self) -> str:
        """The hosted IdP's entity ID (SimpleSAMLphp's default: its metadata URL)."""
        return self.metadata_url

    def idp_initiated_url(self, sp_entity_id: str, relay_state: str | None = None) -> str:
        """The link that starts an IdP-initiated sign-in to that SP (an app tile)."""
        params = {"spentityid": sp_entity_id}
        if relay_state is not None:
            params["RelayState"] = relay_state
        return str(httpx.URL(f"{self.base_url}/saml2/idp/SSOService.php", params=params))

    def log(self) -> str:
        """SimpleSAMLphp's log and the PHP server's, for a failing test's message."""
        parts = []
        for name in ("log/simplesamlphp.log", "php-server.log"):
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-6000:])
        return "\n".join(parts)

    def set_idp_options(self, options: Mapping[str, object]) -> None:
        """Set the hosted IdP's options as its admin would (read again on every request)."""
        (self.directory / "metadata" / "saml20-idp-hosted.php").write_text(
            _php_file("metadata", {"__DYNAMIC:1__": {**self.hosted, **options}})
        )

    def set_sp_metadata(self, xml: bytes) -> None:
        """Replace the SP metadata it knows (read again on every request)."""
        (self.directory / "sp-metadata.xml").write_bytes(xml)


def _php_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _php_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _php_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_php_value(k)} => {_php_value(v)}" for k, v in value.items())
        return f"[{items}]"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_php_value(v) for v in value) + "]"
    raise TypeError(f"no PHP literal for {value!r}")


def _php_file(variable: str, entries: Mapping[str, object]) -> str:
    """A PHP configuration file that sets each entry of the array ``$variable``."""
    # SimpleSAMLphp includes the file where a variable of that name may be set already.
    lines = ["<?php", f"${variable} = [];"]
    for key, value in entries.items():
        lines.append(f"${variable}[{_php_string(key)}] = {_php_value(value)};")
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_simplesamlphp(
    directory: Path,
    *,
    certificate_pem: str,
    private_key_pem: bytes,
    sp_metadata: bytes,
    attributes: Mapping[str, list[str]],
    idp_options: Mapping[str, object] | None = None,
) -> Iterator[SimpleSamlPhp]:
    """SimpleSAMLphp serving a hosted IdP on a free port of 127.0.0.1 until the block ends."""
    assert PHP is not None, HOW_TO_INSTALL
    for name in ("config", "metadata", "cert", "log", "tmp", "data", "sessions"):
        (directory / name).mkdir()
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    (directory / "cert" / "idp.crt").write_text(certificate_pem)
    (directory / "cert" / "idp.key").write_bytes(private_key_pem)
    idp = SimpleSamlPhp(base_url=base_url, directory=directory)
    idp.set_sp_metadata(sp_metadata)
    config = {
        "baseurlpath": f"{base_url}/",
        "certdir": f"{directory / 'cert'}/",
        "loggingdir": f"{directory / 'log'}/",
        "datadir": f"{directory / 'data'}/",
        "tempdir": str(directory / "tmp"),
        "technicalcontact_name": "Administrator",
        "technicalcontact_email": "admin@idp.example",
        "secretsalt": secrets.token_hex(16),
        "auth.adminpassword": secrets.token_hex(16),
        "admin.protectindexpage": False,
        "admin.protectmetadata": False,
        "timezone": "UTC",
        "logging.level": 7,  # SimpleSAML\Logger::DEBUG: what a failure needs.
        "logging.handler": "file",
        "logging.logfile": "simplesamlphp.log",
        "enable.saml20-idp": True,
        "module.enable": {"exampleauth": True, "core": True, "saml": True, "admin": True},
        "session.cookie.secure": False,
        "session.phpsession.savepath": str(directory / "sessions"),
        "store.type": "phpsession",
        "language.default": "en",
        "metadata.sources": [
            {"type": "flatfile", "directory": str(directory / "metadata")},
            {"type": "xml", "file": str(directory / "sp-metadata.xml")},
        ],
    }
    (directory / "config" / "config.php").write_text(_php_file("config", config))
    authsources = {
        "admin": ["core:AdminPassword"],
        "members": {0: "exampleauth:UserPass", f"{USERNAME}:{PASSWORD}": dict(attributes)},
    }
    (directory / "config" / "authsources.php").write_text(_php_file("config", authsources))
    idp.hosted = {
        "host": "__DEFAULT__",
        "privatekey": "idp.key",
        "certificate": "idp.crt",
        "auth": "members",
        # The NameID of the emailAddress format pbidentity asks for is the mail attribute.
        "simplesaml.nameidattribute": "mail",
    }
    idp.set_idp_options(idp_options or {})
    log = (directory / "php-server.log").open("wb")
    server = subprocess.Popen(
        [PHP, "-S", f"127.0.0.1:{port}", "-t", str(SIMPLESAMLPHP / "www")],
        cwd=directory,
        env={**os.environ, "SIMPLESAMLPHP_CONFIG_DIR": str(directory / "config")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_up(idp, server)
        yield idp
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _wait_until_up(idp: SimpleSamlPhp, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(idp.metadata_url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"SimpleSAMLphp did not start:\n{idp.log()}")
        time.sleep(0.1)
