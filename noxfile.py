"""Task runner: ``python3 -m nox -s tests`` runs the whole suite; ``nox -l`` lists the rest.

Sessions run on the Python that runs nox when it is one pbidentity supports
(3.11, 3.12 or 3.13), else on the newest of those on PATH; with none of them,
nox fails and says which it looked for. ``tests-lowest`` and ``tests-newest``
install the lowest versions ``pyproject.toml`` allows and the newest ones, and
run the fast tests with warnings as errors.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nox
from packaging.requirements import Requirement

# nox.project.dependency_groups, which reads the test tools from pyproject.toml.
nox.needs_version = ">=2025.2.9"
nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True
# A missing interpreter is an error, never a session quietly skipped.
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
SUPPORTED = ("3.13", "3.12", "3.11")
# Every extra: the suite tests SAML, each framework adapter and PostgreSQL.
EXTRAS = ("saml", "flask", "fastapi", "postgres")
EXTRAS_SPEC = ",".join(EXTRAS)
# The fast tests, for the sessions at both ends of the dependency bounds: the
# model, SAML, SCIM on SQLite and PostgreSQL, without the servers in
# subprocesses. The tests with pysaml2 as the IdP need pysaml2, which caps
# cryptography below its newest release and needs more than its lowest bound
# (SimpleSAMLphp's and Lasso's need only the system's packages, and are slow).
FAST = (
    "tests/unit",
    "tests/saml",
    "tests/scim",
    "-m",
    "not slow",
    "--ignore=tests/saml/test_pysaml2_interop.py",
    "--ignore=tests/saml/test_pysaml2_crypto.py",
)

# Test tools that need a newer version of one of the package's own dependencies
# than its lower bound, left out where those bounds are tested: scim2-server needs
# scim2-models 0.12.2 (only the simulator's end-to-end test, not a fast one, uses it).
NEEDS_NEWER = frozenset({"scim2-server"})


def _python(preference: tuple[str, ...] = SUPPORTED, *, own: bool = True) -> str | None:
    """The Python for a session: nox's own when supported and ``own`` (None), else the first found.

    When none of them is installed the first one preferred is named, and nox
    fails, saying it was not found.
    """
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if own and running in preference:
        return None
    for version in preference:
        if running == version or _runs(f"python{version}"):
            return version
    _NOT_FOUND.add(
        f"pbidentity's sessions need CPython {', '.join(sorted(SUPPORTED)[:-1])} or "
        f"{sorted(SUPPORTED)[-1]}: nox runs on {running} and none of them is on PATH "
        "(as python3.X); install one, then run nox with it"
    )
    return preference[0]


def _runs(program: str) -> bool:
    """Whether ``program`` is on PATH and starts (a pyenv shim may be there for nothing)."""
    found = shutil.which(program)
    if found is None:
        return False
    try:
        started = subprocess.run([found, "-c", ""], capture_output=True, check=False)  # noqa: S603
        return started.returncode == 0
    except OSError:
        return False


_NOT_FOUND: set[str] = set()
PYTHON = _python()
# The lowest bounds are tested on the oldest Python found (older releases have no
# wheels for newer ones), the newest versions on the newest Python found.
LOWEST_PYTHON = _python(tuple(reversed(SUPPORTED)), own=False)
NEWEST_PYTHON = _python(own=False)
for _line in _NOT_FOUND:
    # nox itself then fails each session with "Python interpreter 3.x not found".
    nox.logger.logger.error(_line)


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


def _requirements() -> list[Requirement]:
    """The package's runtime requirements and those of the extras the suite installs."""
    project = PYPROJECT["project"]
    texts = list(project["dependencies"])
    for extra in EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def lowest_constraints() -> list[str]:
    """Each requirement pinned to its lower bound (``>=``) or its exact version (``==``)."""
    pins = []
    for requirement in _requirements():
        for specifier in requirement.specifier:
            if specifier.operator in (">=", "=="):
                pins.append(f"{requirement.name}=={specifier.version}")
    return sorted(set(pins))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Install the package with its test tools and run the whole test suite."""
    session.install("-e", f".[{EXTRAS_SPEC}]", *_group("test"), *_group("interop"))
    session.run("pytest", *session.posargs)


@nox.session(name="tests-lowest", python=LOWEST_PYTHON)
def tests_lowest(session: nox.Session) -> None:
    """The fast tests on the lowest versions pyproject.toml allows, warnings as errors."""
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("\n".join(lowest_constraints()) + "\n", encoding="utf-8")
    tools = [tool for tool in _group("test") if Requirement(tool).name not in NEEDS_NEWER]
    session.install("-c", str(constraints), "-e", f".[{EXTRAS_SPEC}]", *tools)
    # What the resolver chose is part of the result.
    session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=False)
    # The anyio that typing-extensions 4.14.1 allows (for Starlette) brings a pytest
    # plugin that imports a name pytest 9.2 deprecates; the suite does not use it.
    session.run("pytest", "-p", "no:anyio", *(session.posargs or FAST))


@nox.session(name="tests-newest", python=NEWEST_PYTHON)
def tests_newest(session: nox.Session) -> None:
    """The fast tests on the newest versions the bounds allow, as users install them."""
    session.install(
        "--upgrade", "--upgrade-strategy", "eager", "-e", f".[{EXTRAS_SPEC}]", *_group("test")
    )
    session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=False)
    session.run("pytest", *(session.posargs or FAST))


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Fuzz the HTTP surface for longer: 5,000 random examples per property, SQLite and PostgreSQL.

    ``nox -s tests`` runs the same properties on 200 fixed examples each; here
    the examples are new on every run, the time bound is the real 250 ms, and
    failures are kept in ``.hypothesis/`` to be replayed first next time.
    ``PBIDENTITY_FUZZ_EXAMPLES`` changes the count; arguments go to pytest
    (``nox -s fuzz -- -k saml -x``).
    """
    session.install("-e", f".[{EXTRAS_SPEC}]", *_group("test"))
    session.run(
        "pytest",
        "tests/fuzz",
        "--hypothesis-show-statistics",
        *session.posargs,
        env={"PBIDENTITY_FUZZ": "long"},
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff: lint rules and formatting."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """Mypy --strict on the package, the tests, the benchmarks and this file."""
    session.install(
        "-e", f".[{EXTRAS_SPEC}]", *_group("typing"), *_group("interop"), *_group("bench"), "nox"
    )
    session.run("mypy", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors."""
    # autodoc imports the framework adapters, and the SAML names that load
    # python3-saml on first use (verify_response and its companions).
    session.install("-e", ".[flask,fastapi,saml]", *_group("docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run a benchmark: okta (the default), link, scale, saml, abuse or all; arguments go to it.

    ``nox -s bench`` replays an Okta workload against pbidentity and scim2-server;
    ``nox -s bench -- link`` links 100,000 existing members from an export;
    ``nox -s bench -- scale --members 1000000`` loads a million members on SQLite
    and PostgreSQL and times lookups, pages and writes;
    ``nox -s bench -- saml`` times validating one signed SAML response with
    python3-saml's own path and with ``verify_response``;
    ``nox -s bench -- abuse`` times the costliest request the default
    ``ScimLimits`` allow on every SCIM endpoint, on SQLite and PostgreSQL;
    ``nox -s bench -- postgres`` times SCIM writes through the WSGI app on a
    durable PostgreSQL and counts their round trips;
    ``nox -s bench -- push`` times the Okta workload's group push (phase 8) alone.
    """
    session.install("-e", ".[postgres,saml,portal]", *_group("bench"))
    scripts = {
        "okta": "okta_workload.py",
        "link": "link_members.py",
        "scale": "scale.py",
        "saml": "saml_validate.py",
        "abuse": "abuse.py",
        "postgres": "postgres.py",
        "push": "group_push.py",
    }
    args = list(session.posargs)
    chosen = args.pop(0) if args and args[0] in (*scripts, "all") else "okta"
    for name in scripts if chosen == "all" else (chosen,):
        session.run("python", f"bench/{scripts[name]}", *args)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Run the FastAPI reference app (SCIM, SAML, the set-up portal) on an embedded SQLite file."""
    session.install("-e", ".[saml,fastapi]")
    session.run(
        "pbidentity",
        "--database",
        "sqlite:///pbidentity-demo.db",
        "serve",
        "--demo",
        *session.posargs,
    )
