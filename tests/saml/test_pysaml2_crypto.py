"""pysaml2 as an independent IdP for the SP's keys: it checks our signed requests, encrypts to us.

pysaml2 reads pbidentity's SP metadata (both KeyDescriptors), verifies our
signed HTTP-Redirect AuthnRequest with the signing certificate it lists, and
encrypts the signed assertion to the encryption certificate with the
``xmlsec1`` program. pysaml2 7.5 encrypts with Triple-DES and no setting
changes that: its default is refused with a finding naming what is
accepted, and the accepted case tells pysaml2 to use AES, as an admin would
choose the algorithm in any other IdP.
"""

from __future__ import annotations

import base64
import secrets
import shutil
from datetime import UTC
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from pbidentity.saml._keys import SpKey
from pbidentity.saml._keys import generate_sp_key
from pbidentity.saml._protocol import redirect_for
from pbidentity.saml._protocol import sp_metadata
from pbidentity.saml._response import Assertion
from pbidentity.saml._response import SignInError
from pbidentity.saml._response import verify_response
from pbidentity.saml._types import ServiceProvider
from tests.saml.idp import TestIdp

XMLSEC1 = shutil.which("xmlsec1")

pytestmark = [
    pytest.mark.skipif(
        XMLSEC1 is None,
        reason="pysaml2 signs and encrypts with the xmlsec1 program, which is not on PATH: "
        "install it (Debian, Ubuntu: apt-get install xmlsec1)",
    ),
    # pysaml2 7.5 still imports the CFB cipher mode from its old place.
    pytest.mark.filterwarnings(
        "ignore:CFB has been moved:cryptography.utils.CryptographyDeprecationWarning"
    ),
]

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
SP = ServiceProvider(
    entity_id="https://app.example/saml/acme/metadata",
    acs_url="https://app.example/saml/acme/acs",
    metadata_url="https://app.example/saml/acme/metadata",
    login_url="https://app.example/saml/acme/login",
)


@pytest.fixture(scope="module")
def test_idp() -> TestIdp:
    return TestIdp(
        entity_id="https://pysaml2.idp.test/metadata", sso_url="https://pysaml2.idp.test/sso"
    )


@pytest.fixture(scope="module")
def keys() -> tuple[SpKey, SpKey]:
    """(encryption, signing) keys of the SP."""
    return generate_sp_key("app.example encryption"), generate_sp_key("app.example signing")


@pytest.fixture(scope="module")
def server(
    test_idp: TestIdp, keys: tuple[SpKey, SpKey], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """A pysaml2 IdP that knows our SP from pbidentity's metadata and wants signed requests."""
    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAME_FORMAT_URI
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
    from saml2.server import Server

    encryption, signing = keys
    directory = tmp_path_factory.mktemp("pysaml2-crypto")
    (directory / "idp.key").write_bytes(test_idp.private_key_pem)
    (directory / "idp.crt").write_text(test_idp.certificate_pem)
    metadata = sp_metadata(SP, signing_keys=(signing,), encryption_keys=(encryption,))
    (directory / "sp.xml").write_bytes(metadata)
    config = IdPConfig()
    config.load(
        {
            "entityid": test_idp.entity_id,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(test_idp.sso_url, BINDING_HTTP_REDIRECT)]
                    },
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "name_form": NAME_FORMAT_URI,
                            "attribute_restrictions": None,
                        }
                    },
                    "sign_assertion": True,
                    "want_authn_requests_signed": True,
                }
            },
            "key_file": str(directory / "idp.key"),
            "cert_file": str(directory / "idp.crt"),
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "metadata": {"local": [str(directory / "sp.xml")]},
            "signing_algorithm": RSA_SHA256,
            "digest_algorithm": SHA256,
        }
    )
    return Server(config=config)


def signed_request(test_idp: TestIdp, signing: SpKey) -> tuple[str, dict[str, str]]:
    """(request ID, query parameters) of pbidentity's signed HTTP-Redirect AuthnRequest."""
    request_id = "id" + secrets.token_hex(20)
    redirect = redirect_for(
        request_id=request_id,
        sp=SP,
        idp=test_idp.identity_provider(sso_binding="redirect"),
        now=datetime.now(UTC),
        relay_state="/projects/7",
        signing_key=signing,
    )
    query = {name: values[0] for name, values in parse_qs(urlsplit(redirect.url).query).items()}
    return request_id, query


