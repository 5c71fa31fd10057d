"""Signed AuthnRequests and the SP metadata that publishes the SP's keys.

Signatures are checked as an IdP checks them, by python3-saml's own
verification (``validate_binary_sign`` for the Redirect binding's query
string, ``validate_sign`` for the POST binding's enveloped signature), never
by the code that made them.
"""

from __future__ import annotations

import base64
import zlib
from datetime import UTC
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import unquote_plus
from urllib.parse import urlsplit

import onelogin.saml2
import pytest
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from pbidentity.saml._keys import SpKey
from pbidentity.saml._keys import generate_sp_key
from pbidentity.saml._protocol import RSA_SHA256
from pbidentity.saml._protocol import redirect_for
from pbidentity.saml._protocol import sp_metadata
from pbidentity.saml._types import ServiceProvider
from tests.saml.idp import NS
from tests.saml.idp import TestIdp

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SCHEMAS = Path(onelogin.saml2.__file__).parent / "schemas"
MD = NS["md"]
DS = NS["ds"]
SP = ServiceProvider(
    entity_id="https://app.example/saml/acme/metadata",
    acs_url="https://app.example/saml/acme/acs",
    metadata_url="https://app.example/saml/acme/metadata",
    login_url="https://app.example/saml/acme/login",
)


@pytest.fixture(scope="module")
def key() -> SpKey:
    return generate_sp_key("app.example signing", now=NOW)


@pytest.fixture(scope="module")
def next_key() -> SpKey:
    return generate_sp_key("app.example next", now=NOW)


def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def _signed_part(url: str) -> tuple[str, bytes]:
    """The exact query string an IdP verifies (up to SigAlg) and the decoded signature."""
    query = urlsplit(url).query
    start = query.index("SAMLRequest=")
    signed, _, signature = query[start:].partition("&Signature=")
    return signed, base64.b64decode(unquote_plus(signature))


@pytest.mark.parametrize("relay_state", [None, "/projects/42?tab=members&x=a b"])
def test_a_redirect_request_is_signed_over_the_exact_query_string(
    key: SpKey, relay_state: str | None
) -> None:
    """SigAlg and Signature follow SAMLRequest (and RelayState); python3-saml verifies them."""
    idp = TestIdp().identity_provider(sso_binding="redirect")
    redirect = redirect_for(
        request_id="_req-1", sp=SP, idp=idp, now=NOW, relay_state=relay_state, signing_key=key
    )
    params = parse_qs(urlsplit(redirect.url).query)
    assert params["SigAlg"] == [RSA_SHA256]
    assert params.get("RelayState") == ([relay_state] if relay_state else None)
    signed, signature = _signed_part(redirect.url)
    assert signed.endswith(
        "&SigAlg=" + "http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256"
    )

    assert OneLogin_Saml2_Utils.validate_binary_sign(
        signed, signature, key.certificate_pem, RSA_SHA256
    )
    tampered = signed.replace("SAMLRequest=", "SAMLRequest=x", 1)
    assert not OneLogin_Saml2_Utils.validate_binary_sign(
        tampered, signature, key.certificate_pem, RSA_SHA256
    )


def test_a_redirect_to_an_sso_url_with_a_query_signs_only_the_saml_parameters(
    key: SpKey,
) -> None:
    """An IdP URL's own parameters (Entra's ?whr=) stay in front and outside the signature."""
    idp = TestIdp(sso_url="https://idp.test/sso?tenant=acme").identity_provider(
        sso_binding="redirect"
    )
    redirect = redirect_for(
        request_id="_req-2", sp=SP, idp=idp, now=NOW, relay_state=None, signing_key=key
    )
    assert urlsplit(redirect.url).query.startswith("tenant=acme&SAMLRequest=")
    signed, signature = _signed_part(redirect.url)

    assert OneLogin_Saml2_Utils.validate_binary_sign(
        signed, signature, key.certificate_pem, RSA_SHA256
    )


def test_an_unsigned_redirect_request_carries_no_signature() -> None:
    """Without a signing key nothing changes: no SigAlg, no Signature."""
    idp = TestIdp().identity_provider(sso_binding="redirect")
    redirect = redirect_for(request_id="_req-3", sp=SP, idp=idp, now=NOW, relay_state=None)

    assert "SigAlg" not in redirect.url
    assert "Signature" not in redirect.url


