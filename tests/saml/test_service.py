"""The SAML service end to end on a real database: Save & authorize, sign-ins, the ACS over HTTP."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest

from pbidentity.admin import Admin
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.members import Members
from pbidentity.saml import ServiceProvider
from pbidentity.saml._service import Authorized
from pbidentity.saml._service import SamlConfig
from pbidentity.saml._service import SamlService
from pbidentity.saml._service import SignIn
from pbidentity.saml._service import SignInFailure
from pbidentity.saml._service import SignInOutcome
from pbidentity.storage import Storage
from pbidentity.storage import open_storage
from tests.saml.idp import CertificateSpec
from tests.saml.idp import TestIdp

PUBLIC_URL = "https://app.example"


@pytest.fixture(scope="module")
def idp() -> TestIdp:
    """The IdP the workspace trusts."""
    return TestIdp(entity_id="http://www.okta.com/exk1", sso_url="https://acme.okta.test/sso/saml")


@pytest.fixture(scope="module")
def other_idp() -> TestIdp:
    """Another IdP (or the same one after a certificate change)."""
    return TestIdp(entity_id="http://www.okta.com/exk2", sso_url="https://acme.okta.test/sso/two")


@pytest.fixture
def service(storage: Storage) -> SamlService:
    """The SAML service of a workspace ``acme`` with two members, one deactivated."""
    admin = Admin(storage)
    admin.create_tenant("acme", "Acme")
    admin.create_tenant("globex", "Globex")
    members = Members(storage)
    members.add("acme", "jane@acme.test", given_name="Jane", email="jane@acme.test")
    members.add("acme", "gone@acme.test", active=False)
    return SamlService(storage, SamlConfig(public_url=PUBLIC_URL))


def sp(service: SamlService, slug: str = "acme") -> ServiceProvider:
    """The workspace's SP values."""
    return service.service_provider(slug)


def request_id(redirect_url: str) -> str:
    """The id of the AuthnRequest a redirect carries."""
    query = parse_qs(urlsplit(redirect_url).query)
    return TestIdp.read_authn_request(query["SAMLRequest"][0]).id


def activate(service: SamlService, idp: TestIdp, slug: str = "acme") -> Authorized:
    """Save the IdP's metadata and pass the test sign-in: the connection is then active."""
    saved = service.save_metadata_xml(slug, idp.metadata_xml())
    assert saved.saved, saved.report.render()
    redirect = service.begin_authorize(slug)
    outcome = service.consume(
        slug,
        idp.response(
            sp=sp(service, slug), name_id="jane@acme.test", in_response_to=request_id(redirect.url)
        ),
    )
    assert isinstance(outcome, Authorized), outcome
    return outcome


def sign_in(
    service: SamlService, idp: TestIdp, name_id: str, *, slug: str = "acme"
) -> SignInOutcome:
    """An SP-initiated sign-in of ``name_id`` (the IdP sends the RelayState back, as it must)."""
    redirect = service.begin_sign_in(slug, relay_state="/projects/7")
    return service.consume(
        slug,
        idp.response(
            sp=sp(service, slug), name_id=name_id, in_response_to=request_id(redirect.url)
        ),
        "/projects/7",
    )


# SP values -------------------------------------------------------------------------


def test_sp_values_are_per_tenant_and_absolute(service: SamlService) -> None:
    acme = sp(service)
    assert acme.acs_url == "https://app.example/saml/acme/acs"
    assert acme.entity_id == "https://app.example/saml/acme/metadata"
    assert acme.login_url == "https://app.example/saml/acme/login"
    assert sp(service, "globex").acs_url != acme.acs_url


def test_sp_metadata_endpoint(service: SamlService) -> None:
    response = service.handle(Request(method="GET", path="/acme/metadata", base_url=PUBLIC_URL))
    assert response.status == 200
    assert response.header("content-type") == "application/samlmetadata+xml"
    assert b'entityID="https://app.example/saml/acme/metadata"' in response.body
    assert b'Location="https://app.example/saml/acme/acs"' in response.body
    unknown = service.handle(Request(method="GET", path="/nobody/metadata", base_url=PUBLIC_URL))
    assert unknown.status == 404


