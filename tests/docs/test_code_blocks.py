"""Every code block of the documentation runs: one test per page, named after the page.

Collected: every fenced block of ``docs/**/*.md`` (``docs/_build`` aside) and of
``README.md``. A page's blocks run in order, in a fresh temporary directory that
is the working directory, with ``PBIDENTITY_DATABASE_URL`` pointing to a SQLite
file there (``docs/howto/postgresql.md`` gets the test PostgreSQL server
instead, see :data:`POSTGRES_PAGES`):

* ``python``: executed; a page's blocks share one namespace.
* ``console``, ``shell``, ``bash``: every ``$ pbidentity ...`` line (every line,
  in a block without a ``$`` prompt) runs through :func:`pbidentity.cli.main`.
  Its exit status must be 0, unless the output the block shows under it is an
  error (a ``pbidentity: error:`` line or an ``ERROR`` finding): then it must
  not be 0. ``VAR=$(pbidentity ... | tail -n 1)`` keeps the last line the
  command printed in ``$VAR`` for the commands after it. Commands of other
  programs are not run, and only those in :data:`OTHER_PROGRAMS` may appear.
  The commands in :data:`NOT_RUN` are shown but not run (they serve until
  interrupted, or talk to such a server); each names the test that runs them.
* ``json`` must parse; ``http`` must be an HTTP message whose JSON body, if it
  has one, parses; ``xml`` must be well-formed.
* ``text``, ``toml`` and ``ini`` blocks are shown only. A block in any
  other language, or in none, fails the page: decide what the test does with it.

Markers, HTML comments the rendered page does not show, on the line before a block:

* ``<!-- docs-test: file NAME -->``: the block is the content of the file NAME,
  written to the page's directory for the blocks after it;
* ``<!-- docs-test: skip (REASON) -->``: the block is not run. Every skip must be
  listed in :data:`SKIPPED` with the test that covers what the block shows.

The input files the pages name as the reader's own (an Okta app's metadata) are
made in each page's directory by :func:`_fixtures`, with certificates valid today.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy

from pbidentity import cli
from pbidentity.storage.sql import SqlStorage
from tests.conftest import wipe_database
from tests.saml.certs import base64_body
from tests.saml.certs import make_certificate

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: Programs a page may show besides ``pbidentity``: shown to the reader, never run here.
OTHER_PROGRAMS = frozenset(
    {
        "curl",  # a request to a running server
        "flask",  # `flask --app app run`: the reader's own server
        "nox",
        "pip",
        "python3 -m nox",
        "python3 -m pip",
        "uvicorn",  # the reader's own server
    }
)

#: ``pbidentity`` commands shown but not run, by their first words: why, and the test running them.
NOT_RUN: dict[tuple[str, ...], tuple[str, str]] = {
    ("serve",): (
        "serves until interrupted",
        "tests/e2e/test_serve.py::test_serve_prints_the_urls_to_open_and_serves_the_reference_app",
    ),
    ("simulate",): (
        "talks to the server `pbidentity serve` started on the line before",
        "tests/e2e/test_simulate.py::test_cli_runs_a_profile_and_exits_zero",
    ),
}

#: Blocks marked ``<!-- docs-test: skip (REASON) -->``: (page, reason) -> the test that covers them.
SKIPPED: dict[tuple[str, str], str] = {}

#: Pages whose examples run against the test PostgreSQL server rather than a SQLite file.
POSTGRES_PAGES = frozenset({"docs/howto/postgresql.md"})

#: Pages owned elsewhere whose blocks do not run yet: page -> why. Strict: once a
#: page runs, its entry must go.
NOT_YET_RUNNABLE: dict[str, str] = {}

# (No "csv": Pygments has no lexer for it, and the build treats that warning as an error.)
SHOWN_ONLY = frozenset({"text", "toml", "ini"})
SHELLS = frozenset({"console", "shell", "bash"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<kind>\w+)\s*(?P<arg>.*?)\s*-->$")
_CAPTURE = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_]*)=\$\((?P<command>.+) \| tail -n 1\)$")
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)\}|(?P<plain>\w+))")


@attrs.frozen
class Block:
    """One fenced block: its language, text, first line (1-based) and the marker before it."""

    language: str
    text: str
    line: int
    marker: tuple[str, str] | None = None

    @property
    def where(self) -> str:
        """``line N`` (the opening fence's line), for failure messages."""
        return f"line {self.line}"


def _pages() -> list[Path]:
    pages = [p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts]
    return [*sorted(pages), ROOT / "README.md"]


def _cases() -> list[Any]:
    return [
        pytest.param(
            page,
            id=_name(page),
            marks=[pytest.mark.xfail(reason=NOT_YET_RUNNABLE[_name(page)], strict=True)]
            if _name(page) in NOT_YET_RUNNABLE
            else [],
        )
        for page in _pages()
    ]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(text: str, *, first_line: int = 1) -> Iterator[Block]:
    """The fenced code blocks of a Markdown text, nested directive blocks included."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        indent = len(opening["indent"])
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        else:
            raise AssertionError(f"line {first_line + index}: a fence that never closes")
        content = "\n".join(body) + "\n"
        if info.startswith("{"):
            # A MyST directive (toctree, eval-rst, a note): only code inside it counts.
            yield from blocks(content, first_line=first_line + index + 1)
        else:
            yield Block(
                language=info.split()[0].lower() if info else "",
                text=content,
                line=first_line + index,
                marker=_marker(lines[:index]),
            )
        index = end + 1


def _marker(before: list[str]) -> tuple[str, str] | None:
    for line in reversed(before):
        if line.strip():
            found = _MARKER.match(line.strip())
            return None if found is None else (found["kind"], found["arg"])
    return None


@attrs.define
class Page:
    """The state one page's blocks share: namespace, directory and shell variables."""

    name: str
    directory: Path
    namespace: dict[str, Any]
    variables: dict[str, str] = attrs.field(factory=dict)


def _fixtures(directory: Path) -> None:
    """The files the pages name as the reader's own, made for today's date."""
    today = datetime.now(UTC)
    old = make_certificate(
        cn="acme", not_before=today - timedelta(days=340), not_after=today + timedelta(days=25)
    )[1]
    new = make_certificate(
        cn="acme", not_before=today - timedelta(days=1), not_after=today + timedelta(days=3650)
    )[1]
    (directory / "okta-metadata.xml").write_bytes(_okta_metadata([new]))
    # The Okta app during a certificate rollover: the active certificate, which
    # expires soon, and the next one.
    (directory / "okta-metadata-rollover.xml").write_bytes(_okta_metadata([old, new]))


OKTA_ENTITY = "http://www.okta.com/exk1abcd2EFGH3ijk4l5"
OKTA_SSO = "https://acme.okta.com/app/acme_pbidentity_1/exk1abcd2EFGH3ijk4l5/sso/saml"


def _okta_metadata(certificates: list[str]) -> bytes:
    """Metadata shaped like an Okta SAML app's: its issuer, POST and Redirect SSO, EmailAddress."""
    keys = "".join(
        '<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
        f"<ds:X509Data><ds:X509Certificate>{base64_body(pem)}</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for pem in certificates
    )
    sso = "".join(
        f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}" '
        f'Location="{OKTA_SSO}"/>'
        for binding in ("HTTP-POST", "HTTP-Redirect")
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<md:EntityDescriptor entityID="{OKTA_ENTITY}" '
        'xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
        '<md:IDPSSODescriptor WantAuthnRequestsSigned="false" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{keys}"
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>"
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>"
        f"{sso}</md:IDPSSODescriptor></md:EntityDescriptor>"
    ).encode()