def test_a_post_request_carries_an_enveloped_signature_an_idp_verifies(key: SpKey) -> None:
    """The POST binding's request is signed inside: schema-valid, verified, tamper-evident."""
    idp = TestIdp().identity_provider(sso_binding="post")
    redirect = redirect_for(
        request_id="_req-4", sp=SP, idp=idp, now=NOW, relay_state="/home", signing_key=key
    )
    xml = base64.b64decode(dict(redirect.form)["SAMLRequest"])
    root = etree.fromstring(xml)
    signature = root.find(f"{{{DS}}}Signature")
    assert signature is not None
    assert signature.getprevious().tag == f"{{{NS['saml']}}}Issuer"
    assert signature.find(f".//{{{DS}}}SignatureMethod").get("Algorithm") == RSA_SHA256
    assert _schema("saml-schema-protocol-2.0.xsd").validate(root)

    where = "/samlp:AuthnRequest/ds:Signature"
    assert OneLogin_Saml2_Utils.validate_sign(
        xml, cert=key.certificate_pem, xpath=where, raise_exceptions=True
    )
    tampered = xml.replace(b"https://app.example/saml/acme/acs", b"https://evil.example/acs")
    assert not OneLogin_Saml2_Utils.validate_sign(tampered, cert=key.certificate_pem, xpath=where)


def test_a_signed_redirect_request_still_inflates_to_the_same_request(key: SpKey) -> None:
    """Signing changes the query string only: the AuthnRequest itself stays unsigned inside."""
    idp = TestIdp().identity_provider(sso_binding="redirect")
    redirect = redirect_for(
        request_id="_req-5", sp=SP, idp=idp, now=NOW, relay_state=None, signing_key=key
    )
    value = parse_qs(urlsplit(redirect.url).query)["SAMLRequest"][0]
    xml = zlib.decompress(base64.b64decode(value), -15)

    assert etree.fromstring(xml).get("ID") == "_req-5"
    assert b"Signature" not in xml


# --- metadata ----------------------------------------------------------------------------------


def test_metadata_publishes_every_key_and_says_requests_are_signed(
    key: SpKey, next_key: SpKey
) -> None:
    """A rollover lists both keys of each use; the document is valid SAML metadata."""
    document = sp_metadata(SP, signing_keys=(key, next_key), encryption_keys=(next_key, key))
    root = etree.fromstring(document)
    assert _schema("saml-schema-metadata-2.0.xsd").validate(root)
    descriptor = root.find(f"{{{MD}}}SPSSODescriptor")
    assert descriptor.get("AuthnRequestsSigned") == "true"

    published = [
        (d.get("use"), d.find(f".//{{{DS}}}X509Certificate").text)
        for d in descriptor.iterfind(f"{{{MD}}}KeyDescriptor")
    ]

    assert published == [
        ("signing", key.certificate_body),
        ("signing", next_key.certificate_body),
        ("encryption", next_key.certificate_body),
        ("encryption", key.certificate_body),
    ]
    methods = [
        m.get("Algorithm")
        for m in descriptor.find(f"{{{MD}}}KeyDescriptor[@use='encryption']").iterfind(
            f"{{{MD}}}EncryptionMethod"
        )
    ]
    assert methods[0] == "http://www.w3.org/2009/xmlenc11#aes256-gcm"
    assert "http://www.w3.org/2001/04/xmlenc#rsa-1_5" not in methods


def test_metadata_without_keys_is_unchanged() -> None:
    """No key: no KeyDescriptor, AuthnRequestsSigned false, still schema-valid."""
    root = etree.fromstring(sp_metadata(SP))

    assert _schema("saml-schema-metadata-2.0.xsd").validate(root)
    assert root.find(f".//{{{MD}}}KeyDescriptor") is None
    assert root.find(f"{{{MD}}}SPSSODescriptor").get("AuthnRequestsSigned") == "false"


def test_metadata_never_contains_a_private_key(key: SpKey) -> None:
    """Only certificates are published."""
    document = sp_metadata(SP, signing_keys=(key,), encryption_keys=(key,))

    assert b"PRIVATE" not in document
    assert key.private_key_pem.splitlines()[1].encode() not in document
