"""Responses an attacker would post to the ACS: each must be refused, with a code that says why.

The signature-wrapping cases follow SAML Raider's XSW1-XSW8 recipes (from "On
Breaking SAML: Be Whoever You Want to Be"), applied to a response the test
IdP signed for ``victim@example.com``; the attacker's copy says
``admin@example.com``. Every fixture is made here, at test time.
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import Literal
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from lxml import etree

from pbidentity.admin import Admin
from pbidentity.members import Members
from pbidentity.saml import _response
from pbidentity.saml._response import SignInError
from pbidentity.saml._response import verify_response
from pbidentity.saml._service import Authorized
from pbidentity.saml._service import SamlConfig
from pbidentity.saml._service import SamlService
from pbidentity.saml._service import SignIn
from pbidentity.saml._service import SignInFailure
from pbidentity.saml._service import SignInOutcome
from pbidentity.saml._types import ServiceProvider
from pbidentity.storage import Storage
from tests.saml.idp import NS
from tests.saml.idp import CertificateSpec
from tests.saml.idp import TestIdp
from tests.saml.idp import encode

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REQUEST_ID = "_request-77aa"
VICTIM = "victim@example.com"
ADMIN = "admin@example.com"
SAML = NS["saml"]
DS = NS["ds"]

SP = ServiceProvider(
    entity_id="https://app.example/saml/acme/metadata",
    acs_url="https://app.example/saml/acme/acs",
    metadata_url="https://app.example/saml/acme/metadata",
    login_url="https://app.example/saml/acme/login",
)


@pytest.fixture(scope="module")
def idp() -> TestIdp:
    return TestIdp()


def signed_xml(idp: TestIdp, **options: Any) -> Any:
    """The victim's genuine response, parsed, ready to be tampered with."""
    options.setdefault("in_response_to", REQUEST_ID)
    xml = idp.response_xml(sp=SP, name_id=VICTIM, now=NOW, **options)
    return etree.fromstring(xml)


def refused(value: str | bytes, idp: TestIdp, **options: Any) -> SignInError:
    options.setdefault("request_id", REQUEST_ID)
    options.setdefault("now", NOW)
    with pytest.raises(SignInError) as caught:
        verify_response(value, sp=SP, idp=idp.identity_provider(), **options)
    return caught.value


def as_value(root: Any) -> str:
    return encode(etree.tostring(root))


def make_evil(element: Any) -> None:
    """SAML Raider's "match and replace": the victim becomes the admin in this copy."""
    for name_id in element.iter(f"{{{SAML}}}NameID"):
        name_id.text = ADMIN
    for value in element.iter(f"{{{SAML}}}AttributeValue"):
        if value.text == VICTIM:
            value.text = ADMIN


def signature_of(element: Any) -> Any:
    return element.find(f"{{{DS}}}Signature")


def assertion_of(root: Any) -> Any:
    return root.find(f"{{{SAML}}}Assertion")


# --- signature wrapping: SAML Raider XSW1-XSW8 ----------------------------------------------
# Each recipe takes the victim's signed response and returns the wrapped one.


def xsw1(idp: TestIdp) -> Any:
    """The signed Response, unsigned, copied into its own signature; the outer one made evil."""
    response = signed_xml(idp, sign_response=True)
    original = copy.deepcopy(response)
    original.remove(signature_of(original))
    make_evil(response)
    signature_of(response).append(original)
    response.set("ID", "_evil_response_ID")
    return response


def xsw2(idp: TestIdp) -> Any:
    """As XSW1, the copy placed before the (now detached) signature."""
    response = signed_xml(idp, sign_response=True)
    original = copy.deepcopy(response)
    original.remove(signature_of(original))
    make_evil(response)
    signature_of(response).addprevious(original)
    response.set("ID", "_evil_response_ID")
    return response