# --------------------------------------------------------------------------- runners


def _run_python(page: Page, block: Block) -> None:
    code = compile(block.text, f"{page.name}:{block.line}", "exec")
    exec(code, page.namespace)  # noqa: S102 - the documentation's own examples


def _commands(block: Block) -> list[tuple[str, list[str], int]]:
    """(command line, the output lines shown under it, its line number) for each command."""
    lines = block.text.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    found: list[tuple[str, list[str], int]] = []
    pending, started = "", 0
    for number, line in enumerate(lines, block.line + 1):
        if pending:
            pending = pending[:-1].rstrip() + " " + line.strip()
            if not pending.endswith("\\"):
                found.append((pending, [], started))
                pending = ""
            continue
        if prompted and not line.startswith("$ "):
            if found:
                found[-1][1].append(line)
            continue
        command = line.removeprefix("$ ").strip()
        if not command or command.startswith("#"):
            continue
        if command.endswith("\\"):
            pending, started = command, number
        else:
            found.append((command, [], number))
    assert not pending, f"{block.where}: a command continues past the end of the block"
    return found


def _expand(page: Page, word: str, where: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        assert name in page.variables, f"{where}: ${name} is used before the page sets it"
        return page.variables[name]

    return _VARIABLE.sub(value, word)


def _run_shell(page: Page, block: Block) -> None:
    for command, output, number in _commands(block):
        where = f"{page.name} line {number}: {command}"
        capture = _CAPTURE.match(command)
        line = capture["command"] if capture else command
        words = [_expand(page, word, where) for word in shlex.split(line, comments=True)]
        if words and words[-1] == "&":
            words.pop()
        if not words or words[0] != "pbidentity":
            program = " ".join(words[:3]) if words[:2] == ["python3", "-m"] else words[0]
            assert program in OTHER_PROGRAMS, (
                f"{where}: {program!r} is neither pbidentity nor one of the programs the "
                "docs may show (OTHER_PROGRAMS)"
            )
            continue
        args = words[1:]
        if any(tuple(args[: len(key)]) == key for key in NOT_RUN):
            continue
        assert not any(w in {"|", "&&", ";", ">", "<"} for w in args), (
            f"{where}: the docs test runs plain commands (and VAR=$(... | tail -n 1))"
        )
        status, out = _pbidentity(args)
        if capture:
            lines = out.strip().splitlines()
            page.variables[capture["name"]] = lines[-1] if lines else ""
        shows_error = any(
            shown.startswith("pbidentity: error:") or re.match(r"ERROR\s", shown)
            for shown in output
        )
        if shows_error:
            assert status != 0, f"{where}: the page shows an error, the command exited 0:\n{out}"
        else:
            assert status == 0, f"{where}: exited {status}:\n{out}"


def _pbidentity(args: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(args)
        except SystemExit as exit_:  # argparse's usage errors
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, out.getvalue() + err.getvalue()


def _check_json(block: Block) -> None:
    try:
        json.loads(block.text)
    except ValueError as error:
        raise AssertionError(f"{block.where}: the JSON does not parse: {error}") from error


def _check_http(block: Block) -> None:
    head, _, body = block.text.partition("\n\n")
    lines = head.splitlines()
    assert lines, f"{block.where}: an empty HTTP message"
    start = lines[0]
    request = re.fullmatch(r"[A-Z]+ \S+ HTTP/\d(\.\d)?", start)
    response = re.fullmatch(r"HTTP/\d(\.\d)? \d{3}( .*)?", start)
    assert request or response, f"{block.where}: {start!r} is no request or status line"
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        assert colon, f"{block.where}: {line!r} is not a header"
        assert name.strip(), f"{block.where}: {line!r} has no header name"
        headers[name.strip().lower()] = value.strip()
    if body.strip() and "json" in headers.get("content-type", ""):
        try:
            json.loads(body)
        except ValueError as error:
            raise AssertionError(f"{block.where}: the JSON body does not parse: {error}") from error


def _check_xml(block: Block) -> None:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        etree.fromstring(block.text.encode(), parser)
    except etree.XMLSyntaxError as error:
        raise AssertionError(f"{block.where}: the XML is not well-formed: {error}") from error


def _run(page: Page, block: Block) -> None:
    if block.marker is not None:
        kind, argument = block.marker
        if kind == "file":
            assert argument, f"{block.where}: a file marker needs the file's name"
            assert "/" not in argument, f"{block.where}: the file goes in the page's directory"
            (page.directory / argument).write_text(block.text, encoding="utf-8")
            return
        if kind == "skip":
            reason = argument.removeprefix("(").removesuffix(")").strip()
            assert reason, f"{block.where}: a skip needs a reason: <!-- docs-test: skip (why) -->"
            assert (page.name, reason) in SKIPPED, (
                f"{block.where}: skip ({reason}) is not listed in SKIPPED with its covering test"
            )
            return
        raise AssertionError(f"{block.where}: unknown docs-test marker {kind!r}")
    language = block.language
    if language in ("python", "py"):
        _run_python(page, block)
    elif language in SHELLS:
        _run_shell(page, block)
    elif language == "json":
        _check_json(block)
    elif language == "http":
        _check_http(block)
    elif language == "xml":
        _check_xml(block)
    elif language not in SHOWN_ONLY:
        raise AssertionError(
            f"{block.where}: a block in {language or 'no language'!r}: give it a language "
            "this test runs or shows (see its docstring)"
        )


def _close(namespace: dict[str, Any]) -> None:
    """Close the storage and engines a page left open, its own or its services'."""
    for value in list(namespace.values()):
        if isinstance(value, sqlalchemy.Engine):
            value.dispose()
        # A storage, a service or admin holding one, or an extension holding a service.
        held = [value, _attribute(value, "storage"), _attribute(value, "_scim")]
        held.append(_attribute(held[-1], "storage"))
        for storage in held:
            if isinstance(storage, SqlStorage):
                storage.close()


def _attribute(value: object, name: str) -> object:
    try:
        return getattr(value, name, None)
    except Exception:  # a context-bound proxy (flask.request) outside its context
        return None


@pytest.fixture
def page_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The page's database: a SQLite file, or the emptied test PostgreSQL server."""
    page: Path = request.node.callspec.params["page"]
    if _name(page) not in POSTGRES_PAGES:
        return f"sqlite:///{tmp_path / 'pbidentity.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP SCHEMA IF EXISTS pbidentity CASCADE"))
    wipe_database(engine)
    engine.dispose()
    return url