@pytest.mark.parametrize("endpoint", ["metadata", "login", "acs"])
def test_a_workspace_named_with_a_nul_character_is_not_found(
    service: SamlService, endpoint: str
) -> None:
    """A NUL in the workspace part of the path is a 404 on every backend, not a database error."""
    method = "POST" if endpoint == "acs" else "GET"
    response = service.handle(
        Request(method=method, path=f"/ac\x00me/{endpoint}", base_url=PUBLIC_URL)
    )
    assert response.status == 404


def test_config_needs_an_absolute_public_url() -> None:
    from pbidentity.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="absolute origin"):
        SamlConfig(public_url="app.example")


# Save & authorize ------------------------------------------------------------------


def test_saving_creates_a_pending_connection_and_keeps_the_active_one(
    service: SamlService, idp: TestIdp, other_idp: TestIdp
) -> None:
    activate(service, idp)
    saved = service.save_metadata_xml("acme", other_idp.metadata_xml())
    assert saved.saved
    connections = service.connections("acme")
    assert connections.active is not None
    assert connections.active.idp.entity_id == idp.entity_id
    assert connections.pending is not None
    assert connections.pending.idp.entity_id == other_idp.entity_id
    # The admin is told that this replaces the IdP and certificate in use.
    assert {"entity.changed", "cert.changed"} <= saved.report.codes()
    # The active configuration keeps serving sign-ins meanwhile.
    assert isinstance(sign_in(service, idp, "jane@acme.test"), SignIn)


def test_errors_block_saving(service: SamlService, idp: TestIdp) -> None:
    saved = service.save_metadata_xml("acme", b"<not-metadata/>")
    assert not saved.saved
    assert saved.report.errors
    saved = service.save_metadata_xml(
        "acme", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x/>"
    )
    assert not saved.saved
    assert service.connections("acme").pending is None


def test_save_and_authorize_swaps_atomically_and_keeps_the_previous(
    service: SamlService, idp: TestIdp, other_idp: TestIdp
) -> None:
    first = activate(service, idp)
    assert first.previous is None
    second = activate(service, other_idp)
    assert second.previous is not None
    assert second.previous.id == first.connection.id
    connections = service.connections("acme")
    assert connections.active is not None
    assert connections.active.id == second.connection.id
    assert connections.previous is not None
    assert connections.previous.id == first.connection.id
    assert connections.pending is None
    # The old IdP no longer signs anyone in; the new one does.
    refused = sign_in(service, idp, "jane@acme.test")
    assert isinstance(refused, SignInFailure)
    assert isinstance(sign_in(service, other_idp, "jane@acme.test"), SignIn)


def test_a_failed_test_sign_in_keeps_the_old_configuration_and_says_why(
    service: SamlService, idp: TestIdp, other_idp: TestIdp
) -> None:
    activate(service, idp)
    service.save_metadata_xml("acme", other_idp.metadata_xml())
    redirect = service.begin_authorize("acme")
    outcome = service.consume(
        "acme",
        other_idp.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=request_id(redirect.url),
            audience="https://app.example/saml/globex/metadata",
        ),
    )
    assert isinstance(outcome, SignInFailure)
    assert outcome.purpose == "authorize"
    assert outcome.finding.code == "response.audience"
    assert "globex" in outcome.message  # what was received
    connections = service.connections("acme")
    assert connections.active is not None
    assert connections.active.idp.entity_id == idp.entity_id
    assert connections.pending is not None
    assert connections.pending.last_attempt is not None
    assert connections.pending.last_attempt["findings"][0]["code"] == "response.audience"
    assert isinstance(sign_in(service, idp, "jane@acme.test"), SignIn)