def xsw3(idp: TestIdp) -> Any:
    """An unsigned evil assertion before the signed one."""
    response = signed_xml(idp)
    assertion = assertion_of(response)
    evil = copy.deepcopy(assertion)
    make_evil(evil)
    evil.remove(signature_of(evil))
    evil.set("ID", "_evil_assertion_ID")
    assertion.addprevious(evil)
    return response


def xsw4(idp: TestIdp) -> Any:
    """An unsigned evil assertion wrapping the signed one."""
    response = signed_xml(idp)
    assertion = assertion_of(response)
    evil = copy.deepcopy(assertion)
    make_evil(evil)
    evil.remove(signature_of(evil))
    evil.set("ID", "_evil_assertion_ID")
    response.append(evil)
    evil.append(assertion)
    return response


def xsw5(idp: TestIdp) -> Any:
    """The evil assertion keeps the signature; an unsigned original is appended last."""
    response = signed_xml(idp)
    evil = assertion_of(response)
    original = copy.deepcopy(evil)
    make_evil(evil)
    original.remove(signature_of(original))
    response.append(original)
    evil.set("ID", "_evil_assertion_ID")
    return response


def xsw6(idp: TestIdp) -> Any:
    """As XSW5, the unsigned original inside the evil assertion's signature."""
    response = signed_xml(idp)
    evil = assertion_of(response)
    original = copy.deepcopy(evil)
    make_evil(evil)
    original.remove(signature_of(original))
    signature_of(evil).append(original)
    evil.set("ID", "_evil_assertion_ID")
    return response


def xsw7(idp: TestIdp) -> Any:
    """An unsigned evil copy (same ID) inside an Extensions element before the signed one."""
    response = signed_xml(idp)
    assertion = assertion_of(response)
    extensions = etree.Element("Extensions")
    assertion.addprevious(extensions)
    evil = copy.deepcopy(assertion)
    make_evil(evil)
    evil.remove(signature_of(evil))
    extensions.append(evil)
    return response


def xsw8(idp: TestIdp) -> Any:
    """The signed assertion made evil; the unsigned original in a ds:Object of its signature."""
    response = signed_xml(idp)
    evil = assertion_of(response)
    original = copy.deepcopy(evil)
    make_evil(evil)
    original.remove(signature_of(original))
    holder = etree.SubElement(signature_of(evil), "Object")
    holder.append(original)
    return response


def test_xsw1_signed_response_copied_into_its_own_signature(idp: TestIdp) -> None:
    error = refused(as_value(xsw1(idp)), idp)

    # A ds:Signature holds nothing but SignedInfo, SignatureValue and KeyInfo.
    assert error.code == "response.signature"
    assert "received SignedInfo, SignatureValue, KeyInfo, Response" in str(error)


def test_xsw2_signed_response_copied_before_its_detached_signature(idp: TestIdp) -> None:
    error = refused(as_value(xsw2(idp)), idp)

    # python3-saml: the signature's reference must name its parent's ID.
    assert error.code == "response.signature"
    assert "invalid Signed Element" in str(error)


def test_xsw3_unsigned_evil_assertion_before_the_signed_one(idp: TestIdp) -> None:
    error = refused(as_value(xsw3(idp)), idp)

    assert error.code == "response.assertion"
    assert "received 2" in str(error)


def test_xsw4_evil_assertion_wrapping_the_signed_one(idp: TestIdp) -> None:
    error = refused(as_value(xsw4(idp)), idp)

    # python3-saml: an assertion's signature must sit at /Response/Assertion/Signature.
    assert error.code == "response.signature"
    assert "Unexpected number of Assertion signatures" in str(error)


def test_xsw5_evil_assertion_keeps_the_signature_original_copied_last(idp: TestIdp) -> None:
    error = refused(as_value(xsw5(idp)), idp)

    assert error.code == "response.signature"
    assert "invalid Signed Element" in str(error)


def test_xsw6_original_copied_into_the_evil_assertions_signature(idp: TestIdp) -> None:
    error = refused(as_value(xsw6(idp)), idp)

    assert error.code == "response.signature"
    assert "received SignedInfo, SignatureValue, KeyInfo, Assertion" in str(error)