@pytest.mark.parametrize("page", _cases())
def test_every_block_of_the_page_runs(
    page: Path, page_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's code blocks run in order, its commands exit as shown, its data parses."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.DATABASE_ENV, page_database)
    _fixtures(tmp_path)
    run_page(_name(page), page.read_text(encoding="utf-8"), tmp_path)


def run_page(name: str, text: str, directory: Path) -> None:
    """Run a page's blocks in order, in ``directory``; the first failure names its block."""
    state = Page(name=name, directory=directory, namespace={"__name__": "docs_page"})
    try:
        for block in blocks(text):
            try:
                _run(state, block)
            except Exception as error:
                raise AssertionError(
                    f"{name} {block.where} ({block.language}): {error!r}"
                ) from error
    finally:
        _close(state.namespace)


def test_the_pages_are_collected() -> None:
    """The tutorial, how-to, explanation and reference pages and the README are all here."""
    names = {_name(page) for page in _pages()}
    assert {"README.md", "docs/index.md", "docs/tutorial/okta.md"} <= names
    assert not any("_build" in name for name in names)


def test_what_is_not_run_is_covered_elsewhere() -> None:
    """Each command shown but not run, and each skipped block, names a test that exists."""
    covering = [test for _, test in NOT_RUN.values()] + list(SKIPPED.values())
    for nodeid in covering:
        path, _, function = nodeid.partition("::")
        source = (ROOT / path).read_text(encoding="utf-8")
        assert f"def {function}(" in source, f"{nodeid} does not exist"
    for page, reason in SKIPPED:
        assert f"docs-test: skip ({reason})" in (ROOT / page).read_text(encoding="utf-8"), (
            f"SKIPPED lists ({page}, {reason}), which the page no longer has"
        )


def test_markers_and_fences_are_read_as_the_docs_mean_them() -> None:
    """Nested directive blocks are searched, markers attach to the next block only."""
    text = (
        "Intro\n\n"
        "<!-- docs-test: file users.csv -->\n"
        "```text\nUsername\njane@acme.example\n```\n\n"
        "````{note}\n```python\nx = 1\n```\n````\n\n"
        "```console\n$ pbidentity tenants create acme\ncreated tenant acme\n"
        "$ pbidentity policy set --tenant acme \\\n    --mode hybrid\n```\n"
    )
    found = list(blocks(text))
    assert [(b.language, b.line, b.marker) for b in found] == [
        ("text", 4, ("file", "users.csv")),
        ("python", 10, None),
        ("console", 15, None),
    ]
    assert found[0].text == "Username\njane@acme.example\n"
    assert _commands(found[2]) == [
        ("pbidentity tenants create acme", ["created tenant acme"], 16),
        ("pbidentity policy set --tenant acme --mode hybrid", [], 18),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```console\n$ pbidentity tokens revoke --tenant nope okta\n```\n", "exited 1"),
        (
            "```console\n$ pbidentity tenants create acme\n$ pbidentity tenants create acme\n"
            "created tenant acme\n```\n",
            "exited 1",
        ),
        (
            "```console\n$ pbidentity tenants create acme\npbidentity: error: nope\n```\n",
            "the page shows an error",
        ),
        ("```console\n$ rm -rf build\n```\n", "is neither pbidentity"),
        ("```console\n$ pbidentity tenants list | grep acme\n```\n", "plain commands"),
        ("```console\n$ pbidentity tokens list --tenant $SLUG\n```\n", "before the page sets it"),
        ("```python\nraise ValueError('broken example')\n```\n", "broken example"),
        ("```\nsome code\n```\n", "give it a language"),
        ("```yaml\nkey: value\n```\n", "give it a language"),
        ('```json\n{"a": 1,}\n```\n', "does not parse"),
        ("```http\nHTTP/1.1 200 OK\nContent-Type: application/json\n\n{x}\n```\n", "JSON body"),
        ("```xml\n<a><b></a>\n```\n", "not well-formed"),
        ("<!-- docs-test: skip () -->\n```python\nx = 1\n```\n", "needs a reason"),
        ("<!-- docs-test: skip (slow) -->\n```python\nx = 1\n```\n", "not listed in SKIPPED"),
        ("<!-- docs-test: run -->\n```python\nx = 1\n```\n", "unknown docs-test marker"),
    ],
)
def test_a_broken_page_fails_naming_the_block(
    text: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong exits, unknown programs and languages, unparsable data and bare skips all fail."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.DATABASE_ENV, f"sqlite:///{tmp_path / 'pbidentity.db'}")
    with pytest.raises(AssertionError, match=r"^docs/broken\.md line \d") as failure:
        run_page("docs/broken.md", text, tmp_path)
    assert expected in str(failure.value)


def test_a_sound_page_runs_commands_variables_files_and_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Captured output feeds later commands, file markers write files, python shares a namespace."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.DATABASE_ENV, f"sqlite:///{tmp_path / 'pbidentity.db'}")
    text = (
        "```console\n$ pbidentity tenants create acme\n"
        "$ TOKEN=$(pbidentity tokens create --tenant acme --name okta | tail -n 1)\n"
        "$ pbidentity serve --port 8000 &\n"
        '$ curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/scim/v2/Users\n```\n'
        "<!-- docs-test: file users.csv -->\n```text\nUsername\nada@acme.example\n```\n"
        "```console\n$ pbidentity link --tenant acme --from users.csv\n```\n"
        "```python\nfrom pathlib import Path\n\nseen = Path('users.csv').read_text()\n```\n"
        "```python\nassert 'ada@acme.example' in seen\n```\n"
    )
    run_page("docs/sound.md", text, tmp_path)
