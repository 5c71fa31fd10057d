"""Task runner: ``python3 -m nox -s tests`` runs the whole suite; ``nox -l`` lists the rest."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = "3.11"
# Every extra: the suite tests SAML, each framework adapter and PostgreSQL.
EXTRAS = "saml,flask,fastapi,postgres"


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Install the package with its test tools and run the whole test suite."""
    session.install("-e", f".[{EXTRAS}]", *_group("test"))
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Fuzz the HTTP surface for longer: 5,000 random examples per property, SQLite and PostgreSQL.

    ``nox -s tests`` runs the same properties on 200 fixed examples each; here
    the examples are new on every run, the time bound is the real 250 ms, and
    failures are kept in ``.hypothesis/`` to be replayed first next time.
    ``PBIDENTITY_FUZZ_EXAMPLES`` changes the count; arguments go to pytest
    (``nox -s fuzz -- -k saml -x``).
    """
    session.install("-e", f".[{EXTRAS}]", *_group("test"))
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
    session.install("-e", f".[{EXTRAS}]", *_group("typing"), *_group("bench"), "nox")
    session.run("mypy", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors."""
    # autodoc imports the framework adapters.
    session.install("-e", ".[flask,fastapi]", *_group("docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run a benchmark: okta (the default), link, scale, saml or all; arguments after it go to it.

    ``nox -s bench`` replays an Okta workload against pbidentity and scim2-server;
    ``nox -s bench -- link`` links 100,000 existing members from an export;
    ``nox -s bench -- scale --members 1000000`` loads a million members on SQLite
    and PostgreSQL and times lookups, pages and writes;
    ``nox -s bench -- saml`` times validating one signed SAML response with
    python3-saml's own path and with ``verify_response``.
    """
    session.install("-e", ".[postgres,saml]", *_group("bench"))
    scripts = {
        "okta": "okta_workload.py",
        "link": "link_members.py",
        "scale": "scale.py",
        "saml": "saml_validate.py",
    }
    args = list(session.posargs)
    chosen = args.pop(0) if args and args[0] in (*scripts, "all") else "okta"
    for name in scripts if chosen == "all" else (chosen,):
        session.run("python", f"bench/{scripts[name]}", *args)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Run the FastAPI reference app (SCIM, SAML, the admin pages) on an embedded SQLite file."""
    session.install("-e", ".[saml,fastapi]")
    session.run(
        "pbidentity",
        "--database",
        "sqlite:///pbidentity-demo.db",
        "serve",
        "--demo",
        *session.posargs,
    )