def test_xsw7_evil_assertion_inside_an_extensions_element(idp: TestIdp) -> None:
    error = refused(as_value(xsw7(idp)), idp)

    assert error.code == "response.assertion"
    assert "received 2" in str(error)


def test_xsw8_original_inside_an_object_of_the_evil_assertions_signature(idp: TestIdp) -> None:
    error = refused(as_value(xsw8(idp)), idp)

    assert error.code == "response.signature"
    assert "KeyInfo, Object" in str(error)


@pytest.mark.parametrize("recipe", [xsw1, xsw2, xsw3, xsw4, xsw5, xsw6, xsw7, xsw8])
def test_each_wrapping_is_refused_even_without_the_signature_layout_check(
    idp: TestIdp, recipe: Callable[[TestIdp], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: with the allowlist pre-check switched off, python3-saml's
    # layout checks, the assertion count and the signature still refuse.
    monkeypatch.setattr(_response, "_check_algorithms", lambda document: None)

    error = refused(as_value(recipe(idp)), idp)

    assert error.code in {"response.signature", "response.assertion", "response.malformed"}


def test_a_second_element_with_the_signed_id_is_refused(idp: TestIdp) -> None:
    # Not a second assertion: any element claiming the signed ID could be
    # the one libxmlsec digests.
    response = signed_xml(idp)
    assertion = assertion_of(response)
    extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
    etree.SubElement(extensions, "{urn:example}Decoy", ID=assertion.get("ID"))
    response.find(f"{{{SAML}}}Issuer").addnext(extensions)

    error = refused(as_value(response), idp)

    assert error.code == "response.signature"
    assert "used 2 times" in str(error)


def test_an_xml_id_claiming_the_signed_id_is_refused(
    idp: TestIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libxml2 resolves xml:id as an ID too. The schema already refuses two
    # equal xs:ID values; without the schema the ID check still does.
    response = signed_xml(idp)
    assertion = assertion_of(response)
    extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
    decoy = etree.SubElement(extensions, "{urn:example}Decoy")
    decoy.set("{http://www.w3.org/XML/1998/namespace}id", assertion.get("ID"))
    response.find(f"{{{SAML}}}Issuer").addnext(extensions)
    value = as_value(response)

    assert refused(value, idp).code == "response.malformed"
    monkeypatch.setattr(_response._Verification, "_check_schema", lambda self, root: None)
    error = refused(value, idp)
    assert error.code == "response.signature"
    assert "used 2 times" in str(error)


def test_a_signed_info_from_another_namespace_is_refused(idp: TestIdp) -> None:
    response = signed_xml(idp)
    signed_info = signature_of(assertion_of(response)).find(f"{{{DS}}}SignedInfo")
    signed_info.tag = "{urn:example}SignedInfo"

    error = refused(as_value(response), idp)

    assert error.code == "response.signature"
    assert "must hold one SignedInfo" in str(error)


# --- XML parser attacks -----------------------------------------------------------------


def test_an_external_entity_is_refused_as_malformed(idp: TestIdp) -> None:
    xml = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r"'
        b' Version="2.0" IssueInstant="2026-06-01T12:00:00Z"><x>&xxe;</x></samlp:Response>'
    )

    error = refused(encode(xml), idp)

    assert error.code == "response.malformed"
    assert "DOCTYPE" in str(error)


def test_billion_laughs_is_refused_fast(idp: TestIdp) -> None:
    entities = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY l0 "lol">{entities}]>'
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&l9;</samlp:Response>'
    ).encode()

    start = time.perf_counter()
    error = refused(encode(xml), idp)

    assert time.perf_counter() - start < 0.05
    assert error.code == "response.malformed"


def test_a_doctype_inside_a_genuine_response_is_refused(idp: TestIdp) -> None:
    xml = etree.tostring(signed_xml(idp))

    error = refused(encode(b"<!DOCTYPE samlp:Response>" + xml), idp)

    assert error.code == "response.malformed"