def parse(server: Any, query: dict[str, str]) -> Any:
    """pysaml2 reading the request, checking its signature as an IdP that wants signed requests."""
    from saml2 import BINDING_HTTP_REDIRECT

    return server.parse_authn_request(
        query["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=query.get("RelayState"),
        sigalg=query.get("SigAlg"),
        signature=query.get("Signature"),
    )


@pytest.fixture
def aes(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """pysaml2 encrypting with AES-256-CBC instead of its built-in Triple-DES.

    Two places to change: the algorithm its template names, and the session
    key it asks xmlsec1 for (``--session-key des-192`` otherwise).
    """
    import saml2.entity
    from saml2.sigver import pre_encryption_part

    monkeypatch.setattr(
        saml2.entity, "pre_encryption_part", partial(pre_encryption_part, msg_enc=AES256_CBC)
    )
    monkeypatch.setattr(
        server.sec, "encrypt_assertion", partial(server.sec.encrypt_assertion, key_type="aes-256")
    )


def respond(server: Any, test_idp: TestIdp, keys: tuple[SpKey, SpKey]) -> tuple[str, str]:
    """(request ID, SAMLResponse): pysaml2's encrypted answer to our signed request."""
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
    from saml2.saml import NameID

    request_id, query = signed_request(test_idp, keys[1])
    request = parse(server, query)
    response = server.create_authn_response(
        {"mail": ["ada@example.com"], "givenName": ["Ada"]},
        userid="ada@example.com",
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="ada@example.com"),
        authn={"class_ref": PASSWORD, "authn_auth": test_idp.entity_id},
        sign_assertion=True,
        sign_alg=RSA_SHA256,
        digest_alg=SHA256,
        encrypt_assertion=True,
        **server.response_args(request.message),
    )
    return request_id, base64.b64encode(str(response).encode("utf-8")).decode("ascii")


def verify(value: str, request_id: str, test_idp: TestIdp, keys: tuple[SpKey, SpKey]) -> Assertion:
    return verify_response(
        value,
        sp=SP,
        idp=test_idp.identity_provider(),
        request_id=request_id,
        now=datetime.now(UTC),
        decryption_keys=(keys[0],),
        require_encryption=True,
    )


def test_pysaml2_verifies_our_signed_redirect_request(
    server: Any, test_idp: TestIdp, keys: tuple[SpKey, SpKey]
) -> None:
    """The signature pysaml2 checks with our metadata's signing certificate; a changed one fails."""
    request_id, query = signed_request(test_idp, keys[1])
    assert parse(server, query).message.id == request_id

    forged = dict(query, RelayState="/admin")
    with pytest.raises(Exception, match="not signed correctly"):
        parse(server, forged)


def test_an_assertion_pysaml2_encrypts_with_aes_is_decrypted_and_verified(
    server: Any, test_idp: TestIdp, keys: tuple[SpKey, SpKey], aes: None
) -> None:
    """pysaml2 (xmlsec1) encrypts to our metadata's encryption certificate; the SP decrypts."""
    request_id, value = respond(server, test_idp, keys)
    assert b"EncryptedAssertion" in base64.b64decode(value)

    assertion = verify(value, request_id, test_idp, keys)

    assert assertion.name_id == "ada@example.com"
    assert assertion.in_response_to == request_id


def test_pysaml2s_triple_des_is_refused_saying_what_to_choose(
    server: Any, test_idp: TestIdp, keys: tuple[SpKey, SpKey]
) -> None:
    """pysaml2's built-in Triple-DES is not AES: refused before any decryption, naming AES."""
    request_id, value = respond(server, test_idp, keys)

    with pytest.raises(SignInError) as caught:
        verify(value, request_id, test_idp, keys)

    assert caught.value.code == "response.encryption_algorithm"
    assert "tripledes-cbc" in caught.value.finding.message
    assert "AES-256-GCM" in caught.value.finding.suggestion