def test_the_test_sign_in_must_be_signed_by_the_pending_certificate(
    service: SamlService, idp: TestIdp, other_idp: TestIdp
) -> None:
    activate(service, idp)
    service.save_metadata_xml("acme", other_idp.metadata_xml())
    redirect = service.begin_authorize("acme")
    # The old IdP answers the pending configuration's test: not what was saved.
    outcome = service.consume(
        "acme",
        idp.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=request_id(redirect.url),
            issuer=other_idp.entity_id,
            assertion_issuer=other_idp.entity_id,
        ),
    )
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code == "response.signature"


def test_a_rollover_with_an_expired_certificate_saves_and_signs_in_with_the_valid_one(
    service: SamlService,
) -> None:
    """The expired certificate only warns; it stays in the stored connection but verifies nothing.

    Kept as the IdP published it, so that a response signed with it is refused
    as "signed with the expired certificate #1" rather than as unknown.
    """
    now = datetime.now(UTC)
    old = CertificateSpec(
        cn="old", not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)
    )
    rolled = TestIdp(
        entity_id="http://www.okta.com/exk3",
        sso_url="https://acme.okta.test/sso/three",
        certificates=[old, CertificateSpec(cn="new")],
        signing=1,
    )
    saved = service.save_metadata_xml("acme", rolled.metadata_xml())
    assert saved.saved, saved.report.render()
    assert "cert.expired_ignored" in {f.code for f in saved.report.warnings}
    assert saved.connection is not None
    assert saved.connection.idp.certificates == rolled.certificates
    redirect = service.begin_authorize("acme")
    authorized = service.consume(
        "acme",
        rolled.response(
            sp=sp(service), name_id="jane@acme.test", in_response_to=request_id(redirect.url)
        ),
    )
    assert isinstance(authorized, Authorized), authorized
    assert isinstance(sign_in(service, rolled, "jane@acme.test"), SignIn)
    redirect = service.begin_sign_in("acme")
    by_the_expired_one = service.consume(
        "acme",
        rolled.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=request_id(redirect.url),
            signing=0,
        ),
    )
    assert isinstance(by_the_expired_one, SignInFailure)
    assert by_the_expired_one.finding.code == "response.certificate_expired"


def test_the_test_sign_in_needs_its_own_request(service: SamlService, idp: TestIdp) -> None:
    service.save_metadata_xml("acme", idp.metadata_xml())
    unsolicited = service.consume("acme", idp.response(sp=sp(service), name_id="jane@acme.test"))
    assert isinstance(unsolicited, SignInFailure)
    # An IdP-initiated response cannot activate anything: there is no active
    # connection to accept it, and the pending one needs its request.
    assert service.connections("acme").active is None
    sign_in_request = service.begin_authorize("acme")
    wrong = service.consume(
        "acme",
        idp.response(sp=sp(service), name_id="jane@acme.test", in_response_to="id-made-up"),
    )
    assert isinstance(wrong, SignInFailure)
    assert wrong.finding.code == "response.in_response_to"
    assert sign_in_request.request_id != "id-made-up"


def test_a_request_id_is_answered_once(service: SamlService, idp: TestIdp) -> None:
    activate(service, idp)
    redirect = service.begin_sign_in("acme")
    rid = request_id(redirect.url)
    first = service.consume(
        "acme", idp.response(sp=sp(service), name_id="jane@acme.test", in_response_to=rid)
    )
    assert isinstance(first, SignIn)
    # A second, freshly signed response to the same request id.
    second = service.consume(
        "acme", idp.response(sp=sp(service), name_id="jane@acme.test", in_response_to=rid)
    )
    assert isinstance(second, SignInFailure)
    assert second.finding.code == "response.in_response_to"


def test_a_response_is_used_once(service: SamlService, idp: TestIdp) -> None:
    activate(service, idp)
    service.update_options("acme", allow_idp_initiated=True)
    response = idp.response(sp=sp(service), name_id="jane@acme.test")
    assert isinstance(service.consume("acme", response), SignIn)
    replayed = service.consume("acme", response)
    assert isinstance(replayed, SignInFailure)
    assert replayed.finding.code == "response.replay"


