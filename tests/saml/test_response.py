"""verify_response on well-formed responses: what it returns, and each exact check it makes."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from lxml import etree
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from pbidentity.exceptions import PbIdentityError
from pbidentity.saml import _response
from pbidentity.saml._response import Assertion
from pbidentity.saml._response import SignInError
from pbidentity.saml._response import _public_key
from pbidentity.saml._response import verify_response
from pbidentity.saml._types import EMAIL_NAMEID
from pbidentity.saml._types import ServiceProvider
from tests.saml.certs import DSA_CERTIFICATE
from tests.saml.idp import NS
from tests.saml.idp import CertificateSpec
from tests.saml.idp import TestIdp
from tests.saml.idp import encode

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REQUEST_ID = "_request-4f1c"
SKEW = timedelta(seconds=120)

SP = ServiceProvider(
    entity_id="https://app.example/saml/acme/metadata",
    acs_url="https://app.example/saml/acme/acs",
    metadata_url="https://app.example/saml/acme/metadata",
    login_url="https://app.example/saml/acme/login",
)


@pytest.fixture(scope="module")
def idp() -> TestIdp:
    return TestIdp()


def verify(
    saml_response: str | bytes,
    idp: TestIdp,
    *,
    request_id: str | None = REQUEST_ID,
    now: datetime = NOW,
    **options: Any,
) -> Assertion:
    return verify_response(
        saml_response,
        sp=SP,
        idp=idp.identity_provider(),
        request_id=request_id,
        now=now,
        **options,
    )


def respond(idp: TestIdp, **options: Any) -> str:
    options.setdefault("in_response_to", REQUEST_ID)
    options.setdefault("now", NOW)
    return idp.response(sp=SP, name_id="ada@example.com", **options)


def refusal(call: Callable[[], object]) -> SignInError:
    with pytest.raises(SignInError) as caught:
        call()
    return caught.value


# --- what a verified response gives -------------------------------------------------------


def test_a_signed_assertion_is_accepted_with_everything_it_says(idp: TestIdp) -> None:
    value = respond(
        idp,
        response_id="_response-1",
        assertion_id="_assertion-1",
        attributes={"email": ["ada@example.com"], "groups": ["admins", "staff"]},
        session_index="_session-7",
        not_on_or_after=NOW + timedelta(minutes=10),
        subject_not_on_or_after=NOW + timedelta(minutes=5),
    )

    assertion = verify(value, idp)

    assert assertion == Assertion(
        response_id="_response-1",
        assertion_id="_assertion-1",
        issuer="https://idp.test/metadata",
        in_response_to=REQUEST_ID,
        name_id="ada@example.com",
        name_id_format=EMAIL_NAMEID,
        attributes={"email": ("ada@example.com",), "groups": ("admins", "staff")},
        session_index="_session-7",
        issue_instant=NOW,
        # The earlier of the two ends, plus the skew the check allowed.
        not_on_or_after=NOW + timedelta(minutes=5) + SKEW,
        signed_by=0,
        clock_offset=0.0,
    )


def test_the_attributes_cannot_be_changed(idp: TestIdp) -> None:
    assertion = verify(respond(idp), idp)

    with pytest.raises(TypeError):
        assertion.attributes["email"] = ("mallory@example.com",)  # type: ignore[index]


def test_the_value_may_be_bytes_or_wrapped_in_lines(idp: TestIdp) -> None:
    value = respond(idp)
    wrapped = "\r\n".join(value[i : i + 76] for i in range(0, len(value), 76))

    assert verify(value.encode("ascii"), idp).name_id == "ada@example.com"
    assert verify(wrapped, idp).name_id == "ada@example.com"


def test_repeated_attributes_are_merged_and_empty_values_dropped(idp: TestIdp) -> None:
    xml = idp.response_xml(
        sp=SP,
        name_id="ada@example.com",
        in_response_to=REQUEST_ID,
        now=NOW,
        attributes={"groups": ["admins", " ", "staff"]},
        sign_assertion=False,
    )
    root = etree.fromstring(xml)
    statement = root.find(f".//{{{NS['saml']}}}AttributeStatement")
    second = etree.SubElement(statement, f"{{{NS['saml']}}}Attribute", Name="groups")
    etree.SubElement(second, f"{{{NS['saml']}}}AttributeValue").text = "auditors"
    _sign_assertion(root, idp)

    assertion = verify(encode(etree.tostring(root)), idp)

    assert assertion.attributes == {"groups": ("admins", "staff", "auditors")}


def test_an_assertion_without_attributes_is_accepted(idp: TestIdp) -> None:
    assertion = verify(respond(idp, attributes={}), idp)

    assert assertion.attributes == {}
    assert assertion.name_id == "ada@example.com"


def test_a_signed_response_around_a_signed_assertion_is_accepted(idp: TestIdp) -> None:
    assertion = verify(respond(idp, sign_response=True), idp)

    assert assertion.name_id == "ada@example.com"


def test_a_signed_response_is_verified_too(idp: TestIdp) -> None:
    # The Response's own attributes are covered only by its signature.
    xml = idp.response_xml(sp=SP, name_id="ada@example.com", now=NOW, sign_response=True)
    tampered = xml.replace(b"IssueInstant=", b'InResponseTo="_forged" IssueInstant=', 1)

    error = refusal(lambda: verify(encode(tampered), idp, request_id=None))

    assert error.code == "response.signature"
    assert _public_key(DSA_CERTIFICATE) is None
    assert error.finding.where == "Response/Signature"


@pytest.mark.parametrize(
    ("signature_algorithm", "digest_algorithm", "key_type", "key_size"),
    [
        ("rsa-sha384", "sha384", "rsa", 2048),
        ("rsa-sha512", "sha512", "rsa", 3072),
        ("ecdsa-sha256", "sha256", "ec", 256),
        ("ecdsa-sha384", "sha512", "ec", 384),
    ],
)
def test_stronger_and_elliptic_curve_signatures_are_accepted(
    signature_algorithm: str, digest_algorithm: str, key_type: Any, key_size: int
) -> None:
    idp = TestIdp(key_type=key_type, key_size=key_size)

    value = respond(idp, signature_algorithm=signature_algorithm, digest_algorithm=digest_algorithm)

    assert verify(value, idp).name_id == "ada@example.com"


def test_a_name_id_of_another_format_is_reported_as_it_is(idp: TestIdp) -> None:
    persistent = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"

    assertion = verify(respond(idp, name_id_format=persistent), idp)

    assert assertion.name_id_format == persistent
    assert verify(respond(idp, name_id_format=None), idp).name_id_format is None


# --- certificates: rollover, re-issue, expiry -----------------------------------------------


@pytest.mark.parametrize("key_info", [True, False])
def test_during_a_rollover_signed_by_names_the_certificate_that_verified(key_info: bool) -> None:
    idp = TestIdp(certificates=2)

    old = verify(respond(idp, signing=0, key_info=key_info), idp)
    new = verify(respond(idp, signing=1, key_info=key_info), idp)

    assert (old.signed_by, new.signed_by) == (0, 1)


def test_signed_by_is_a_position_in_the_configured_certificates() -> None:
    idp = TestIdp(certificates=2)
    reversed_order = idp.identity_provider(certificates=[1, 0])

    assertion = verify_response(
        respond(idp, signing=1),
        sp=SP,
        idp=reversed_order,
        request_id=REQUEST_ID,
        now=NOW,
    )

    assert assertion.signed_by == 0
    assert reversed_order.certificates[0] == idp.certificates[1]


def test_a_certificate_reissued_for_the_same_key_takes_over_from_the_expired_one() -> None:
    idp = TestIdp(
        certificates=[
            CertificateSpec(key="reissued", not_after=NOW - timedelta(days=1)),
            CertificateSpec(key="reissued"),
        ]
    )

    assert verify(respond(idp, signing=0), idp).signed_by == 1


def test_a_certificate_is_usable_until_its_last_instant() -> None:
    idp = TestIdp(certificates=[CertificateSpec(not_after=NOW)])

    assert verify(respond(idp), idp).signed_by == 0


# --- clock skew, both ways, on Conditions and on SubjectConfirmationData ------------------


def test_an_idp_clock_ahead_within_the_skew_is_accepted_and_measured(idp: TestIdp) -> None:
    value = respond(idp, now=NOW + timedelta(seconds=100))

    assertion = verify(value, idp)

    assert assertion.clock_offset == 100.0
    assert assertion.issue_instant == NOW + timedelta(seconds=100)


def test_an_idp_clock_ahead_beyond_the_skew_is_refused(idp: TestIdp) -> None:
    value = respond(idp, now=NOW + timedelta(seconds=100))

    error = refusal(lambda: verify(value, idp, clock_skew=timedelta(seconds=60)))

    assert error.code == "response.clock"
    assert "100 s ahead" in str(error)


@pytest.mark.parametrize("where", ["conditions", "subject"])
def test_not_before_in_the_future_is_allowed_the_skew(idp: TestIdp, where: str) -> None:
    start = NOW + timedelta(seconds=100)
    option = {"not_before": start} if where == "conditions" else {"subject_not_before": start}
    value = respond(idp, **option)

    assert verify(value, idp).name_id == "ada@example.com"
    error = refusal(lambda: verify(value, idp, clock_skew=timedelta(seconds=60)))
    assert error.code == "response.not_yet_valid"


@pytest.mark.parametrize("where", ["conditions", "subject"])
def test_not_on_or_after_in_the_past_is_allowed_the_skew(idp: TestIdp, where: str) -> None:
    end = NOW - timedelta(seconds=100)
    option = {"not_on_or_after": end} if where == "conditions" else {"subject_not_on_or_after": end}
    value = respond(idp, now=NOW - timedelta(minutes=3), **option)

    assertion = verify(value, idp)
    assert assertion.not_on_or_after == end + SKEW
    error = refusal(lambda: verify(value, idp, clock_skew=timedelta(seconds=60)))
    assert error.code == "response.expired"


def test_a_not_on_or_after_exactly_at_now_minus_the_skew_is_expired(idp: TestIdp) -> None:
    value = respond(idp, now=NOW - timedelta(minutes=5), not_on_or_after=NOW - SKEW)

    assert refusal(lambda: verify(value, idp)).code == "response.expired"


def test_an_ended_idp_session_is_refused(idp: TestIdp) -> None:
    value = respond(idp, session_not_on_or_after=NOW - timedelta(minutes=10))

    error = refusal(lambda: verify(value, idp))

    assert error.code == "response.expired"
    assert error.finding.where.endswith("@SessionNotOnOrAfter")


# --- exact checks -------------------------------------------------------------------------

NEAR_MISSES = [
    "https://app.example/saml/acme/acs/",
    "https://app.example/saml/acme/acs?x=1",
    "https://app.example/saml/acme/acs/../acs",
    "https://APP.example/saml/acme/acs",
    "http://app.example/saml/acme/acs",
    "https://app.example/saml/acme/ac",
    "https://app.example/saml/acme/acsx",
    "https://app.example/saml/ACME/acs",
    "https://app.example:443/saml/acme/acs",
    "",
]


@pytest.mark.parametrize("destination", NEAR_MISSES)
def test_the_destination_must_be_the_acs_url_exactly(idp: TestIdp, destination: str) -> None:
    error = refusal(lambda: verify(respond(idp, destination=destination), idp))

    assert error.code == "response.destination"
    assert error.finding.where == "Response/@Destination"
    assert SP.acs_url in str(error)


def test_a_response_without_destination_is_refused(idp: TestIdp) -> None:
    error = refusal(lambda: verify(respond(idp, destination=None), idp))

    assert error.code == "response.destination"
    assert "no Destination" in str(error)


@pytest.mark.parametrize("recipient", NEAR_MISSES)
def test_the_recipient_must_be_the_acs_url_exactly(idp: TestIdp, recipient: str) -> None:
    error = refusal(lambda: verify(respond(idp, recipient=recipient), idp))

    assert error.code == "response.recipient"


def test_a_bearer_confirmation_without_recipient_is_refused(idp: TestIdp) -> None:
    error = refusal(lambda: verify(respond(idp, recipient=None), idp))

    assert error.code == "response.recipient"
    assert "no Recipient" in str(error)


@pytest.mark.parametrize(
    "audience",
    [
        "https://app.example/saml/acme/metadata/",
        "https://app.example/saml/acme",
        "https://app.example/saml/acme/metadata-x",
        "https://app.example/saml/other/metadata",
        "",
    ],
)
def test_the_audience_must_be_the_sp_entity_id_exactly(idp: TestIdp, audience: str) -> None:
    error = refusal(lambda: verify(respond(idp, audience=audience), idp))

    assert error.code == "response.audience"


def test_an_assertion_without_audience_is_refused(idp: TestIdp) -> None:
    error = refusal(lambda: verify(respond(idp, audience=None), idp))

    assert error.code == "response.audience"
    assert "names no audience" in str(error)


def test_every_audience_restriction_must_name_the_sp(idp: TestIdp) -> None:
    xml = idp.response_xml(
        sp=SP, name_id="ada@example.com", in_response_to=REQUEST_ID, now=NOW, sign_assertion=False
    )
    root = etree.fromstring(xml)
    conditions = root.find(f".//{{{NS['saml']}}}Conditions")
    other = etree.SubElement(conditions, f"{{{NS['saml']}}}AudienceRestriction")
    etree.SubElement(other, f"{{{NS['saml']}}}Audience").text = "https://other.example/sp"
    _sign_assertion(root, idp)

    error = refusal(lambda: verify(encode(etree.tostring(root)), idp))

    assert error.code == "response.audience"


@pytest.mark.parametrize("which", ["issuer", "assertion_issuer"])
def test_the_issuers_must_be_the_idp_entity_id(idp: TestIdp, which: str) -> None:
    value = respond(idp, **{which: "https://idp.test/metadata/"})

    error = refusal(lambda: verify(value, idp))

    assert error.code == "response.issuer"
    assert "https://idp.test/metadata" in str(error)


def test_the_response_issuer_may_be_left_out(idp: TestIdp) -> None:
    assert verify(respond(idp, issuer=None), idp).issuer == "https://idp.test/metadata"


def test_an_sp_name_qualifier_of_another_sp_is_refused(idp: TestIdp) -> None:
    xml = idp.response_xml(
        sp=SP, name_id="ada@example.com", in_response_to=REQUEST_ID, now=NOW, sign_assertion=False
    )
    root = etree.fromstring(xml)
    root.find(f".//{{{NS['saml']}}}NameID").set("SPNameQualifier", "https://other.example/sp")
    _sign_assertion(root, idp)

    assert refusal(lambda: verify(encode(etree.tostring(root)), idp)).code == "response.name_id"


# --- InResponseTo -------------------------------------------------------------------------


def test_an_unsolicited_response_is_accepted_when_no_request_is_pending(idp: TestIdp) -> None:
    assertion = verify(respond(idp, in_response_to=None), idp, request_id=None)

    assert assertion.in_response_to is None


def test_without_a_pending_request_an_in_response_to_is_reported(idp: TestIdp) -> None:
    assertion = verify(respond(idp, in_response_to="_old-request"), idp, request_id=None)

    assert assertion.in_response_to == "_old-request"


def test_the_subject_confirmation_must_answer_the_same_request(idp: TestIdp) -> None:
    value = respond(idp, subject_in_response_to="_other-request")

    error = refusal(lambda: verify(value, idp))

    assert error.code == "response.in_response_to"
    assert error.finding.where.endswith("SubjectConfirmationData/@InResponseTo")


def test_an_in_response_to_on_the_subject_confirmation_alone_is_reported(idp: TestIdp) -> None:
    value = respond(idp, in_response_to=None, subject_in_response_to="_request-9")

    assert verify(value, idp, request_id=None).in_response_to == "_request-9"


# --- python3-saml settings, the schema, errors --------------------------------------------


def test_python3_saml_gets_every_security_setting_spelled_out(idp: TestIdp) -> None:
    settings = _response.settings_dict(SP, idp.identity_provider())

    assert settings["strict"] is True
    security = settings["security"]
    assert security["wantAssertionsSigned"] is True
    assert security["wantMessagesSigned"] is False
    assert security["rejectDeprecatedAlgorithm"] is True
    assert settings["sp"]["x509cert"] == ""
    assert settings["sp"]["privateKey"] == ""
    assert settings["idp"]["x509certMulti"]["signing"] == list(idp.certificates)


def test_no_key_or_certificate_file_is_ever_looked_for(
    idp: TestIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[str] = []
    monkeypatch.setattr("onelogin.saml2.settings.exists", looked.append)
    _response._settings.cache_clear()
    encrypted = _encrypted_assertion_response(idp)

    assert verify(respond(idp), idp).name_id == "ada@example.com"
    assert refusal(lambda: verify(encrypted, idp)).code == "response.encrypted"
    assert looked == []
    # python3-saml's own settings object does look, which the spy would see.
    upstream = OneLogin_Saml2_Settings(_response.settings_dict(SP, idp.identity_provider()))
    upstream.get_sp_key()
    assert looked
    assert looked[-1].endswith("sp.key")


def test_a_key_file_beside_the_package_would_not_be_read(idp: TestIdp, tmp_path: Path) -> None:
    (tmp_path / "sp.key").write_text(idp.private_key_pem.decode("ascii"))
    (tmp_path / "sp.crt").write_text(idp.certificate_pem)
    (tmp_path / "idp.crt").write_text(idp.certificate_pem)
    settings = _response._Settings(_response.settings_dict(SP, idp.identity_provider()))
    settings.set_cert_path(f"{tmp_path}/")

    assert settings.get_sp_key() is None
    assert settings.get_sp_cert() is None
    assert settings.get_sp_cert_new() is None


def test_the_protocol_schema_is_parsed_once_per_thread(
    idp: TestIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify(respond(idp), idp)
    mine = _response._protocol_schema()

    def parse_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("the schema was parsed again")

    monkeypatch.setattr("onelogin.saml2.xml_utils.OneLogin_Saml2_XML.validate_xml", parse_again)
    monkeypatch.setattr("lxml.etree.XMLSchema", parse_again)
    assert verify(respond(idp), idp).name_id == "ada@example.com"
    assert _response._protocol_schema() is mine
    monkeypatch.undo()

    others: list[object] = []
    thread = threading.Thread(target=lambda: others.append(_response._protocol_schema()))
    thread.start()
    thread.join()
    assert others[0] is not mine


def test_threads_verify_side_by_side(idp: TestIdp) -> None:
    from concurrent.futures import ThreadPoolExecutor

    good = respond(idp)
    bad = respond(idp, audience="https://other.example/sp")

    def one(index: int) -> str:
        try:
            return verify(good if index % 2 else bad, idp).name_id
        except SignInError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(200)))

    assert results == ["response.audience", "ada@example.com"] * 100


def test_a_response_that_breaks_the_schema_is_malformed(idp: TestIdp) -> None:
    # The schema requires an Issuer in every assertion.
    error = refusal(lambda: verify(respond(idp, assertion_issuer=None), idp))

    assert error.code == "response.malformed"
    assert "schema" in str(error)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("not base64 at all!", "not valid base64"),
        ("aGVsbG8=ü", "non-ASCII"),
        (base64.b64encode(b"hello").decode(), "not well-formed"),
        (base64.b64encode(b"<a/>").decode(), "samlp:Response"),
        (base64.b64encode(b'<Response xmlns="urn:other"/>').decode(), "samlp:Response"),
    ],
)
def test_what_is_not_a_saml_response_is_malformed(idp: TestIdp, value: str, why: str) -> None:
    error = refusal(lambda: verify(value, idp))

    assert error.code == "response.malformed"
    assert why in str(error)


def test_another_saml_version_is_malformed(idp: TestIdp) -> None:
    xml = idp.response_xml(sp=SP, name_id="ada@example.com", now=NOW)

    value = encode(xml.replace(b'Version="2.0"', b'Version="2.1"', 1))

    assert refusal(lambda: verify(value, idp)).code == "response.malformed"


def test_an_encrypted_assertion_is_refused_with_its_own_code(idp: TestIdp) -> None:
    error = refusal(lambda: verify(_encrypted_assertion_response(idp), idp))

    assert error.code == "response.encrypted"
    assert "Turn off assertion encryption" in error.finding.suggestion


def test_an_idp_without_certificates_cannot_verify_anything(idp: TestIdp) -> None:
    import attrs

    bare = attrs.evolve(idp.identity_provider(), certificates=())

    error = refusal(
        lambda: verify_response(respond(idp), sp=SP, idp=bare, request_id=REQUEST_ID, now=NOW)
    )

    assert error.code == "response.configuration"


def test_an_unexpected_failure_inside_becomes_a_sign_in_error(
    idp: TestIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("libxmlsec fell over")

    value = respond(idp)
    monkeypatch.setattr(xmlsec.tree, "add_ids", broken)

    error = refusal(lambda: verify(value, idp))

    assert error.code == "response.invalid"
    assert "libxmlsec fell over" in str(error)


def test_the_error_is_a_finding_with_the_message(idp: TestIdp) -> None:
    error = refusal(lambda: verify(respond(idp, audience="https://other"), idp))

    assert isinstance(error, PbIdentityError)
    assert str(error) == error.finding.message
    assert error.finding.severity == "error"
    assert error.finding.suggestion


def test_now_must_be_timezone_aware(idp: TestIdp) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(respond(idp), idp, now=NOW.replace(tzinfo=None))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_garbage_is_always_a_sign_in_error(garbage: bytes | str) -> None:
    idp = TestIdp()
    value = garbage if isinstance(garbage, str) else base64.b64encode(garbage)

    with pytest.raises(SignInError):
        verify(value, idp)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_changed_byte_is_refused_or_changes_nothing_that_counts(data: st.DataObject) -> None:
    idp = TestIdp()
    xml = bytearray(idp.response_xml(sp=SP, name_id="ada@example.com", now=NOW))
    position = data.draw(st.integers(0, len(xml) - 1))
    xml[position] = data.draw(st.integers(0x20, 0x7E))

    try:
        assertion = verify(encode(bytes(xml)), idp, request_id=None)
    except SignInError:
        return
    # Only bytes outside what is signed and checked can change without a
    # refusal (the KeyInfo certificate, insignificant whitespace...).
    assert assertion.name_id == "ada@example.com"
    assert assertion.attributes["email"] == ("ada@example.com",)


# --- helpers --------------------------------------------------------------------------------


def _sign_assertion(root: Any, idp: TestIdp) -> None:
    from tests.saml.idp import sign

    sign(root.find(f"{{{NS['saml']}}}Assertion"), idp.keys[0])


def _encrypted_assertion_response(idp: TestIdp) -> str:
    xml = idp.response_xml(sp=SP, name_id="ada@example.com", in_response_to=REQUEST_ID, now=NOW)
    root = etree.fromstring(xml)
    assertion = root.find(f"{{{NS['saml']}}}Assertion")
    encrypted = etree.Element(f"{{{NS['saml']}}}EncryptedAssertion")
    data = etree.SubElement(encrypted, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData")
    cipher = etree.SubElement(data, "{http://www.w3.org/2001/04/xmlenc#}CipherData")
    etree.SubElement(cipher, "{http://www.w3.org/2001/04/xmlenc#}CipherValue").text = "AAAA"
    root.replace(assertion, encrypted)
    return encode(etree.tostring(root))


def test_the_test_idps_metadata_reads_back_as_its_configuration() -> None:
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

    idp = TestIdp(certificates=2)

    data = OneLogin_Saml2_IdPMetadataParser.parse(
        idp.metadata_xml(),
        required_sso_binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
    )

    assert data["idp"]["entityId"] == idp.entity_id
    assert data["idp"]["singleSignOnService"]["url"] == idp.sso_url
    assert data["idp"]["x509certMulti"]["signing"] == [key.certificate_body for key in idp.keys]
    assert data["sp"]["NameIDFormat"] == EMAIL_NAMEID


def test_a_dsa_certificate_verifies_nothing_and_its_key_is_never_loaded(idp: TestIdp) -> None:
    """DSA is refused like any key type off the allow-list, without cryptography's DSA class."""
    import attrs

    dsa_only = attrs.evolve(idp.identity_provider(), certificates=(DSA_CERTIFICATE,))

    error = refusal(
        lambda: verify_response(respond(idp), sp=SP, idp=dsa_only, request_id=REQUEST_ID, now=NOW)
    )

    assert error.code == "response.signature"
    assert _public_key(DSA_CERTIFICATE) is None
