"""Attacks on the sign-in flow around the response: each must be refused or harmless.

:mod:`tests.saml.test_attacks` tampers with the response itself; these go
through the service and its HTTP endpoints as a browser, another
workspace's admin or a script would: login CSRF, RelayState of any bytes,
malformed ACS forms, unsolicited responses that claim to answer a request,
anonymous sign-in starts, and what one workspace learns of another.
"""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import pytest
import sqlalchemy

from pbidentity.admin import Admin
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.members import Members
from pbidentity.saml import default_result_page
from pbidentity.saml import local_dev_hosts
from pbidentity.saml._binding import local_path
from pbidentity.saml._service import BINDING_COOKIE
from pbidentity.saml._service import SamlConfig
from pbidentity.saml._service import SamlService
from pbidentity.saml._service import SignIn
from pbidentity.saml._service import SignInFailure
from pbidentity.saml._service import SignInOutcome
from pbidentity.storage import Storage
from pbidentity.storage import open_storage
from pbidentity.storage.sql import metadata
from tests.saml.idp import TestIdp
from tests.saml.test_service import PUBLIC_URL
from tests.saml.test_service import activate
from tests.saml.test_service import idp
from tests.saml.test_service import other_idp
from tests.saml.test_service import post_form
from tests.saml.test_service import request_id
from tests.saml.test_service import service
from tests.saml.test_service import sp

__all__ = ["idp", "other_idp", "service"]

BASE = f"{PUBLIC_URL}/saml"


# What one workspace learns of another ----------------------------------------------------


def test_checking_or_saving_another_workspaces_idp_never_names_that_workspace(
    service: SamlService, idp: TestIdp
) -> None:
    """Globex's admin loads Initech's IdP: warned that another workspace uses it, never which."""
    Admin(service.storage).create_tenant("initech", "Initech")
    activate(service, idp, "initech")
    _, checked = service.check_metadata("globex", idp.metadata_xml())
    saved = service.save_metadata_xml("globex", idp.metadata_xml())
    for report in (checked, saved.report):
        assert "cert.shared" in report.codes()
        shown = json.dumps(report.to_dict()) + report.render()
        assert "another workspace" in shown
        assert "initech" not in shown.lower()


# Login CSRF: a sign-in finishes only in the browser that started it --------------------


class Browser:
    """One browser: the binding cookie it holds for the workspace, and the outcomes it saw."""

    def __init__(self, service: SamlService) -> None:
        self.service = service
        self.cookie: str | None = None

    def _headers(self) -> tuple[tuple[str, str], ...]:
        return (("Cookie", f"{BINDING_COOKIE}={self.cookie}"),) if self.cookie else ()

    def _keep(self, response: Response) -> Response:
        for name, value in response.headers:
            if name.lower() == "set-cookie" and value.startswith(f"{BINDING_COOKIE}="):
                held = value.split(";")[0].partition("=")[2]
                self.cookie = None if "Max-Age=0" in value else held
        return response

    def get(self, path: str, query: tuple[tuple[str, str], ...] = ()) -> Response:
        """A top-level GET, with the cookie (SameSite=Lax lets it through)."""
        request = Request(
            method="GET", path=path, base_url=BASE, query=query, headers=self._headers()
        )
        return self._keep(self.service.handle(request))

    def login(self, relay_state: str = "/projects/7") -> str:
        """Start a sign-in; the id of the AuthnRequest the IdP gets."""
        answer = self.get("/acme/login", (("RelayState", relay_state),))
        assert answer.status == 302
        return request_id(answer.header("location") or "")

    def post_to_acs(self, form: dict[str, str]) -> Response:
        """The IdP's cross-site POST: a SameSite=Lax cookie is not sent with it."""
        return post_form(self.service, "/acme/acs", form)

    def follow(self, answer: Response) -> Response:
        """Follow the ACS's 303 to the finish URL."""
        assert answer.status == 303, answer.body
        parts = urlsplit(answer.header("location") or "")
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL
        return self.get(parts.path.removeprefix("/saml"), tuple(parse_qsl(parts.query)))


@pytest.fixture
def outcomes(service: SamlService, idp: TestIdp) -> list[SignInOutcome]:
    """What the host app's on_result was handed (acme's SSO active)."""
    activate(service, idp)
    seen: list[SignInOutcome] = []

    def on_result(_request: Request, outcome: SignInOutcome) -> Response:
        seen.append(outcome)
        return default_result_page(outcome)

    service.on_result = on_result
    return seen


def idp_form(service: SamlService, idp: TestIdp, name_id: str, answering: str) -> dict[str, str]:
    """The IdP's answer to request ``answering``, signing ``name_id`` in."""
    return idp.sign_in_form(
        sp=sp(service), name_id=name_id, in_response_to=answering, relay_state="/projects/7"
    )


