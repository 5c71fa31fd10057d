"""pysaml2 as a real, independent IdP: it answers our AuthnRequest and verify_response accepts it.

Everything is made at test time: the IdP's key and certificate (the test
IdP's), our SP's metadata (python3-saml's builder, from the same settings
verify_response uses), the AuthnRequest (pbidentity's own, HTTP-Redirect), and
pysaml2's own configuration. pysaml2 signs with the ``xmlsec1`` program, told
to use RSA-SHA256 and SHA-256 (its default is still RSA-SHA1, which
verify_response refuses).
"""

from __future__ import annotations

import base64
import secrets
import shutil
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from pbidentity.saml._protocol import redirect_for
from pbidentity.saml._response import SignInError
from pbidentity.saml._response import settings_dict
from pbidentity.saml._response import verify_response
from pbidentity.saml._types import EMAIL_NAMEID
from pbidentity.saml._types import ServiceProvider
from tests.saml.idp import TestIdp

XMLSEC1 = shutil.which("xmlsec1")

pytestmark = [
    pytest.mark.skipif(
        XMLSEC1 is None,
        reason="pysaml2 signs with the xmlsec1 program, which is not on PATH: install it "
        "(Debian, Ubuntu: apt-get install xmlsec1; Fedora: dnf install xmlsec1; "
        "macOS: brew install libxmlsec1)",
    ),
    # pysaml2 7.5 still imports the CFB cipher mode from its old place.
    pytest.mark.filterwarnings(
        "ignore:CFB has been moved:cryptography.utils.CryptographyDeprecationWarning"
    ),
]

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
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
def server(test_idp: TestIdp, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A pysaml2 IdP server that knows our SP from its metadata."""
    from saml2 import BINDING_HTTP_POST
    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAME_FORMAT_URI
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
    from saml2.server import Server

    directory = tmp_path_factory.mktemp("pysaml2")
    key_file = directory / "idp.key"
    key_file.write_bytes(test_idp.private_key_pem)
    cert_file = directory / "idp.crt"
    cert_file.write_text(test_idp.certificate_pem)
    sp_metadata = directory / "sp.xml"
    sp_metadata.write_text(_sp_metadata(test_idp))

    config = IdPConfig()
    config.load(
        {
            "entityid": test_idp.entity_id,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            (test_idp.sso_url, BINDING_HTTP_REDIRECT),
                            (test_idp.sso_url, BINDING_HTTP_POST),
                        ]
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
                    "sign_response": False,
                    "want_authn_requests_signed": False,
                }
            },
            "key_file": str(key_file),
            "cert_file": str(cert_file),
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "metadata": {"local": [str(sp_metadata)]},
            "signing_algorithm": RSA_SHA256,
            "digest_algorithm": SHA256,
        }
    )
    return Server(config=config)


def _sp_metadata(test_idp: TestIdp) -> str:
    """Our SP's metadata, as python3-saml builds it from verify_response's settings."""
    settings = OneLogin_Saml2_Settings(settings_dict(SP, test_idp.identity_provider()))
    return str(settings.get_sp_metadata())


def _authn_request(test_idp: TestIdp) -> tuple[str, str]:
    """(request ID, deflated base64 SAMLRequest) of pbidentity's own HTTP-Redirect sign-in."""
    # An XML NCName, as the ids SamlService signs are (it must not start with a digit).
    request_id = "id" + secrets.token_hex(20)
    redirect = redirect_for(
        request_id=request_id,
        sp=SP,
        idp=test_idp.identity_provider(sso_binding="redirect"),
        now=datetime.now(UTC),
        relay_state=None,
    )
    assert redirect.binding == "redirect"
    (saml_request,) = parse_qs(urlsplit(redirect.url).query)["SAMLRequest"]
    return request_id, saml_request


def _respond(server: Any, test_idp: TestIdp, *, sign_response: bool = False) -> tuple[str, str]:
    """(request ID, SAMLResponse) for Ada, pysaml2 answering our AuthnRequest."""
    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
    from saml2.saml import NameID

    request_id, saml_request = _authn_request(test_idp)
    request = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
    arguments = server.response_args(request.message)
    assert arguments["in_response_to"] == request_id
    assert arguments["destination"] == SP.acs_url
    response = server.create_authn_response(
        {"mail": ["ada@example.com"], "givenName": ["Ada"], "sn": ["Lovelace"]},
        userid="ada@example.com",
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="ada@example.com"),
        authn={"class_ref": PASSWORD, "authn_auth": test_idp.entity_id},
        sign_assertion=True,
        sign_response=sign_response,
        sign_alg=RSA_SHA256,
        digest_alg=SHA256,
        **arguments,
    )
    return request_id, base64.b64encode(str(response).encode("utf-8")).decode("ascii")


