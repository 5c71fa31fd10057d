"""Task runner: ``python3 -m nox -s tests`` runs the whole suite; ``nox -l`` lists the rest."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = "3.11"


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Install the package with its test tools and run the whole test suite."""
    session.install("-e", ".", *_group("test"))
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff: lint rules and formatting."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """Mypy --strict on the package, the tests, the benchmarks and this file."""
    session.install("-e", ".", *_group("typing"), *_group("bench"), "nox")
    session.run("mypy", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors."""
    session.install("-e", ".", *_group("docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Replay an Okta-like provisioning workload against pbidentity and scim2-server."""
    session.install("-e", ".", *_group("bench"))
    session.run("python", "bench/okta_workload.py", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Serve the SCIM service on an embedded SQLite file, with a demo tenant and token."""
    session.install("-e", ".")
    session.run(
        "pbidentity",
        "--database",
        "sqlite:///pbidentity-demo.db",
        "serve",
        "--demo",
        *session.posargs,
    )