def test_a_response_started_in_the_attackers_browser_is_refused_in_the_victims(
    service: SamlService, idp: TestIdp, outcomes: list[SignInOutcome]
) -> None:
    """Login CSRF: the attacker's own response, posted from the victim's browser, is refused."""
    Members(service.storage).add("acme", "mallory@acme.test")
    attacker, victim = Browser(service), Browser(service)
    victim.login()  # the victim even has a sign-in of their own under way
    form = idp_form(service, idp, "mallory@acme.test", attacker.login())
    answer = victim.post_to_acs(form)
    finished = victim.follow(answer)
    assert finished.status == 403
    assert [type(o) for o in outcomes] == [SignInFailure]
    refused = outcomes[-1]
    assert isinstance(refused, SignInFailure)
    assert refused.finding.code == "signin.other_browser"
    # The outcome is gone: the attacker cannot take it back to their browser either.
    assert attacker.follow(answer).status == 400
    assert isinstance(outcomes[-1], SignInFailure)
    assert outcomes[-1].finding.code == "signin.finish"


def test_a_browser_without_the_cookie_cannot_finish(
    service: SamlService, idp: TestIdp, outcomes: list[SignInOutcome]
) -> None:
    """No cookie at all (blocked, or another device): refused, with what to do."""
    starter, other = Browser(service), Browser(service)
    answer = other.post_to_acs(idp_form(service, idp, "jane@acme.test", starter.login()))
    assert other.follow(answer).status == 403
    failure = outcomes[-1]
    assert isinstance(failure, SignInFailure)
    assert "allow cookies" in failure.finding.suggestion


def test_the_browser_that_started_it_finishes_once_and_its_cookie_is_spent(
    service: SamlService, idp: TestIdp, outcomes: list[SignInOutcome]
) -> None:
    """The starting browser finishes; its nonce is then dropped; the code is single-use."""
    browser = Browser(service)
    answer = browser.post_to_acs(idp_form(service, idp, "jane@acme.test", browser.login()))
    assert outcomes == []  # nothing reaches the host app at the ACS
    done = browser.follow(answer)
    assert done.status == 200
    assert done.header("referrer-policy") == "no-referrer"  # its URL holds the code
    signed_in = outcomes[-1]
    assert isinstance(signed_in, SignIn)
    assert signed_in.member.user_name == "jane@acme.test"
    assert signed_in.relay_state == "/projects/7"
    assert browser.cookie is None  # its only sign-in is done: the cookie is deleted
    assert browser.follow(answer).status == 400


def test_sign_ins_started_in_several_tabs_each_finish(
    service: SamlService, idp: TestIdp, outcomes: list[SignInOutcome]
) -> None:
    """Two tabs, two sign-ins under way: the later one does not void the earlier."""
    browser = Browser(service)
    first, second = browser.login(), browser.login()
    assert browser.cookie is not None
    assert browser.cookie.count(".") == 1
    late = browser.post_to_acs(idp_form(service, idp, "jane@acme.test", second))
    early = browser.post_to_acs(idp_form(service, idp, "jane@acme.test", first))
    assert browser.follow(early).status == 200
    assert browser.follow(late).status == 200
    assert [type(o) for o in outcomes] == [SignIn, SignIn]


def test_an_idp_initiated_sign_in_has_no_browser_to_check(
    service: SamlService, idp: TestIdp, outcomes: list[SignInOutcome]
) -> None:
    """Allowed IdP-initiated sign-ins finish in any browser: CSRF-able by nature, off by default."""
    service.update_options("acme", allow_idp_initiated=True)
    stranger = Browser(service)
    form = idp.sign_in_form(sp=sp(service), name_id="jane@acme.test")
    assert stranger.follow(stranger.post_to_acs(form)).status == 200
    assert isinstance(outcomes[-1], SignIn)
    assert outcomes[-1].idp_initiated


@pytest.mark.parametrize(
    ("public_url", "secure"), [(PUBLIC_URL, True), ("http://127.0.0.1:8000", False)]
)
def test_the_binding_cookie_is_short_lived_scoped_and_out_of_scripts_reach(
    storage: Storage, idp: TestIdp, public_url: str, secure: bool
) -> None:
    """HttpOnly, SameSite=Lax, the workspace's SAML path, ten minutes; Secure on https only."""
    Admin(storage).create_tenant("acme", "Acme")
    service = SamlService(
        storage, SamlConfig(public_url=public_url, dev_hosts=frozenset({"127.0.0.1"}))
    )
    activate(service, idp)
    cookie = service.begin_sign_in("acme").cookie or ""
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0].startswith(f"{BINDING_COOKIE}=")
    assert set(attributes[1:]) == {
        "Path=/saml/acme/",
        "Max-Age=600",
        "HttpOnly",
        "SameSite=Lax",
        *(["Secure"] if secure else []),
    }