def test_the_replay_cache_is_shared_by_app_instances(database_url: str, idp: TestIdp) -> None:
    one = open_storage(database_url)
    two = open_storage(database_url)
    try:
        Admin(one).create_tenant("acme", "Acme")
        Members(one).add("acme", "jane@acme.test")
        first = SamlService(one, SamlConfig(public_url=PUBLIC_URL))
        second = SamlService(two, SamlConfig(public_url=PUBLIC_URL))
        activate(first, idp)
        first.update_options("acme", allow_idp_initiated=True)
        response = idp.response(sp=sp(first), name_id="jane@acme.test")
        assert isinstance(second.consume("acme", response), SignIn)
        replayed = first.consume("acme", response)
        assert isinstance(replayed, SignInFailure)
        assert replayed.finding.code == "response.replay"
    finally:
        one.close()
        two.close()


def test_rollback_restores_the_previous_configuration(
    service: SamlService, idp: TestIdp, other_idp: TestIdp
) -> None:
    from pbidentity.exceptions import InputError

    with pytest.raises(InputError, match="no previous"):
        service.rollback("acme")
    activate(service, idp)
    activate(service, other_idp)
    restored = service.rollback("acme")
    assert restored.idp.entity_id == idp.entity_id
    connections = service.connections("acme")
    assert connections.active is not None
    assert connections.active.idp.entity_id == idp.entity_id
    assert connections.previous is not None
    assert connections.previous.idp.entity_id == other_idp.entity_id
    assert isinstance(sign_in(service, idp, "jane@acme.test"), SignIn)


def test_discard_pending(service: SamlService, idp: TestIdp) -> None:
    service.save_metadata_xml("acme", idp.metadata_xml())
    redirect = service.begin_authorize("acme")
    assert service.discard_pending("acme") is True
    assert service.discard_pending("acme") is False
    outcome = service.consume(
        "acme",
        idp.response(
            sp=sp(service), name_id="jane@acme.test", in_response_to=request_id(redirect.url)
        ),
    )
    assert isinstance(outcome, SignInFailure)


def test_events_record_the_configuration_history(
    service: SamlService, storage: Storage, idp: TestIdp
) -> None:
    activate(service, idp)
    members = Members(storage)
    kinds = [e.type for e in members.audit_trail("acme")]
    assert "saml.saved" in kinds
    assert "saml.activated" in kinds


# Sign-in ---------------------------------------------------------------------------


def test_sp_initiated_sign_in_resolves_the_provisioned_member(
    service: SamlService, idp: TestIdp
) -> None:
    activate(service, idp)
    outcome = sign_in(service, idp, "Jane@ACME.test")
    assert isinstance(outcome, SignIn)
    assert outcome.member.user_name == "jane@acme.test"
    assert outcome.relay_state == "/projects/7"
    assert outcome.created is False
    assert outcome.idp_initiated is False
    assert outcome.request_id is not None
    assert outcome.request_id.startswith("id")
    assert any("matched member" in step for step in outcome.trail)
    assert outcome.attributes["firstName"]


def test_a_deactivated_member_is_refused(service: SamlService, idp: TestIdp) -> None:
    activate(service, idp)
    outcome = sign_in(service, idp, "gone@acme.test")
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code == "member.deactivated"


def test_unknown_people_are_refused_or_created_per_tenant(
    service: SamlService, idp: TestIdp, storage: Storage
) -> None:
    activate(service, idp)
    refused = sign_in(service, idp, "new@acme.test")
    assert isinstance(refused, SignInFailure)
    assert refused.finding.code == "member.unknown"
    service.update_options("acme", unknown_members="create")
    created = sign_in(service, idp, "new@acme.test")
    assert isinstance(created, SignIn)
    assert created.created is True
    assert created.member.user_name == "new@acme.test"
    again = sign_in(service, idp, "new@acme.test")
    assert isinstance(again, SignIn)
    assert again.created is False
    assert again.member.id == created.member.id


