"""Every adapter, over real HTTP, answers the request table byte for byte as the core does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest

from pbidentity import PbIdentity
from pbidentity.http import Handler
from pbidentity.http import Mount
from pbidentity.http import Request
from pbidentity.http import Router
from tests.adapters.request_table import ECHO
from tests.adapters.request_table import ROWS
from tests.adapters.request_table import SCIM
from tests.adapters.request_table import Answer
from tests.adapters.request_table import Echo
from tests.adapters.request_table import Recorder
from tests.adapters.request_table import Sent
from tests.adapters.request_table import capture
from tests.adapters.request_table import core_answer
from tests.adapters.request_table import differences
from tests.adapters.request_table import fresh_identity
from tests.adapters.request_table import http_answer
from tests.adapters.request_table import table_router
from tests.adapters.request_table import uvicorn_server
from tests.adapters.request_table import werkzeug_server
from tests.adapters.request_table import wsgiref_server

#: The adapters whose host framework, not pbidentity, answers outside the prefixes.
HOSTED = ("flask", "fastapi")


@pytest.fixture(scope="module")
def core_answers(tmp_path_factory: pytest.TempPathFactory) -> list[Answer]:
    """The core's answers to the table, on a fresh database."""
    answers: list[Answer] = []
    with fresh_identity(tmp_path_factory.mktemp("core")) as (identity, values):
        router = table_router(identity)
        for row in ROWS:
            answer = core_answer(router, Sent.of(row, values))
            capture(row, answer, values)
            answers.append(answer)
    return answers


def test_the_core_answers_as_the_table_says(core_answers: list[Answer]) -> None:
    """Each row's status is the core's: the table also documents the behaviour."""
    wrong = [
        (row.name, answer.status, answer.body[:200])
        for row, answer in zip(ROWS, core_answers, strict=True)
        if answer.status != row.status
    ]
    assert wrong == []


def test_the_table_covers_what_it_promises() -> None:
    """Every method, the error statuses and the paths outside the prefixes are in the table."""
    assert {row.method for row in ROWS} >= {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
    assert {row.status for row in ROWS} >= {200, 201, 204, 304, 400, 401, 404, 405, 409, 413, 415}
    assert any(not row.path.startswith(SCIM + "/") and row.path != SCIM for row in ROWS)


def test_the_comparison_notices_what_an_adapter_could_get_wrong(
    core_answers: list[Answer],
) -> None:
    """A changed status, header, body or Content-Length is reported; extra headers are not."""
    index = next(i for i, row in enumerate(ROWS) if row.status == 201)
    row, expected = ROWS[index], core_answers[index]
    sent = Sent.of(row, {"token": "t", "alice": "a"})
    length = ("content-length", str(len(expected.body)))
    good = attrs.evolve(expected, headers=(*expected.headers, length, ("server", "x")))
    assert differences(row, sent, expected, good, outside=False) == []
    wrong = [
        attrs.evolve(good, status=200),
        attrs.evolve(good, body=expected.body + b" "),
        attrs.evolve(good, headers=tuple(h for h in good.headers if h[0] != "location")),
        attrs.evolve(good, headers=(*expected.headers, ("content-length", "1"))),
        attrs.evolve(good, headers=expected.headers),
    ]
    for answer in wrong:
        assert differences(row, sent, expected, answer, outside=False) != []


def test_the_router_the_adapters_share() -> None:
    """Longest prefix first, whole segments only, nested routers flattened, clear mistakes."""
    scim, saml, admin = (Recorder(max_body_bytes=n) for n in (10, 20, 30))
    mounts: dict[str, Handler] = {
        "/saml": saml,
        "/identity": Router({"/scim/v2": scim}),
        "/saml/admin": admin,
    }
    router = Router(mounts)
    assert [mount.prefix for mount in router.mounts] == [
        "/identity/scim/v2",
        "/saml/admin",
        "/saml",
    ]
    assert router.max_body_bytes == 30
    found = router.route("/identity/scim/v2/Users")
    assert found is not None
    assert (found[0].handler, found[1]) == (scim, "/Users")
    assert router.route("/saml/administrator") == (Mount("/saml", saml), "/administrator")
    assert router.route("/saml/admin") == (Mount("/saml/admin", admin), "/")
    assert router.route("/identity/scim") is None
    answer = router.handle(
        Request(method="GET", path="/saml/acme/login", base_url="https://a.example/")
    )
    assert answer.status == 200
    assert (saml.requests[0].path, saml.requests[0].base_url) == (
        "/acme/login",
        "https://a.example/saml",
    )
    assert (
        router.handle(Request(method="GET", path="/x", base_url="https://a.example"))
        is Router.not_found
    )
    assert Router.of(router) is router
    with pytest.raises(ValueError, match="two handlers"):
        Router({"/saml": saml, "/saml/": admin})
    with pytest.raises(ValueError, match="starts with '/'"):
        Router({"saml": saml})


@contextmanager
def _serve(target: str, identity: PbIdentity) -> Iterator[int]:
    """Serve the identity (and the echo handler) through one adapter on a real server."""
    mounts = {ECHO: Echo()}
    if target == "wsgi":
        import pbidentity.wsgi

        with wsgiref_server(pbidentity.wsgi.make_app(identity, mounts=mounts)) as port:
            yield port
    elif target == "asgi":
        import pbidentity.asgi

        with uvicorn_server(pbidentity.asgi.make_app(identity, mounts=mounts)) as port:
            yield port
    elif target == "flask":
        import flask

        import pbidentity.flask

        app = flask.Flask("host")
        pbidentity.flask.init_app(app, identity, mounts=mounts)
        with werkzeug_server(app) as port:
            yield port
    else:
        import fastapi

        import pbidentity.fastapi

        asgi_app = fastapi.FastAPI()
        pbidentity.fastapi.init_app(asgi_app, identity, mounts=mounts)
        with uvicorn_server(asgi_app) as port:
            yield port


@pytest.mark.parametrize("target", ["wsgi", "asgi", "flask", "fastapi"])
def test_every_adapter_answers_as_the_core(
    target: str, core_answers: list[Answer], tmp_path: Path
) -> None:
    """Status, the headers that matter, Content-Length and body are the core's, row by row."""
    problems: list[str] = []
    with fresh_identity(tmp_path) as (identity, values), _serve(target, identity) as port:
        router = table_router(identity)
        for row, expected in zip(ROWS, core_answers, strict=True):
            sent = Sent.of(row, values)
            got = http_answer(port, sent)
            capture(row, got, values)
            outside = target in HOSTED and router.route(sent.path) is None
            problems += differences(row, sent, expected, got, outside=outside)
    assert problems == []