def xslt_transform(depth: int) -> Any:
    """An XSLT transform whose work doubles with each nesting level (GHSA-8mmq-f9vf-8fg2)."""
    xsl = "http://www.w3.org/1999/XSL/Transform"
    transform = etree.Element(
        f"{{{DS}}}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"
    )
    stylesheet = etree.SubElement(transform, f"{{{xsl}}}stylesheet", version="1.0")
    node = etree.SubElement(stylesheet, f"{{{xsl}}}template", match="/")
    for _ in range(depth):
        node = etree.SubElement(node, f"{{{xsl}}}for-each", select="(//node())[position() <= 2]")
    etree.SubElement(node, f"{{{xsl}}}value-of", select=".")
    return transform


def test_an_xslt_transform_is_refused_before_anything_runs(idp: TestIdp) -> None:
    response = signed_xml(idp)
    transforms = signature_of(assertion_of(response)).find(f".//{{{DS}}}Transforms")
    transforms.insert(0, xslt_transform(depth=18))
    value = as_value(response)

    start = time.perf_counter()
    error = refused(value, idp)
    elapsed = time.perf_counter() - start

    assert elapsed < 0.05
    assert error.code == "response.transform"
    assert "REC-xslt" in str(error)


def test_libxmlsec_is_held_to_the_same_allowlist(
    idp: TestIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the pre-check, libxmlsec itself refuses to run the XSLT (left
    # to run, depth 18 takes seconds).
    monkeypatch.setattr(_response, "_check_algorithms", lambda document: None)
    response = signed_xml(idp)
    transforms = signature_of(assertion_of(response)).find(f".//{{{DS}}}Transforms")
    transforms.insert(0, xslt_transform(depth=18))

    start = time.perf_counter()
    error = refused(as_value(response), idp)

    assert time.perf_counter() - start < 0.05
    assert error.code == "response.signature"


def test_an_xslt_transform_in_a_second_signature_is_refused_too(idp: TestIdp) -> None:
    # The response's signature is not required, but it is checked all the same.
    response = signed_xml(idp, sign_response=True)
    transforms = signature_of(response).find(f".//{{{DS}}}Transforms")
    transforms.append(xslt_transform(depth=18))

    start = time.perf_counter()
    error = refused(as_value(response), idp)

    assert time.perf_counter() - start < 0.05
    assert error.code == "response.transform"


@pytest.mark.parametrize(
    "algorithm",
    [
        "http://www.w3.org/TR/1999/REC-xpath-19991116",
        "http://www.w3.org/2002/06/xmldsig-filter2",
        "http://www.w3.org/2000/09/xmldsig#base64",
    ],
)
def test_other_transforms_are_refused(idp: TestIdp, algorithm: str) -> None:
    response = signed_xml(idp)
    transforms = signature_of(assertion_of(response)).find(f".//{{{DS}}}Transforms")
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=algorithm)

    assert refused(as_value(response), idp).code == "response.transform"


def test_a_canonicalization_carrying_content_is_refused(idp: TestIdp) -> None:
    response = signed_xml(idp)
    c14n = signature_of(assertion_of(response)).find(f".//{{{DS}}}CanonicalizationMethod")
    etree.SubElement(c14n, f"{{{DS}}}XPath").text = "count(//. | //@*) > 0"

    assert refused(as_value(response), idp).code == "response.transform"


def test_a_signature_over_the_whole_document_is_refused(idp: TestIdp) -> None:
    response = signed_xml(idp)
    signature_of(assertion_of(response)).find(f".//{{{DS}}}Reference").set("URI", "")

    assert refused(as_value(response), idp).code == "response.signature"


def test_a_signature_with_two_references_is_refused(idp: TestIdp) -> None:
    response = signed_xml(idp)
    reference = signature_of(assertion_of(response)).find(f".//{{{DS}}}Reference")
    extra = copy.deepcopy(reference)
    extra.set("URI", "http://attacker.example/payload")
    reference.addnext(extra)

    assert refused(as_value(response), idp).code == "response.signature"


# --- comment injection ----------------------------------------------------------------------


def test_a_comment_in_the_name_id_does_not_truncate_the_identity(idp: TestIdp) -> None:
    # The attacker owns admin@example.com.attacker.test at the IdP and cuts it
    # with a comment, which the signature (comments excluded) does not cover.
    genuine = "admin@example.com.attacker.test"
    xml = idp.response_xml(sp=SP, name_id=genuine, in_response_to=REQUEST_ID, now=NOW)
    assert xml.count(genuine.encode()) >= 1
    injected = xml.replace(
        f">{genuine}</saml:NameID>".encode(),
        b">admin@example.com<!---->.attacker.test</saml:NameID>",
    )
    assert injected != xml

    try:
        assertion = verify_response(
            encode(injected), sp=SP, idp=idp.identity_provider(), request_id=REQUEST_ID, now=NOW
        )
    except SignInError:
        return
    assert assertion.name_id == genuine


def test_a_comment_in_an_attribute_value_does_not_truncate_it(idp: TestIdp) -> None:
    genuine = "admin@example.com.attacker.test"
    xml = idp.response_xml(
        sp=SP,
        name_id="someone@attacker.test",
        in_response_to=REQUEST_ID,
        now=NOW,
        attributes={"email": [genuine]},
    )
    injected = xml.replace(genuine.encode(), b"admin@example.com<!-- cut -->.attacker.test")

    assertion = verify_response(
        encode(injected), sp=SP, idp=idp.identity_provider(), request_id=REQUEST_ID, now=NOW
    )

    assert assertion.attributes["email"] == (genuine,)


# --- missing or misplaced signatures --------------------------------------------------------


def test_an_unsigned_assertion_in_a_signed_response_is_refused(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP,
        name_id=VICTIM,
        in_response_to=REQUEST_ID,
        now=NOW,
        sign_assertion=False,
        sign_response=True,
    )

    error = refused(value, idp)

    assert error.code == "response.unsigned"
    assert "Response alone is not enough" in str(error)


def test_an_unsigned_response_is_refused(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP, name_id=ADMIN, in_response_to=REQUEST_ID, now=NOW, sign_assertion=False
    )

    error = refused(value, idp)

    assert error.code == "response.unsigned"
    assert "Neither the response nor its assertion is signed" in str(error)


def test_a_stripped_signature_value_is_refused(idp: TestIdp) -> None:
    response = signed_xml(idp)
    signature_of(assertion_of(response)).find(f"{{{DS}}}SignatureValue").text = ""

    assert refused(as_value(response), idp).code == "response.signature"


def test_a_changed_name_id_breaks_the_signature(idp: TestIdp) -> None:
    response = signed_xml(idp)
    make_evil(assertion_of(response))

    error = refused(as_value(response), idp)

    assert error.code == "response.signature"
    assert error.finding.where == "Assertion/Signature"


# --- who signed ---------------------------------------------------------------------------


def test_an_assertion_signed_by_another_key_is_refused(idp: TestIdp) -> None:
    attacker = TestIdp(certificates=[CertificateSpec(key="attacker")])
    value = attacker.response(
        sp=SP, name_id=ADMIN, in_response_to=REQUEST_ID, now=NOW, key_info=False
    )

    error = refused(value, idp)

    assert error.code == "response.signature"
    assert "carries no certificate" in str(error)


def test_the_attackers_certificate_in_key_info_is_not_trusted(idp: TestIdp) -> None:
    attacker = TestIdp(certificates=[CertificateSpec(key="attacker")])
    value = attacker.response(sp=SP, name_id=ADMIN, in_response_to=REQUEST_ID, now=NOW)

    error = refused(value, idp)

    assert error.code == "response.signature"
    assert "KeyInfo carries a certificate with SHA-256" in str(error)


def test_the_idps_certificate_in_key_info_does_not_vouch_for_another_key(idp: TestIdp) -> None:
    attacker = TestIdp(certificates=[CertificateSpec(key="attacker")])
    value = attacker.response(
        sp=SP,
        name_id=ADMIN,
        in_response_to=REQUEST_ID,
        now=NOW,
        key_info_certificate=idp.certificate_pem,
    )

    assert refused(value, idp).code == "response.signature"


def test_a_signature_by_an_expired_certificate_is_refused() -> None:
    idp = TestIdp(
        certificates=[
            CertificateSpec(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
        ]
    )
    value = idp.response(sp=SP, name_id=VICTIM, in_response_to=REQUEST_ID, now=NOW)

    error = refused(value, idp)

    assert error.code == "response.certificate_expired"
    assert "expired on 2026-05-31" in str(error)


@pytest.mark.parametrize(
    ("signature_algorithm", "digest_algorithm"),
    [("rsa-sha1", "sha256"), ("rsa-sha256", "sha1"), ("rsa-sha1", "sha1")],
)
def test_sha1_is_refused(idp: TestIdp, signature_algorithm: str, digest_algorithm: str) -> None:
    value = idp.response(
        sp=SP,
        name_id=VICTIM,
        in_response_to=REQUEST_ID,
        now=NOW,
        signature_algorithm=signature_algorithm,
        digest_algorithm=digest_algorithm,
    )

    error = refused(value, idp)

    assert error.code == "response.algorithm"
    assert "sha1" in str(error)


def test_an_hmac_signature_is_refused(idp: TestIdp) -> None:
    response = signed_xml(idp)
    method = signature_of(assertion_of(response)).find(f".//{{{DS}}}SignatureMethod")
    method.set("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256")

    assert refused(as_value(response), idp).code == "response.algorithm"


# --- a response that is not for us, or not now ----------------------------------------------


def test_a_response_for_another_audience_is_refused(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP,
        name_id=VICTIM,
        in_response_to=REQUEST_ID,
        now=NOW,
        audience="https://other-app.example/saml/metadata",
    )

    assert refused(value, idp).code == "response.audience"


def test_a_response_for_another_destination_is_refused(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP,
        name_id=VICTIM,
        in_response_to=REQUEST_ID,
        now=NOW,
        destination="https://other-app.example/saml/acs",
    )

    assert refused(value, idp).code == "response.destination"


def test_a_response_for_another_recipient_is_refused(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP,
        name_id=VICTIM,
        in_response_to=REQUEST_ID,
        now=NOW,
        recipient="https://other-app.example/saml/acs",
    )

    assert refused(value, idp).code == "response.recipient"


def test_an_expired_assertion_is_refused(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP, name_id=VICTIM, in_response_to=REQUEST_ID, now=NOW - timedelta(hours=1)
    )

    error = refused(value, idp)

    assert error.code == "response.expired"


def test_an_assertion_not_yet_valid_is_refused(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP,
        name_id=VICTIM,
        in_response_to=REQUEST_ID,
        now=NOW,
        not_before=NOW + timedelta(minutes=10),
    )

    assert refused(value, idp).code == "response.not_yet_valid"


def test_an_unsolicited_response_is_refused_when_a_request_is_pending(idp: TestIdp) -> None:
    value = idp.response(sp=SP, name_id=VICTIM, in_response_to=None, now=NOW)

    error = refused(value, idp)

    assert error.code == "response.unsolicited"
    assert REQUEST_ID in str(error)


def test_a_response_to_another_request_is_refused(idp: TestIdp) -> None:
    value = idp.response(sp=SP, name_id=VICTIM, in_response_to="_request-of-someone-else", now=NOW)

    error = refused(value, idp)

    assert error.code == "response.in_response_to"
    assert "_request-of-someone-else" in str(error)


# --- size and status ------------------------------------------------------------------------


def test_an_oversized_body_is_refused_before_it_is_decoded(
    idp: TestIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("an oversized body was decoded")

    monkeypatch.setattr(base64, "b64decode", no_decoding)
    value = "A" * (20 * 1024 * 1024)

    start = time.perf_counter()
    error = refused(value, idp)

    assert time.perf_counter() - start < 0.05
    assert error.code == "response.too_large"


def test_an_oversized_xml_document_is_refused_after_decoding(idp: TestIdp) -> None:
    xml = etree.tostring(signed_xml(idp))

    error = refused(encode(xml), idp, max_bytes=len(xml) - 1)

    assert error.code == "response.too_large"
    assert f"{len(xml)} bytes of XML" in str(error)
    assert refused(encode(xml + b" "), idp, max_bytes=len(xml)).code == "response.too_large"


def test_a_non_success_status_is_shown_escaped(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP,
        name_id=VICTIM,
        in_response_to=REQUEST_ID,
        now=NOW,
        status="Responder",
        status_message='<script>alert("owned")</script>\n\u202e',
    )

    error = refused(value, idp)

    assert error.code == "response.status"
    message = str(error)
    assert "<script>" not in message
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in message
    assert "\\n" in message
    assert "\n" not in message
    assert "\u202e" not in message
    assert '"Responder"' in message


def test_a_long_status_message_is_cut(idp: TestIdp) -> None:
    value = idp.response(
        sp=SP,
        name_id=VICTIM,
        in_response_to=REQUEST_ID,
        now=NOW,
        status="Requester",
        status_message="x" * 5000,
    )

    assert len(str(refused(value, idp))) < 500


# Sign-ins that would act as another member -------------------------------------------------
#
# The signature is genuine: the IdP did authenticate someone. The attack is in
# who that someone is said to be: an address that only folds to a member's
# (``ceo@straße.test`` for ``ceo@strasse.test``), or an email attribute naming
# another member than the NameID. These run the whole SAML service on SQLite
# and PostgreSQL.

SERVICE_URL = "https://app.example"


@pytest.fixture
def service(storage: Storage) -> SamlService:
    """Workspace ``acme`` with its CEO, its finance team and an owner, and SSO active."""
    Admin(storage).create_tenant("acme", "Acme")
    members = Members(storage)
    for address in ("ceo@strasse.test", "finance@acme.test", "owner@acme.test", "ceo@acme.test"):
        members.add("acme", address, email=address, role="admin")
    return SamlService(storage, SamlConfig(public_url=SERVICE_URL))


def active(service: SamlService, idp: TestIdp) -> None:
    """Save the IdP's metadata and pass the owner's test sign-in."""
    assert service.save_metadata_xml("acme", idp.metadata_xml()).saved
    outcome = service_sign_in(service, idp, "owner@acme.test", purpose="authorize")
    assert isinstance(outcome, Authorized), outcome


def service_sign_in(
    service: SamlService,
    idp: TestIdp,
    name_id: str,
    *,
    purpose: str = "sign_in",
    **options: Any,
) -> SignInOutcome:
    """An SP-initiated sign-in (or the test sign-in) of ``name_id``, signed by ``idp``."""
    begin = service.begin_authorize if purpose == "authorize" else service.begin_sign_in
    redirect = begin("acme")
    query = parse_qs(urlsplit(redirect.url).query)
    answered = TestIdp.read_authn_request(query["SAMLRequest"][0]).id
    sp = service.service_provider("acme")
    return service.consume(
        "acme", idp.response(sp=sp, name_id=name_id, in_response_to=answered, **options)
    )


def full_width(text: str) -> str:
    """The same ASCII text typed with full-width forms (U+FF01..U+FF5E)."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


def signed_in_events(storage: Storage) -> list[str]:
    """The members whose sign-ins were recorded."""
    trail = Members(storage).audit_trail("acme")
    return [e.subject_id for e in trail if e.type == "member.signed_in"]


LOOKALIKES = [
    pytest.param("ceo@straße.test", "ceo@strasse.test", "'ß' (U+00DF", id="sharp-s"),
    pytest.param("\ufb01nance@acme.test", "finance@acme.test", "(U+FB01", id="ligature"),
    pytest.param(f"{full_width('finance')}@acme.test", "finance@acme.test", "(U+FF46", id="wide"),
]


@pytest.mark.parametrize(("attacker", "victim", "named"), LOOKALIKES)
@pytest.mark.parametrize("unknown_members", ["refuse", "create"])
def test_a_look_alike_name_id_never_signs_in_as_the_member(
    service: SamlService,
    storage: Storage,
    idp: TestIdp,
    attacker: str,
    victim: str,
    named: str,
    unknown_members: Literal["refuse", "create"],
) -> None:
    """A signed NameID that only folds to a member's address: refused, naming the characters.

    Nor is a member created just in time for it beside the one it imitates.
    """
    active(service, idp)
    service.update_options("acme", unknown_members=unknown_members)
    before = {m.id for m in Members(storage).all("acme")}
    outcome = service_sign_in(service, idp, attacker)
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code == "member.lookalike"
    assert f"only looks like {victim!r}" in outcome.message
    assert named in outcome.message
    assert outcome.finding.suggestion
    assert signed_in_events(storage) == []
    assert {m.id for m in Members(storage).all("acme")} == before


@pytest.mark.parametrize(("attacker", "victim", "named"), LOOKALIKES)
def test_a_look_alike_email_attribute_never_signs_in_as_the_member(
    service: SamlService, storage: Storage, idp: TestIdp, attacker: str, victim: str, named: str
) -> None:
    """With an opaque NameID the email attribute is the identity, and is held to the same rule."""
    active(service, idp)
    outcome = service_sign_in(
        service,
        idp,
        "00u1attacker",
        name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        attributes={"email": [attacker]},
    )
    assert isinstance(outcome, SignInFailure)
    assert outcome.finding.code == "member.lookalike"
    assert named in outcome.message
    assert signed_in_events(storage) == []


def test_an_email_attribute_naming_another_member_never_redirects_the_sign_in(
    service: SamlService, storage: Storage, idp: TestIdp
) -> None:
    """A response for the owner whose email attribute says the CEO signs in the owner."""
    active(service, idp)
    members = {m.user_name: m for m in Members(storage).all("acme")}
    outcome = service_sign_in(
        service, idp, "owner@acme.test", attributes={"email": ["ceo@acme.test"]}
    )
    assert isinstance(outcome, SignIn)
    assert outcome.member.id == members["owner@acme.test"].id
    assert signed_in_events(storage) == [members["owner@acme.test"].id]


@pytest.mark.parametrize("unknown_members", ["refuse", "create"])
def test_an_unknown_name_id_with_a_members_email_attribute_is_not_that_member(
    service: SamlService,
    storage: Storage,
    idp: TestIdp,
    unknown_members: Literal["refuse", "create"],
) -> None:
    """A stranger's NameID with the CEO's email attribute: refused, or created as the stranger."""
    active(service, idp)
    service.update_options("acme", unknown_members=unknown_members)
    ceo = next(m for m in Members(storage).all("acme") if m.user_name == "ceo@acme.test")
    outcome = service_sign_in(
        service, idp, "mallory@acme.test", attributes={"email": ["ceo@acme.test"]}
    )
    assert ceo.id not in signed_in_events(storage)
    if unknown_members == "refuse":
        assert isinstance(outcome, SignInFailure)
        assert outcome.finding.code == "member.unknown"
        assert "mallory@acme.test" in outcome.message
        return
    assert isinstance(outcome, SignIn)
    assert outcome.created
    assert outcome.member.user_name == "mallory@acme.test"
    # The attribute is kept off the new member: its emails are matching keys.
    assert outcome.member.primary_email == "mallory@acme.test"