def test_idp_initiated_sign_in_is_a_per_tenant_switch(service: SamlService, idp: TestIdp) -> None:
    activate(service, idp)
    refused = service.consume("acme", idp.response(sp=sp(service), name_id="jane@acme.test"))
    assert isinstance(refused, SignInFailure)
    assert refused.finding.code == "response.unsolicited"
    service.update_options("acme", allow_idp_initiated=True)
    allowed = service.consume("acme", idp.response(sp=sp(service), name_id="jane@acme.test"))
    assert isinstance(allowed, SignIn)
    assert allowed.idp_initiated is True
    assert allowed.request_id is None


def test_tenants_are_isolated(service: SamlService, idp: TestIdp) -> None:
    activate(service, idp)
    # acme's IdP response posted to globex's ACS: globex has no SSO.
    redirect = service.begin_sign_in("acme")
    outcome = service.consume(
        "globex",
        idp.response(
            sp=sp(service), name_id="jane@acme.test", in_response_to=request_id(redirect.url)
        ),
    )
    assert isinstance(outcome, SignInFailure)
    # globex trusting the same IdP still refuses a response made for acme.
    activate(service, idp, "globex")
    redirect = service.begin_sign_in("globex")
    outcome = service.consume(
        "globex",
        idp.response(
            sp=sp(service), name_id="jane@acme.test", in_response_to=request_id(redirect.url)
        ),
    )
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code in {"response.audience", "response.destination"}


def test_clock_offset_of_the_idp_is_reported_at_the_test_sign_in(
    service: SamlService, idp: TestIdp
) -> None:
    service.save_metadata_xml("acme", idp.metadata_xml())
    redirect = service.begin_authorize("acme")
    ahead = datetime.now(UTC) + timedelta(seconds=90)
    outcome = service.consume(
        "acme",
        idp.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=request_id(redirect.url),
            now=ahead,
        ),
    )
    assert isinstance(outcome, Authorized), outcome
    assert "test.clock" in outcome.report.codes()


# HTTP -------------------------------------------------------------------------------


def post_form(service: SamlService, path: str, form: dict[str, str]) -> Response:
    """POST a form to the service as a browser does."""
    return service.handle(
        Request(
            method="POST",
            path=path,
            base_url=f"{PUBLIC_URL}/saml",
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            body=urlencode(form).encode(),
        )
    )


def cookie_pair(set_cookie: str | None) -> tuple[str, str]:
    """The ``Cookie`` request header a browser sends back for a ``Set-Cookie`` value."""
    assert set_cookie is not None
    return ("Cookie", set_cookie.split(";")[0])


def finish(service: SamlService, acs_answer: Response, set_cookie: str | None) -> Response:
    """Follow the ACS's redirect to the finish URL, with the binding cookie when given."""
    location = acs_answer.header("location") or ""
    assert location.startswith(f"{PUBLIC_URL}/saml/acme/finish?code=")
    parts = urlsplit(location)
    return service.handle(
        Request(
            method="GET",
            path=parts.path.removeprefix("/saml"),
            base_url=f"{PUBLIC_URL}/saml",
            query=tuple(parse_qsl(parts.query)),
            headers=(cookie_pair(set_cookie),) if set_cookie else (),
        )
    )


def test_login_redirects_to_the_idp(service: SamlService, idp: TestIdp) -> None:
    activate(service, idp)
    service.update_options("acme")
    # The metadata lists the Redirect binding first, so pbidentity redirects.
    response = service.handle(
        Request(
            method="GET",
            path="/acme/login",
            base_url=f"{PUBLIC_URL}/saml",
            query=(("RelayState", "https://evil.example/"),),
        )
    )
    assert response.status == 302
    location = response.header("location") or ""
    assert location.startswith(idp.sso_url + "?SAMLRequest=")
    assert "RelayState" not in location  # not a local path: dropped, never an open redirect
    info = TestIdp.read_authn_request(parse_qs(urlsplit(location).query)["SAMLRequest"][0])
    assert info.acs_url == sp(service).acs_url
    assert info.issuer == sp(service).entity_id
    assert info.nameid_format == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def test_login_without_sso_is_a_404_page(service: SamlService) -> None:
    response = service.handle(Request(method="GET", path="/acme/login", base_url=PUBLIC_URL))
    assert response.status == 404
    assert b"no active SAML configuration" in response.body