def test_the_binding_check_is_what_refuses(
    service: SamlService, idp: TestIdp, outcomes: list[SignInOutcome]
) -> None:
    """The finish step compares the cookie's nonce with the request id's, not just its presence."""
    starter, other = Browser(service), Browser(service)
    other.login()  # a cookie of its own, for another sign-in
    answer = other.post_to_acs(idp_form(service, idp, "jane@acme.test", starter.login()))
    assert other.follow(answer).status == 403


# The request id: signed, single-use, fresh, for one workspace and configuration ----------


def refusal(service: SamlService, idp: TestIdp, answering: str) -> str:
    """The code of the refusal of a response to ``answering``."""
    outcome = service.consume(
        "acme", idp.response(sp=sp(service), name_id="jane@acme.test", in_response_to=answering)
    )
    assert isinstance(outcome, SignInFailure)
    return outcome.finding.code


def test_a_forged_or_altered_request_id_is_refused(service: SamlService, idp: TestIdp) -> None:
    """Ids this app did not sign: a changed MAC, another binding, a made-up one."""
    activate(service, idp)
    genuine = service.begin_sign_in("acme").request_id
    changed_mac = genuine[:-1] + ("0" if genuine[-1] != "0" else "1")
    other_binding = genuine[:13] + "f" * 32 + genuine[45:]
    for forged in (changed_mac, other_binding, "id" + "s" + "0" * 74, "_made-up"):
        assert refusal(service, idp, forged) == "response.in_response_to"


def test_a_request_id_of_another_workspace_is_refused(service: SamlService, idp: TestIdp) -> None:
    """Globex's request id, answered at acme's ACS: its key and configuration are not acme's."""
    activate(service, idp, "acme")
    activate(service, idp, "globex")
    globex = service.begin_sign_in("globex").request_id
    assert refusal(service, idp, globex) == "response.in_response_to"


def test_a_request_id_outlives_neither_its_lifetime_nor_its_configuration(
    storage: Storage, idp: TestIdp, other_idp: TestIdp
) -> None:
    """Eleven minutes later, or after the admin activated another IdP: refused."""
    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test")
    now = [datetime.now(UTC)]
    service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL), clock=lambda: now[0])
    activate(service, idp)
    stale = service.begin_sign_in("acme").request_id
    now[0] += timedelta(minutes=11)
    outcome = service.consume(
        "acme",
        idp.response(sp=sp(service), name_id="jane@acme.test", in_response_to=stale, now=now[0]),
    )
    assert isinstance(outcome, SignInFailure)
    assert "expired" in outcome.message
    now[0] = datetime.now(UTC)
    before = service.begin_sign_in("acme").request_id
    activate(service, other_idp)
    replaced = service.consume(
        "acme",
        other_idp.response(sp=sp(service), name_id="jane@acme.test", in_response_to=before),
    )
    assert isinstance(replaced, SignInFailure)
    assert replaced.finding.code == "response.in_response_to"


def test_instances_sharing_the_database_or_a_secret_key_accept_each_others_ids(
    database_url: str, idp: TestIdp
) -> None:
    """The key is in storage (or derived from secret_key): any instance takes any sign-in."""
    one, two = open_storage(database_url), open_storage(database_url)
    try:
        Admin(one).create_tenant("acme", "Acme")
        Members(one).add("acme", "jane@acme.test")
        for config in (
            SamlConfig(public_url=PUBLIC_URL),
            SamlConfig(public_url=PUBLIC_URL, secret_key="shared by every instance"),
        ):
            first, second = SamlService(one, config), SamlService(two, config)
            if first.connections("acme").active is None:
                activate(first, idp)
            started = first.begin_sign_in("acme").request_id
            outcome = second.consume(
                "acme",
                idp.response(sp=sp(first), name_id="jane@acme.test", in_response_to=started),
            )
            assert isinstance(outcome, SignIn), outcome
        other = SamlService(two, SamlConfig(public_url=PUBLIC_URL, secret_key="another secret"))
        foreign = other.begin_sign_in("acme").request_id
        assert refusal(first, idp, foreign) == "response.in_response_to"
    finally:
        one.close()
        two.close()


def test_anonymous_sign_in_starts_write_nothing(
    service: SamlService, idp: TestIdp, database_url: str
) -> None:
    """A script hammering GET /login adds no row anywhere (after the workspace's one key)."""
    activate(service, idp)
    service.begin_sign_in("acme")  # the workspace's key, made once
    engine = sqlalchemy.create_engine(database_url)
    try:
        before = row_counts(engine)
        browser = Browser(service)
        for _ in range(50):
            browser.cookie = None
            browser.login()
        assert row_counts(engine) == before
    finally:
        engine.dispose()