def test_a_pysaml2_response_to_our_request_is_accepted(server: Any, test_idp: TestIdp) -> None:
    request_id, saml_response = _respond(server, test_idp)

    assertion = verify_response(
        saml_response,
        sp=SP,
        idp=test_idp.identity_provider(),
        request_id=request_id,
        now=datetime.now(UTC),
    )

    assert assertion.name_id == "ada@example.com"
    assert assertion.name_id_format == EMAIL_NAMEID
    assert assertion.in_response_to == request_id
    assert assertion.issuer == test_idp.entity_id
    assert assertion.signed_by == 0
    assert abs(assertion.clock_offset) < 60
    # pysaml2's converters send the attributes under their OID names
    # (NAME_FORMAT_URI): givenName and sn, not firstName and lastName.
    assert assertion.attributes == {
        "urn:oid:0.9.2342.19200300.100.1.3": ("ada@example.com",),
        "urn:oid:2.5.4.42": ("Ada",),
        "urn:oid:2.5.4.4": ("Lovelace",),
    }


def test_a_pysaml2_response_signed_twice_is_accepted(server: Any, test_idp: TestIdp) -> None:
    request_id, saml_response = _respond(server, test_idp, sign_response=True)

    assertion = verify_response(
        saml_response,
        sp=SP,
        idp=test_idp.identity_provider(),
        request_id=request_id,
        now=datetime.now(UTC),
    )

    assert assertion.name_id == "ada@example.com"


def test_a_pysaml2_response_to_another_request_is_refused(server: Any, test_idp: TestIdp) -> None:
    _, saml_response = _respond(server, test_idp)
    other_request, _ = _authn_request(test_idp)

    with pytest.raises(SignInError) as caught:
        verify_response(
            saml_response,
            sp=SP,
            idp=test_idp.identity_provider(),
            request_id=other_request,
            now=datetime.now(UTC),
        )

    assert caught.value.code == "response.in_response_to"


def test_our_metadata_asks_for_signed_assertions(test_idp: TestIdp) -> None:
    metadata = _sp_metadata(test_idp)

    assert 'WantAssertionsSigned="true"' in metadata
    assert SP.acs_url in metadata
    assert Path(XMLSEC1 or "").name == "xmlsec1"


def _pysaml2_answer(server: Any, redirect_url: str) -> str:
    """pysaml2 reads the AuthnRequest our redirect carries and answers it for Ada."""
    from urllib.parse import parse_qs
    from urllib.parse import urlsplit

    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
    from saml2.saml import NameID

    saml_request = parse_qs(urlsplit(redirect_url).query)["SAMLRequest"][0]
    request = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
    arguments = server.response_args(request.message)
    response = server.create_authn_response(
        {"mail": ["ada@example.com"], "givenName": ["Ada"], "sn": ["Lovelace"]},
        userid="ada@example.com",
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="ada@example.com"),
        authn={"class_ref": PASSWORD, "authn_auth": server.config.entityid},
        sign_assertion=True,
        sign_alg=RSA_SHA256,
        digest_alg=SHA256,
        **arguments,
    )
    return base64.b64encode(str(response).encode("utf-8")).decode("ascii")


def test_save_authorize_and_sign_in_through_the_service_with_pysaml2(
    server: Any, test_idp: TestIdp
) -> None:
    """The whole flow: metadata import, our AuthnRequest, pysaml2's answer, the ACS decision."""
    from pbidentity.admin import Admin
    from pbidentity.saml import Authorized
    from pbidentity.saml import SamlConfig
    from pbidentity.saml import SamlService
    from pbidentity.saml import SignIn
    from pbidentity.storage import open_storage

    storage = open_storage("memory://")
    Admin(storage).create_tenant("acme", "Acme")
    service = SamlService(storage, SamlConfig(public_url="https://app.example"))
    assert service.service_provider("acme") == SP  # the SP pysaml2 knows from its metadata
    saved = service.save_metadata_xml(
        "acme", test_idp.metadata_xml(), unknown_members="create", actor="test"
    )
    assert saved.saved, saved.report.render()
    authorized = service.consume(
        "acme", _pysaml2_answer(server, service.begin_authorize("acme").url)
    )
    assert isinstance(authorized, Authorized), authorized
    signed_in = service.consume("acme", _pysaml2_answer(server, service.begin_sign_in("acme").url))
    assert isinstance(signed_in, SignIn), signed_in
    assert signed_in.created
    # pysaml2's OID attribute names are recognised aliases of firstName and lastName.
    assert signed_in.member.attributes["name"] == {"givenName": "Ada", "familyName": "Lovelace"}