def test_acs_over_http_hands_the_outcome_to_the_host_app(storage: Storage, idp: TestIdp) -> None:
    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test")
    seen: list[SignInOutcome] = []

    def on_result(request: Request, outcome: SignInOutcome) -> Response:
        seen.append(outcome)
        return Response(status=303, headers=(("Location", "/home"),))

    service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL), on_result=on_result)
    activate(service, idp)
    redirect = service.begin_sign_in("acme", relay_state="/projects/7")
    form = idp.sign_in_form(
        sp=sp(service),
        name_id="jane@acme.test",
        in_response_to=request_id(redirect.url),
        relay_state="/projects/7",
    )
    answer = post_form(service, "/acme/acs", form)
    # The ACS keeps the outcome and sends the browser on to finish.
    assert answer.status == 303
    assert seen == []
    response = finish(service, answer, redirect.cookie)
    assert response.status == 303
    assert response.header("location") == "/home"
    assert isinstance(seen[-1], SignIn)
    assert seen[-1].relay_state == "/projects/7"


def test_acs_refuses_bad_posts_with_a_page_never_a_traceback(
    service: SamlService, idp: TestIdp
) -> None:
    activate(service, idp)
    cases = {
        "missing": ({}, 400),
        "not base64": ({"SAMLResponse": "%%%"}, 400),
        "not xml": ({"SAMLResponse": "bm90IHhtbA=="}, 400),
    }
    for name, (form, status) in cases.items():
        response = post_form(service, "/acme/acs", form)
        assert response.status == status, name
        assert response.header("content-type") == "text/html; charset=utf-8"
        assert b"Traceback" not in response.body
    big = service.handle(
        Request(
            method="POST",
            path="/acme/acs",
            base_url=PUBLIC_URL,
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            body=b"",
            body_truncated=True,
        )
    )
    assert big.status == 413
    wrong_method = service.handle(Request(method="GET", path="/acme/acs", base_url=PUBLIC_URL))
    assert wrong_method.status == 405
    assert wrong_method.header("allow") == "POST"


def test_failure_pages_escape_what_the_idp_sent(service: SamlService, idp: TestIdp) -> None:
    activate(service, idp)
    redirect = service.begin_sign_in("acme")
    form = idp.sign_in_form(
        sp=sp(service),
        name_id="jane@acme.test",
        in_response_to=request_id(redirect.url),
        audience="<script>alert(1)</script>",
    )
    response = post_form(service, "/acme/acs", form)
    assert response.status == 403
    assert b"<script>" not in response.body


def test_consume_never_raises_on_garbage(service: SamlService, idp: TestIdp) -> None:
    activate(service, idp)
    for garbage in ("", "====", "PD94", "A" * 10, "<Response/>"):
        outcome = service.consume("acme", garbage)
        assert isinstance(outcome, SignInFailure)


def test_expired_requests_and_assertion_ids_are_swept(storage: Storage, idp: TestIdp) -> None:
    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test")
    now = [datetime.now(UTC)]
    service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL), clock=lambda: now[0])
    activate(service, idp)
    service.save_metadata_xml("acme", idp.metadata_xml())
    stale = service.begin_authorize("acme")
    with storage.transaction() as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        tx.remember_assertion(tenant.id, "old-assertion", now[0] + timedelta(minutes=5))
    now[0] += timedelta(hours=1)
    service.begin_authorize("acme")  # the sweep runs here
    with storage.transaction() as tx:
        assert tx.take_saml_request(tenant.id, stale.request_id) is None
        # Forgotten, so recording it again succeeds.
        assert tx.remember_assertion(tenant.id, "old-assertion", now[0] + timedelta(minutes=5))


def test_a_sign_in_that_took_too_long_is_refused(storage: Storage, idp: TestIdp) -> None:
    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test")
    now = [datetime.now(UTC)]
    service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL), clock=lambda: now[0])
    activate(service, idp)
    redirect = service.begin_sign_in("acme")
    now[0] += timedelta(minutes=11)  # the request lives 10 minutes
    outcome = service.consume(
        "acme",
        idp.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=request_id(redirect.url),
            now=now[0],
        ),
    )
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code == "response.in_response_to"
    assert "expired" in outcome.message