def row_counts(engine: sqlalchemy.Engine) -> dict[str, int]:
    """The number of rows of every pbidentity table."""
    with engine.connect() as connection:
        return {
            table.name: connection.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(table)
            ).scalar_one()
            for table in metadata.sorted_tables
        }


# Unsolicited responses that claim to answer a request --------------------------------------


def test_an_unsolicited_response_whose_assertion_answers_a_request_is_refused(
    service: SamlService, idp: TestIdp
) -> None:
    """InResponseTo stripped from the Response but left in SubjectConfirmationData: refused."""
    activate(service, idp)
    service.update_options("acme", allow_idp_initiated=True)
    answering = service.begin_sign_in("acme").request_id
    for claimed in (answering, "_someone-elses-request"):
        stripped = idp.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=None,
            subject_in_response_to=claimed,
        )
        outcome = service.consume("acme", stripped)
        assert isinstance(outcome, SignInFailure)
        assert outcome.finding.code == "response.in_response_to"
        assert outcome.finding.where.endswith("SubjectConfirmationData/@InResponseTo")
    # Without any InResponseTo it is a genuine IdP-initiated sign-in.
    plain = service.consume("acme", idp.response(sp=sp(service), name_id="jane@acme.test"))
    assert isinstance(plain, SignIn)


# RelayState of any bytes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/projects/7?tab=a&b=c#top", "/projects/7?tab=a&b=c#top"),
        ("/€", "/%E2%82%AC"),
        ("/a b\"<script>'", "/a%20b%22%3Cscript%3E'"),
        ("/\u2028x", "/%E2%80%A8x"),
        ("/\udcff", None),
        ("/a\r\nSet-Cookie: x=1", None),
        ("/\t/evil.example", None),
        ("//evil.example", None),
        ("/\\evil.example", None),
        ("javascript:alert(1)", None),
        ("https://evil.example/", None),
        ("/" + "a" * 2001, None),
        ("", None),
    ],
)
def test_a_relay_state_is_a_local_ascii_path_or_nothing(given: str, kept: str | None) -> None:
    """Whatever it holds, what reaches the host app fits a Location header and stays on the site."""
    assert local_path(given) == kept


# Malformed ACS forms --------------------------------------------------------------------------


def post_body(service: SamlService, body: bytes) -> Response:
    """POST raw bytes to acme's ACS as a form."""
    return service.handle(
        Request(
            method="POST",
            path="/acme/acs",
            base_url=BASE,
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            body=body,
        )
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"&".join(b"f%d=x" % i for i in range(11)) + b"&SAMLResponse=PHg%2B", "request.malformed"),
        (b"SAMLResponse=PHg%2B&SAMLResponse=PHk%2B", "request.malformed"),
        (b"SAMLResponse=PHg%2B&RelayState=%2Fa&RelayState=%2Fb", "request.malformed"),
        (b"SAMLResponse=PHg%2B&RelayState=%FF%FE", "request.malformed"),
        (b"SAMLResponse=PHg%2B&RelayState=/\xe2\x82\xac", "request.malformed"),
        (b"SAMLResponse=", "response.missing"),
    ],
    ids=["eleven fields", "two responses", "two relay states", "not utf-8", "raw bytes", "empty"],
)
def test_a_malformed_acs_form_is_a_400_page(
    service: SamlService, idp: TestIdp, outcomes: list[SignInOutcome], body: bytes, code: str
) -> None:
    """Forms no IdP sends are refused with 400 and the reason, never a 500."""
    answer = post_body(service, body)
    assert answer.status == 400
    assert answer.header("content-type") == "text/html; charset=utf-8"
    failure = outcomes[-1]
    assert isinstance(failure, SignInFailure)
    assert failure.finding.code == code


# Development hosts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "public_url", "trusted"),
    [
        ("127.0.0.1", None, True),
        ("127.0.0.1", "http://127.0.0.1:8000", True),
        ("localhost", "http://localhost:8000/", True),
        ("::1", "http://[::1]:8000", True),
        ("127.0.0.1", "https://tunnel.example", False),
        ("127.0.0.1", "http://192.168.1.5:8000", False),
        ("0.0.0.0", "http://127.0.0.1:8000", False),  # noqa: S104 - a bind address under test
        ("192.168.1.5", None, False),
        ("app.example", "https://app.example", False),
    ],
)
def test_development_hosts_only_when_both_bind_and_public_url_are_loopback(
    host: str, public_url: str | None, trusted: bool
) -> None:
    """Published through a tunnel or bound to a network, the app trusts no loopback URL."""
    hosts = local_dev_hosts(host, public_url)
    assert bool(hosts) is trusted
    if trusted:
        assert {"localhost", "127.0.0.1", host} == hosts
