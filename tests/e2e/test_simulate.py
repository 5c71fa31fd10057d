"""`pbidentity simulate` over real HTTP: every profile passes against `pbidentity serve`.

The simulator's checks must be able to fail, so the same runs also go through
a small fault-injecting proxy (a stdlib HTTP server in a thread) that forwards
to the real server and breaks exactly one thing: the step that looks at that
thing must FAIL with a reason that says what was expected and what came back.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import attrs
import pytest

from pbidentity.cli import main
from pbidentity.simulate import PROFILES
from pbidentity.simulate import SimulationResult
from pbidentity.simulate import run
from pbidentity.simulate import step_names
from tests.e2e.test_serve import Server
from tests.e2e.test_serve import _cli

LINE = re.compile(r"^(PASS|FAIL|SKIP) \S")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `pbidentity serve` for the module: runs never collide, each names its own users."""
    database = f"sqlite:///{tmp_path_factory.mktemp('simulate') / 'served.db'}"
    _cli(database, "tenants", "create", "acme")
    _cli(database, "scim", "enable", "--tenant", "acme")
    token = _cli(database, "tokens", "create", "--tenant", "acme", "--name", "sim").split()[-1]
    process = subprocess.Popen(
        [sys.executable, "-m", "pbidentity.cli", "--database", database, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("SCIM base URL: "), first
        yield Server(base_url=first.removeprefix("SCIM base URL: ").strip(), token=token)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _report(result: SimulationResult) -> str:
    return "\n".join(step.line() for step in result.steps)


# --------------------------------------------------------------------------- pbidentity passes


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_passes_against_pbidentity(served: Server, profile: str) -> None:
    """Each IdP's whole conversation passes against a real `pbidentity serve`, no step skipped."""
    out = io.StringIO()
    result = run(profile, served.base_url, served.token, out=out)
    assert [step.outcome for step in result.steps] == ["PASS"] * len(result.steps), _report(result)
    assert [step.name for step in result.steps] == step_names(profile)
    lines = out.getvalue().splitlines()
    assert lines[:-1] == [f"PASS {name}" for name in step_names(profile)]
    assert lines[-1] == f"{len(result.steps)} passed, 0 failed"
    assert result.exit_status == 0
    assert result.stopped is None


def test_cli_runs_a_profile_and_exits_zero(served: Server) -> None:
    """`pbidentity simulate` as a subprocess: a PASS line per step, the summary, status 0."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pbidentity.cli",
            "simulate",
            "okta-catalog",
            "--url",
            served.base_url,
            "--token",
            served.token,
            "--users",
            "25",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    names = step_names("okta-catalog")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.splitlines() == [
        *(f"PASS {name}" for name in names),
        f"{len(names)} passed, 0 failed",
    ]
    # Progress goes to stderr, so that stdout stays one line per step.
    assert "okta-catalog against" in completed.stderr
    assert "push new users: 25/25" in completed.stderr


# --------------------------------------------------------------------------- a faulty server


@attrs.define
class Exchange:
    """One request through the proxy and the answer it gives back; faults edit both."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: Any
    status: int = 0
    answer_headers: dict[str, str] = attrs.Factory(dict)
    answer: Any = None


class Fault:
    """A proxy that changes nothing: the control for the faults below."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def before(self, exchange: Exchange) -> None:
        """Edit the request before it is forwarded."""

    def after(self, exchange: Exchange) -> None:
        """Edit the answer before it is sent back."""


def _users_in(answer: Any) -> list[dict[str, Any]]:
    if not isinstance(answer, dict):
        return []
    if isinstance(answer.get("Resources"), list):
        return [r for r in answer["Resources"] if isinstance(r, dict)]
    return [answer] if "userName" in answer else []


def _sets_inactive(body: Any) -> bool:
    """Whether a user update sets active to false, in any IdP's shape."""
    if isinstance(body, dict):
        if body.get("active") in (False, "false", "False"):
            return True
        if body.get("path") == "active" and body.get("value") in (False, "False"):
            return True
        return any(_sets_inactive(value) for value in body.values())
    if isinstance(body, list):
        return any(_sets_inactive(item) for item in body)
    return False


class StickyInactive(Fault):
    """Once a user was deactivated, answers say active:false forever, even after reactivation."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.deactivated: set[str] = set()

    def before(self, exchange: Exchange) -> None:
        """Remember the users a PUT or PATCH deactivates."""
        parts = exchange.path.split("/")
        updates_user = exchange.method in ("PUT", "PATCH") and parts[-2] == "Users"
        if updates_user and _sets_inactive(exchange.body):
            self.deactivated.add(parts[-1])

    def after(self, exchange: Exchange) -> None:
        """Report them inactive in every answer."""
        for user in _users_in(exchange.answer):
            if user.get("id") in self.deactivated:
                user["active"] = False


class PlainJson(Fault):
    """Answers with Content-Type application/json instead of application/scim+json."""

    def after(self, exchange: Exchange) -> None:
        """Replace the media type."""
        if "content-type" in exchange.answer_headers:
            exchange.answer_headers["content-type"] = "application/json"


class IgnoresFilter(Fault):
    """Drops the filter: every lookup lists all users."""

    def before(self, exchange: Exchange) -> None:
        """Forward the query without its filter."""
        exchange.query = [(k, v) for k, v in exchange.query if k != "filter"]


class RemoveWipesGroup(Fault):
    """Treats Entra's `Remove members` with a value list as "remove all members"."""

    def before(self, exchange: Exchange) -> None:
        """Drop the value list of member removals."""
        if exchange.method == "PATCH" and isinstance(exchange.body, dict):
            for operation in exchange.body.get("Operations", []):
                if (
                    str(operation.get("op")).lower() == "remove"
                    and operation.get("path") == "members"
                ):
                    operation.pop("value", None)


class AcceptsAnyToken(Fault):
    """Lets any bearer token in (scim2-server's test server does this without a token)."""

    def before(self, exchange: Exchange) -> None:
        """Forward every request with the good token."""
        exchange.headers["authorization"] = f"Bearer {self.server.token}"


class SlowSchemas(Fault):
    """Answers GET /Schemas later than the simulator waits."""

    def before(self, exchange: Exchange) -> None:
        """Sleep on /Schemas."""
        if exchange.path.endswith("/Schemas"):
            time.sleep(1.5)


@attrs.define
class Proxy:
    """A fault-injecting HTTP proxy in front of the real server, and what went through it."""

    base_url: str
    exchanges: list[Exchange]


@pytest.fixture
def proxy(served: Server, request: pytest.FixtureRequest) -> Iterator[Proxy]:
    """A stdlib HTTP server in a thread that forwards to `served` through the test's fault."""
    fault: Fault = getattr(request, "param", Fault)(served)
    upstream = urlsplit(served.base_url)
    exchanges: list[Exchange] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output clean."""

        def forward(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            exchange = Exchange(
                method=self.command,
                path=path,
                query=parse_qsl(query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=json.loads(raw) if raw else None,
            )
            exchanges.append(exchange)
            fault.before(exchange)
            headers = {
                k: v for k, v in exchange.headers.items() if k not in ("host", "content-length")
            }
            target = exchange.path + (f"?{urlencode(exchange.query)}" if exchange.query else "")
            connection = http.client.HTTPConnection(
                str(upstream.hostname), upstream.port, timeout=10
            )
            payload = None if exchange.body is None else json.dumps(exchange.body).encode()
            try:
                connection.request(exchange.method, target, body=payload, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            finally:
                connection.close()
            exchange.status = answer.status
            exchange.answer_headers = {k.lower(): v for k, v in answer.getheaders()}
            exchange.answer = json.loads(data) if data.strip() else None
            fault.after(exchange)
            body = b"" if exchange.answer is None else json.dumps(exchange.answer).encode()
            self.send_response(exchange.status)
            for name in ("content-type", "etag", "location", "www-authenticate"):
                if name in exchange.answer_headers:
                    self.send_header(name, exchange.answer_headers[name])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    class Quiet(ThreadingHTTPServer):
        # Closing the server waits for the handlers still running (the slow
        # one of the timeout test), so that none leaves its socket to the
        # garbage collector, where it would warn in a later test.
        daemon_threads = False
        block_on_close = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            """A client that stopped waiting (the timeout test) is expected here."""

    server = Quiet(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Proxy(f"http://127.0.0.1:{server.server_address[1]}{upstream.path}", exchanges)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("proxy", [Fault], indirect=True)
def test_requests_carry_each_idps_headers(served: Server, proxy: Proxy) -> None:
    """Through a transparent proxy all passes; Okta's and Entra's headers are theirs, exactly."""
    okta = run("okta-custom", proxy.base_url, served.token)
    assert okta.ok, _report(okta)
    okta_requests = list(proxy.exchanges)
    proxy.exchanges.clear()
    entra = run("entra", proxy.base_url, served.token)
    assert entra.ok, _report(entra)
    for exchange in okta_requests:
        assert exchange.headers["user-agent"] == "Okta SCIM Client 1.0.0"
        assert exchange.headers["accept"] == "application/scim+json"
        assert exchange.headers["authorization"].startswith("Bearer ")
        if exchange.body is not None:
            assert exchange.headers["content-type"] == "application/scim+json; charset=utf-8"
    assert {e.method for e in okta_requests} >= {"GET", "POST", "PUT", "DELETE"}
    assert "PATCH" not in {e.method for e in okta_requests}  # the custom app PUTs everything
    for exchange in proxy.exchanges:
        assert "user-agent" not in exchange.headers
        if exchange.body is not None:
            assert exchange.headers["content-type"] == "application/scim+json"
    assert ("count", "5") in [q for e in proxy.exchanges for q in e.query]
    assert any(e.method == "DELETE" and "/Users/" in e.path for e in proxy.exchanges)


@pytest.mark.parametrize("proxy", [StickyInactive], indirect=True)
def test_a_user_left_inactive_after_reactivation_fails(served: Server, proxy: Proxy) -> None:
    """A server that keeps answering active:false after reactivation fails that step."""
    out = io.StringIO()
    result = run("okta-catalog", proxy.base_url, served.token, out=out)
    assert result.step("deactivate a user").outcome == "PASS"
    reactivate = result.step("reactivate the same user")
    assert reactivate.outcome == "FAIL"
    assert "expected active true (got false)" in reactivate.reason
    assert "PATCH /scim/v2/Users/" in reactivate.reason
    assert "answered 200" in reactivate.reason
    assert result.exit_status == 1
    assert f"FAIL reactivate the same user: {reactivate.reason}" in out.getvalue().splitlines()


@pytest.mark.parametrize("proxy", [PlainJson], indirect=True)
def test_a_plain_json_content_type_fails_entra_only(served: Server, proxy: Proxy) -> None:
    """Entra wants application/scim+json on every answer; Okta does not check it."""
    entra = run("entra", proxy.base_url, served.token)
    connection = entra.step("test connection")
    assert connection.outcome == "FAIL"
    assert "expected Content-Type application/scim+json" in connection.reason
    assert "with application/json" in connection.reason
    assert entra.exit_status == 1
    okta = run("okta-catalog", proxy.base_url, served.token)
    assert okta.ok, _report(okta)


@pytest.mark.parametrize("proxy", [IgnoresFilter], indirect=True)
def test_a_server_that_ignores_the_filter_fails_the_push(served: Server, proxy: Proxy) -> None:
    """A lookup answering other users than the one asked for fails before a duplicate is made."""
    result = run("okta-custom", proxy.base_url, served.token)
    push = result.step("push new users: look up, then create")
    assert push.outcome == "FAIL"
    assert "(the filter was ignored?)" in push.reason
    assert "GET /scim/v2/Users?filter=userName%20eq%20%22sim-" in push.reason
    assert result.exit_status == 1


@pytest.mark.parametrize("proxy", [RemoveWipesGroup], indirect=True)
def test_a_remove_that_empties_the_group_fails(served: Server, proxy: Proxy) -> None:
    """Entra's `Remove members` with a value list must remove those members only."""
    result = run("entra", proxy.base_url, served.token)
    assert result.step("add members").outcome == "PASS"
    remove = result.step("remove members listed by value, add one, in one request")
    assert remove.outcome == "FAIL"
    assert "after removing one member (missing [" in remove.reason
    assert "GET /scim/v2/Groups/" in remove.reason
    assert result.exit_status == 1


@pytest.mark.parametrize("proxy", [AcceptsAnyToken], indirect=True)
def test_a_server_that_accepts_any_token_fails_through_the_cli(
    served: Server, proxy: Proxy
) -> None:
    """The CLI prints the FAIL line with the evidence and exits with status 1."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pbidentity.cli",
            "simulate",
            "jumpcloud",
            "--url",
            proxy.base_url,
            "--token",
            served.token,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 1
    lines = completed.stdout.splitlines()
    assert all(LINE.match(line) for line in lines[:-1]), lines
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1
    assert failed[0].startswith(
        "FAIL refuse a wrong token with 401: expected 401 with a SCIM Error body; "
        "GET /scim/v2/Users?startIndex=1&count=1 answered 200: "
    )
    assert lines[-1] == f"{len(lines) - 2} passed, 1 failed"
    assert completed.stderr == ""


@pytest.mark.parametrize("proxy", [SlowSchemas], indirect=True)
def test_a_timeout_fails_one_step_and_the_run_goes_on(served: Server, proxy: Proxy) -> None:
    """No answer within the timeout is one FAIL line, not a traceback, and later steps run."""
    result = run("okta-custom", proxy.base_url, served.token, timeout=0.5)
    discovery = result.step("discover the role attribute in /Schemas")
    assert discovery.outcome == "FAIL"
    assert discovery.reason == "GET /scim/v2/Schemas: no answer within 0.5 s"
    assert result.step("push new users: look up, then create").outcome == "PASS"
    assert result.stopped is None


def test_an_unreachable_server_is_one_fail_line() -> None:
    """Nothing listening: one FAIL line saying so, the summary, and the run stops."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = io.StringIO()
    result = run("entra", f"http://127.0.0.1:{port}/scim/v2", "t0ken", out=out)
    assert out.getvalue().splitlines() == [
        f"FAIL discover the role attribute in /Schemas: cannot connect to 127.0.0.1:{port}: "
        "Connection refused; the run stops here",
        "0 passed, 1 failed",
    ]
    assert result.stopped == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert result.exit_status == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["okta", "--url", "http://127.0.0.1/scim/v2"], "unknown profile 'okta'; choose one of: "),
        (["entra", "--url", "127.0.0.1:8000/scim/v2"], "must start with http:// or https://"),
        (["entra", "--url", "http://127.0.0.1/scim/v2", "--users", "2"], "at least 3"),
    ],
)
def test_cli_input_mistakes_are_one_error_line(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad profile, URL or user count: one `pbidentity: error:` line, status 1, no request."""
    assert main(["simulate", *arguments, "--token", "t"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("pbidentity: error: ")
    assert message in captured.err


# --------------------------------------------------------------------------- scim2-server


@pytest.fixture(scope="module")
def scim2_server() -> Iterator[str]:
    """scim2-server's test server application (in memory, one bearer token) on a free port."""
    from wsgiref.simple_server import WSGIRequestHandler
    from wsgiref.simple_server import make_server

    from scim2_models import ScimProvider
    from scim2_server.memory import InMemoryStorage
    from scim2_server.service import ScimService
    from scim2_server.testserver.application import BEARER_TOKEN_SCHEME
    from scim2_server.testserver.application import BearerTokenApplication
    from scim2_server.utils import load_default_resource_types
    from scim2_server.utils import load_default_schemas
    from scim2_server.utils import load_default_service_provider_config

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output clean."""

    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )
    app = BearerTokenApplication(
        InMemoryStorage(),
        provider,
        service=ScimService(provider, secret="s" * 32),
        bearer_tokens=["scim2-server-token"],
    )
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_completes_against_scim2_server(scim2_server: str, profile: str) -> None:
    """Against another SCIM server the run completes with one result line per step.

    Whether each step passes there is scim2-server's business; the run must
    not crash, stop early, or leave a step without a line.
    """
    out = io.StringIO()
    result = run(profile, scim2_server, "scim2-server-token", out=out)
    lines = out.getvalue().splitlines()
    assert [step.name for step in result.steps] == step_names(profile)
    assert result.stopped is None
    assert all(LINE.match(line) for line in lines[:-1]), lines
    assert len(lines) == len(result.steps) + 1
    assert lines[-1] == result.summary()
    assert result.step("refuse a wrong token with 401").outcome == "PASS"


def test_step_names_are_stable_and_unique() -> None:
    """Every profile has distinct step names, starting with its checks of the token."""
    for profile in PROFILES:
        names = step_names(profile)
        assert len(names) == len(set(names)), profile
        assert "refuse a wrong token with 401" in names
        assert names[-1] == "delete the group"


def test_output_goes_to_a_file_like_object(tmp_path: Path, served: Server) -> None:
    """`out` takes any text file: the lines land there, the result says the same."""
    path = tmp_path / "run.txt"
    with path.open("w", encoding="utf-8") as out:
        result = run("onelogin", served.base_url, served.token, users=3, out=out)
    assert path.read_text(encoding="utf-8").splitlines() == [
        *(f"PASS {name}" for name in step_names("onelogin")),
        f"{len(step_names('onelogin'))} passed, 0 failed",
    ]
    assert result.ok