def test_members_created_just_in_time_get_the_apps_least_privileged_role(
    storage: Storage, idp: TestIdp
) -> None:
    from pbidentity.roles import RoleSet

    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test")
    roles = RoleSet(("owner", "editor", "guest"))
    service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL), roles=roles)
    activate(service, idp)
    service.update_options("acme", unknown_members="create")
    outcome = sign_in(service, idp, "new@acme.test")
    assert isinstance(outcome, SignIn)
    assert outcome.member.role == "guest"


def test_each_sign_in_is_recorded_once_and_refusals_not_at_all(
    service: SamlService, storage: Storage, idp: TestIdp
) -> None:
    activate(service, idp)
    assert isinstance(sign_in(service, idp, "jane@acme.test"), SignIn)
    assert isinstance(sign_in(service, idp, "gone@acme.test"), SignInFailure)
    recorded = [e for e in Members(storage).audit_trail("acme") if e.type == "member.signed_in"]
    assert len(recorded) == 1
    assert recorded[0].data == {"idp_initiated": False, "created": False}
    assert recorded[0].actor == "saml"


# Exact identities ------------------------------------------------------------------


def sign_in_with(service: SamlService, idp: TestIdp, name_id: str, **options: Any) -> SignInOutcome:
    """An SP-initiated sign-in of ``name_id`` with response options (attributes, NameID format)."""
    redirect = service.begin_sign_in("acme")
    return service.consume(
        "acme",
        idp.response(
            sp=sp(service), name_id=name_id, in_response_to=request_id(redirect.url), **options
        ),
    )


@pytest.mark.parametrize(
    ("stored", "signed"),
    [
        ("jane@bücher.test", "Jane@BÜCHER.test"),
        ("jane@bücher.test", "jane@xn--bcher-kva.test"),
        ("jane@xn--bcher-kva.test", "JANE@Bücher.test"),
        ("ceo@straße.test", "CEO@STRAẞE.test"),
        ("rene\u0301@acme.test", "René@acme.test"),
    ],
)
def test_one_address_signs_in_whatever_its_spelling(
    service: SamlService, storage: Storage, idp: TestIdp, stored: str, signed: str
) -> None:
    """Case, NFC and the U-label or A-label spelling of the domain find the member."""
    member = Members(storage).add("acme", stored, email=stored)
    activate(service, idp)
    outcome = sign_in(service, idp, signed)
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.id == member.id


def test_a_member_is_found_by_an_email_spelt_another_way(
    service: SamlService, storage: Storage, idp: TestIdp
) -> None:
    """No userName match: the one member with that email, spelt with the A-label."""
    member = Members(storage).add("acme", "jd", email="jane.doe@xn--bcher-kva.test")
    activate(service, idp)
    outcome = sign_in(service, idp, "jane.doe@bücher.test")
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.id == member.id


@pytest.mark.parametrize(
    ("name_id", "name_id_format", "says"),
    [
        ("jane@acme\uff0etest", None, "U+FF0E FULLWIDTH FULL STOP"),
        ("jane@\uff41cme.test", None, "not a valid internationalised domain name"),
        ("00u1abcd", "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress", "has no '@'"),
    ],
)
def test_an_identity_that_is_no_exact_address_is_refused_saying_why(
    service: SamlService, idp: TestIdp, name_id: str, name_id_format: str | None, says: str
) -> None:
    """A NameID that looks like, or is declared, an address but has no exact key: refused."""
    activate(service, idp)
    options: dict[str, Any] = {"attributes": {"email": ["jane@acme.test"]}}
    if name_id_format is not None:
        options["name_id_format"] = name_id_format
    outcome = sign_in_with(service, idp, name_id, **options)
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code == "member.invalid_email"
    assert says in outcome.message
    assert outcome.finding.suggestion


