"""A throwaway PostgreSQL cluster for the test suite, started with the server's own tools.

``initdb`` and ``pg_ctl`` make a cluster in a fresh directory, listening on a free
port of 127.0.0.1 only, with fsync off (nothing in it outlives the tests). The
server refuses to run as root, so when the tests run as root the cluster belongs to
the ``postgres`` account and its commands run as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

HOW_TO_GET_IT = (
    "PostgreSQL's server programs (initdb, pg_ctl) are not on PATH: install PostgreSQL "
    "(Debian: apt-get install postgresql) or set PBIDENTITY_TEST_POSTGRES_URL to a "
    "disposable database"
)


def available() -> bool:
    """Whether this machine can start a cluster."""
    return shutil.which("initdb") is not None and shutil.which("pg_ctl") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster; yield its SQLAlchemy URL; stop and delete it afterwards."""
    as_root = os.geteuid() == 0
    owner = pwd.getpwnam("postgres") if as_root else None
    # Under /tmp rather than pytest's own (root-only) temporary directories, so that
    # the postgres account can reach it.
    base = Path(tempfile.mkdtemp(prefix="pbidentity-postgres-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, log = base / "data", base / "server.log"
    port = _free_port()

    def run(*command: str) -> None:
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            user=owner.pw_uid if owner is not None else None,
            group=owner.pw_gid if owner is not None else None,
            cwd=base,
        )

    try:
        run(
            "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