def test_an_opaque_name_id_signs_in_by_the_email_attribute(
    service: SamlService, idp: TestIdp
) -> None:
    """A persistent NameID is no address: the mapped email attribute is the identity."""
    activate(service, idp)
    outcome = sign_in_with(
        service,
        idp,
        "00u1abcd",
        name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        attributes={"email": ["Jane@ACME.test"]},
    )
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.user_name == "jane@acme.test"


def test_the_just_in_time_race_finds_the_member_or_refuses_the_look_alike(
    service: SamlService, storage: Storage, idp: TestIdp
) -> None:
    """A member created meanwhile: the same person is found, a look-alike refused, never a 500."""
    from pbidentity.saml._attributes import Profile
    from pbidentity.saml._outcomes import Refused

    activate(service, idp)
    with storage.transaction(write=False) as tx:
        acme = tx.find_tenant("acme")
    assert acme is not None
    members = Members(storage)
    same = members.add("acme", "new@acme.test")
    # The create collides with the member made since the lookup: it is that member.
    assert service._sign_ins.create_member(acme, "NEW@acme.test", Profile()).id == same.id
    members.add("acme", "ceo@strasse.test")
    with pytest.raises(Refused) as refused:
        service._sign_ins.create_member(acme, "ceo@straße.test", Profile())
    assert refused.value.finding.code == "member.lookalike"


def test_the_test_sign_in_warns_when_the_email_attribute_is_not_the_name_id(
    service: SamlService, idp: TestIdp
) -> None:
    """The admin learns that members sign in as the NameID, not as the email attribute."""
    assert service.save_metadata_xml("acme", idp.metadata_xml()).saved
    redirect = service.begin_authorize("acme")
    outcome = service.consume(
        "acme",
        idp.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=request_id(redirect.url),
            attributes={"email": ["jane.doe@mail.acme.test"], "firstName": ["Jane"]},
        ),
    )
    assert isinstance(outcome, Authorized), outcome
    [differs] = [f for f in outcome.report.findings if f.code == "attributes.email_differs"]
    assert differs.severity == "warning"
    assert "'jane@acme.test'" in differs.message
    assert "'jane.doe@mail.acme.test'" in differs.message
    # The same address spelt otherwise is no difference.
    assert service.save_metadata_xml("acme", idp.metadata_xml()).saved
    redirect = service.begin_authorize("acme")
    again = service.consume(
        "acme",
        idp.response(
            sp=sp(service),
            name_id="jane@acme.test",
            in_response_to=request_id(redirect.url),
            attributes={"email": ["Jane@ACME.test"], "firstName": ["Jane"]},
        ),
    )
    assert isinstance(again, Authorized), again
    assert "attributes.email_differs" not in again.report.codes()


def test_the_trail_says_the_email_attribute_was_not_matched(
    service: SamlService, idp: TestIdp
) -> None:
    """A sign-in's trail records the other address the email attribute named."""
    activate(service, idp)
    outcome = sign_in_with(service, idp, "jane@acme.test", attributes={"email": ["gone@acme.test"]})
    assert isinstance(outcome, SignIn), outcome
    assert outcome.member.user_name == "jane@acme.test"
    assert (
        "the email attribute gone@acme.test is not the NameID jane@acme.test; not matched"
        in outcome.trail
    )


def test_an_admin_whose_identity_only_looks_like_a_member_cannot_activate(
    service: SamlService, storage: Storage, idp: TestIdp
) -> None:
    """The test sign-in resolves the admin as a sign-in would: a look-alike keeps the old setup."""
    Members(storage).add("acme", "ceo@strasse.test")
    assert service.save_metadata_xml("acme", idp.metadata_xml()).saved
    redirect = service.begin_authorize("acme")
    outcome = service.consume(
        "acme",
        idp.response(
            sp=sp(service), name_id="ceo@straße.test", in_response_to=request_id(redirect.url)
        ),
    )
    assert isinstance(outcome, SignInFailure)
    assert outcome.purpose == "authorize"
    assert outcome.finding.code == "member.lookalike"
    connections = service.connections("acme")
    assert connections.active is None
    assert connections.pending is not None
