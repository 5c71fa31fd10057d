"""pysaml2 as a real, independent IdP: it answers our AuthnRequest and verify_response accepts it.

Everything is made at test time: the IdP's key and certificate (the test
IdP's), our SP's metadata (python3-saml's builder, from the same settings
verify_response uses), the AuthnRequest (pbidentity's own, HTTP-Redirect), and
pysaml2's own configuration. pysaml2 signs with the ``xmlsec1`` program, told
to use RSA-SHA256 and SHA-256 (its default is still RSA-SHA1, which
verify_response refuses).

The second half runs the whole SamlService over HTTP (:mod:`tests.saml.interop`),
as the SimpleSAMLphp and Lasso tests do: pysaml2's own IdP metadata through
the validator and Save & authorize, then SP- and IdP-initiated sign-ins, and
pysaml2's defaults (nothing signed; RSA-SHA1 once told to sign) refused at
the test sign-in with the reason.
"""

from __future__ import annotations

import base64
import functools
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import httpx
import pytest
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from pbidentity.saml import Authorized
from pbidentity.saml import SignIn
from pbidentity.saml import SignInFailure
from pbidentity.saml import SignInOutcome
from pbidentity.saml._protocol import redirect_for
from pbidentity.saml._response import SignInError
from pbidentity.saml._response import settings_dict
from pbidentity.saml._response import verify_response
from pbidentity.saml._types import EMAIL_NAMEID
from pbidentity.saml._types import ServiceProvider
from tests.saml.idp import TestIdp
from tests.saml.interop import EMAIL
from tests.saml.interop import FAMILY_NAME
from tests.saml.interop import GIVEN_NAME
from tests.saml.interop import SLUG
from tests.saml.interop import Encryption
from tests.saml.interop import HtmlForm
from tests.saml.interop import InteropApp
from tests.saml.interop import Signature
from tests.saml.interop import encryption
from tests.saml.interop import identity_provider
from tests.saml.interop import post_form
from tests.saml.interop import running_app
from tests.saml.interop import signatures
from tests.saml.interop import signed_request
from tests.saml.interop import sp_key
from tests.saml.interop import sp_metadata_with_keys

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

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
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
    return _pysaml2_server(
        tmp_path_factory.mktemp("pysaml2"),
        test_idp,
        _sp_metadata(test_idp).encode(),
        # pysaml2 reads the algorithms of an IdP from its service section.
        service={
            "sign_assertion": True,
            "sign_response": False,
            "signing_algorithm": RSA_SHA256,
            "digest_algorithm": SHA256,
        },
    )


def _pysaml2_config(
    directory: Path,
    test_idp: TestIdp,
    sp_metadata: bytes,
    *,
    service: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> Any:
    """pysaml2's IdP configuration: the test IdP's key, our SP's metadata, and what is given.

    Everything left out is pysaml2's own default (no signing at all; RSA-SHA1
    and SHA-1 when asked to sign without an algorithm).
    """
    from saml2 import BINDING_HTTP_POST
    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAME_FORMAT_URI
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS

    key_file = directory / "idp.key"
    key_file.write_bytes(test_idp.private_key_pem)
    cert_file = directory / "idp.crt"
    cert_file.write_text(test_idp.certificate_pem)
    sp_file = directory / "sp.xml"
    sp_file.write_bytes(sp_metadata)

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
                    **(service or {}),
                }
            },
            "key_file": str(key_file),
            "cert_file": str(cert_file),
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "metadata": {"local": [str(sp_file)]},
            **(settings or {}),
        }
    )
    return config


def _pysaml2_server(directory: Path, test_idp: TestIdp, sp_metadata: bytes, **options: Any) -> Any:
    """A pysaml2 IdP server (see :func:`_pysaml2_config`)."""
    from saml2.server import Server

    return Server(config=_pysaml2_config(directory, test_idp, sp_metadata, **options))


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


# -- The whole SamlService over HTTP, with pysaml2's own metadata ------------------

#: What the SP's metadata asks for (WantAssertionsSigned) and the admin sets in
#: pysaml2: signed assertions, RSA-SHA256 and SHA-256.
AS_INSTRUCTED: dict[str, Any] = {
    "sign_assertion": True,
    "signing_algorithm": RSA_SHA256,
    "digest_algorithm": SHA256,
}


class Pysaml2Idp:
    """pysaml2 as the IdP of the app over HTTP: its own metadata, and its answers for Ada."""

    def __init__(
        self,
        app: InteropApp,
        directory: Path,
        *,
        sp_metadata: bytes | None = None,
        **options: Any,
    ) -> None:
        from saml2.metadata import entity_descriptor

        self.app = app
        self.test_idp = TestIdp(
            entity_id="https://pysaml2.idp.test/metadata", sso_url="https://pysaml2.idp.test/sso"
        )
        # The SP metadata the app serves, unless another is given.
        known = sp_metadata or httpx.get(app.metadata_url).content
        config = _pysaml2_config(directory, self.test_idp, known, **options)
        self.metadata = str(entity_descriptor(config)).encode()
        self.server = _pysaml2_server(directory, self.test_idp, known, **options)

    def _form(self, response: Any) -> HtmlForm:
        encoded = base64.b64encode(str(response).encode("utf-8")).decode("ascii")
        return HtmlForm(self.app.sp.acs_url, {"SAMLResponse": encoded})

    def answer(self, redirect: httpx.Response) -> HtmlForm:
        """pysaml2's answer to the AuthnRequest the app's redirect carries."""
        assert redirect.is_redirect, (redirect.status_code, redirect.text[:2000])
        return self.answer_url(redirect.headers["location"])

    def answer_url(self, location: str, **response: Any) -> HtmlForm:
        """pysaml2's answer to the AuthnRequest of an HTTP-Redirect URL (its signature checked)."""
        from saml2 import BINDING_HTTP_REDIRECT

        assert location.startswith(self.test_idp.sso_url + "?"), location
        query = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
        request = self.server.parse_authn_request(
            query["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=query.get("RelayState"),
            sigalg=query.get("SigAlg"),
            signature=query.get("Signature"),
        )
        return self._form(
            self.server.create_authn_response(
                **self._member(), **self.server.response_args(request.message), **response
            )
        )

    def initiate(self, **response: Any) -> HtmlForm:
        """pysaml2's unsolicited response for the app (an IdP-initiated sign-in)."""
        return self._form(
            self.server.create_authn_response(
                **self._member(),
                in_response_to=None,
                destination=self.app.sp.acs_url,
                sp_entity_id=self.app.sp.entity_id,
                **response,
            )
        )

    def _member(self) -> dict[str, Any]:
        from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
        from saml2.saml import NameID

        return {
            "identity": {"mail": [EMAIL], "givenName": [GIVEN_NAME], "sn": [FAMILY_NAME]},
            "userid": EMAIL,
            "name_id": NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=EMAIL),
            "authn": {"class_ref": PASSWORD, "authn_auth": self.test_idp.entity_id},
        }


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InteropApp]:
    """The app's SAML side over HTTP, workspace ``acme``, nothing configured."""
    with running_app(tmp_path) as running:
        yield running


def _sign_in(
    app: InteropApp, idp: Pysaml2Idp, browser: httpx.Client, start: str
) -> tuple[SignInOutcome, HtmlForm]:
    """Start at the app, let pysaml2 answer, post the answer to the ACS: (outcome, the form)."""
    form = idp.answer(browser.get(start, follow_redirects=False))
    return app.last_outcome(post_form(browser, form)), form


def _authorized(app: InteropApp, idp: Pysaml2Idp, **options: Any) -> None:
    saved = app.service.save_metadata_xml(SLUG, idp.metadata, unknown_members="create", **options)
    assert saved.saved, saved.report.render()
    with app.browser() as browser:
        outcome, _ = _sign_in(app, idp, browser, app.authorize_url)
    assert isinstance(outcome, Authorized), outcome


@pytest.mark.slow
def test_the_validator_on_pysaml2_metadata(app: InteropApp, tmp_path: Path) -> None:
    """The metadata pysaml2 generates for its IdP passes, with its SSO URL and certificate."""
    idp = Pysaml2Idp(app, tmp_path)

    provider, report = app.service.check_metadata(SLUG, idp.metadata)

    assert provider is not None
    assert report.ok, report.render()
    assert provider.entity_id == idp.test_idp.entity_id
    assert provider.sso_url == idp.test_idp.sso_url
    assert provider.sso_binding == "redirect"
    assert len(provider.certificates) == 1
    # The app is served over plain http on loopback; pysaml2's URLs are https.
    assert {f.code for f in report.warnings} == {"sp.dev_http"}


@pytest.mark.slow
def test_pysaml2_defaults_are_refused_at_the_test_sign_in(app: InteropApp, tmp_path: Path) -> None:
    """pysaml2 signs nothing by default, and with RSA-SHA1 when told to sign: both refused."""
    (tmp_path / "defaults").mkdir()
    (tmp_path / "sha1").mkdir()
    unsigned = Pysaml2Idp(app, tmp_path / "defaults")
    saved = app.service.save_metadata_xml(SLUG, unsigned.metadata, unknown_members="create")
    assert saved.saved, saved.report.render()
    with app.browser() as browser:
        outcome, form = _sign_in(app, unsigned, browser, app.authorize_url)

    assert signatures(form.fields["SAMLResponse"]) == []
    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.finding.code == "response.unsigned", outcome.report.render()

    sha1 = Pysaml2Idp(app, tmp_path / "sha1", service={"sign_assertion": True})
    with app.browser() as browser:
        outcome, form = _sign_in(app, sha1, browser, app.authorize_url)

    assert signatures(form.fields["SAMLResponse"]) == [
        Signature(signs="Assertion", signature_method=RSA_SHA1, digest_method=SHA1)
    ]
    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.finding.code == "response.algorithm"
    assert app.service.connections(SLUG).active is None


@pytest.mark.slow
def test_save_authorize_and_sign_in_with_pysaml2(app: InteropApp, tmp_path: Path) -> None:
    """pysaml2's own metadata, the test sign-in, then an SP-initiated sign-in creating Ada."""
    idp = Pysaml2Idp(app, tmp_path, service=AS_INSTRUCTED)
    saved = app.service.save_metadata_xml(SLUG, idp.metadata, unknown_members="create")
    assert saved.saved, saved.report.render()
    with app.browser() as browser:
        authorized, _ = _sign_in(app, idp, browser, app.authorize_url)

        assert isinstance(authorized, Authorized), authorized
        assert authorized.name_id == EMAIL
        assert app.service.connections(SLUG).active == authorized.connection

        signed_in, form = _sign_in(app, idp, browser, app.login_url)

    assert isinstance(signed_in, SignIn), signed_in
    assert signed_in.created
    assert not signed_in.idp_initiated
    # pysaml2's OID attribute names are recognised aliases of firstName and lastName.
    assert signed_in.member.attributes["name"] == {
        "givenName": GIVEN_NAME,
        "familyName": FAMILY_NAME,
    }
    assert signatures(form.fields["SAMLResponse"]) == [
        Signature(signs="Assertion", signature_method=RSA_SHA256, digest_method=SHA256)
    ]


@pytest.mark.slow
def test_idp_initiated_sign_in_with_pysaml2(app: InteropApp, tmp_path: Path) -> None:
    """pysaml2's unsolicited response signs Ada in when the workspace allows it."""
    idp = Pysaml2Idp(app, tmp_path, service=AS_INSTRUCTED)
    _authorized(app, idp, allow_idp_initiated=True)

    with app.browser() as browser:
        outcome = app.last_outcome(post_form(browser, idp.initiate()))

    assert isinstance(outcome, SignIn), outcome
    assert outcome.idp_initiated
    assert outcome.request_id is None
    assert outcome.name_id == EMAIL


@pytest.mark.slow
def test_idp_initiated_sign_in_with_pysaml2_is_refused_by_default(
    app: InteropApp, tmp_path: Path
) -> None:
    """Without allow_idp_initiated, pysaml2's unsolicited response signs no one in."""
    idp = Pysaml2Idp(app, tmp_path, service=AS_INSTRUCTED)
    _authorized(app, idp)

    with app.browser() as browser:
        outcome = app.last_outcome(post_form(browser, idp.initiate()))

    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.finding.code == "response.unsolicited"


# -- Signed AuthnRequests and encrypted assertions, protocol level -------------------
#
# What pysaml2 does with the SP's keys, one step at a time: the SP metadata
# publishing them (sp_metadata), a request signed as redirect_for signs it, or
# signed by another key, or not at all (which the app never sends), and the
# response read by verify_response. The whole SamlService follows below.

XMLENC = "http://www.w3.org/2001/04/xmlenc#"


@pytest.mark.slow
def test_pysaml2_verifies_our_signed_authn_request(app: InteropApp, tmp_path: Path) -> None:
    """pysaml2 wanting signed requests answers ours; another key's or an unsigned one it refuses."""
    from saml2.response import IncorrectlySigned

    idp = Pysaml2Idp(
        app,
        tmp_path,
        sp_metadata=sp_metadata_with_keys(app, sp_key(), signing=True),
        service={**AS_INSTRUCTED, "want_authn_requests_signed": True},
    )
    provider = identity_provider(idp.metadata)

    request_id, redirect = signed_request(app, provider, sp_key())
    saml_response = idp.answer_url(redirect.url).fields["SAMLResponse"]
    assertion = verify_response(
        saml_response, sp=app.sp, idp=provider, request_id=request_id, now=datetime.now(UTC)
    )
    assert assertion.name_id == EMAIL

    for key in (sp_key("another"), None):
        _, redirect = signed_request(app, provider, key)
        with pytest.raises(IncorrectlySigned):
            idp.answer_url(redirect.url)


@pytest.mark.slow
def test_pysaml2_encrypted_assertion_is_refused_for_its_triple_des(
    app: InteropApp, tmp_path: Path
) -> None:
    """pysaml2 7.5 encrypts with 3DES-CBC, and cannot be told otherwise: refused, saying why."""
    idp = Pysaml2Idp(
        app,
        tmp_path,
        sp_metadata=sp_metadata_with_keys(app, sp_key(), encryption=True),
        service=AS_INSTRUCTED,
    )
    provider = identity_provider(idp.metadata)

    request_id, redirect = signed_request(app, provider, None)
    saml_response = idp.answer_url(redirect.url, encrypt_assertion=True).fields["SAMLResponse"]

    assert encryption(saml_response) == Encryption(
        content=f"{XMLENC}tripledes-cbc", key_transport=f"{XMLENC}rsa-oaep-mgf1p"
    )
    with pytest.raises(SignInError) as refused:
        verify_response(
            saml_response,
            sp=app.sp,
            idp=provider,
            request_id=request_id,
            now=datetime.now(UTC),
            decryption_keys=[sp_key()],
        )
    assert refused.value.code == "response.encryption_algorithm"
    assert "tripledes-cbc" in refused.value.finding.message
    assert "AES-256-GCM" in refused.value.finding.suggestion


# -- Signed and encrypted through the whole SamlService ------------------------------


def _with_options(app: InteropApp, tmp_path: Path, **options: Any) -> Pysaml2Idp:
    """Save pysaml2's metadata, set ``options``; pysaml2 then reads the new SP metadata."""
    (tmp_path / "first").mkdir()
    (tmp_path / "again").mkdir()
    first = Pysaml2Idp(app, tmp_path / "first", service=AS_INSTRUCTED)
    saved = app.service.save_metadata_xml(
        SLUG, first.metadata, unknown_members="create", allow_idp_initiated=True
    )
    assert saved.saved, saved.report.render()
    app.service.update_options(SLUG, **options)
    return Pysaml2Idp(
        app,
        tmp_path / "again",
        service={**AS_INSTRUCTED, "want_authn_requests_signed": True},
    )


@pytest.mark.slow
def test_signed_requests_with_pysaml2(app: InteropApp, tmp_path: Path) -> None:
    """pysaml2 wanting signed requests: Save & authorize, SP- and IdP-initiated sign-in."""
    idp = _with_options(app, tmp_path, sign_requests=True, assertion_encryption="accept")

    with app.browser() as browser:
        redirect = browser.get(app.authorize_url, follow_redirects=False)
        assert "&Signature=" in redirect.headers["location"]
        authorized = app.last_outcome(post_form(browser, idp.answer(redirect)))
        assert isinstance(authorized, Authorized), authorized

        signed_in, _ = _sign_in(app, idp, browser, app.login_url)
        assert isinstance(signed_in, SignIn), signed_in

    with app.browser() as browser:
        unsolicited = app.last_outcome(post_form(browser, idp.initiate()))
    assert isinstance(unsolicited, SignIn), unsolicited
    assert unsolicited.idp_initiated


@pytest.mark.slow
def test_pysaml2_encryption_is_refused_through_the_service(app: InteropApp, tmp_path: Path) -> None:
    """Encryption required: pysaml2's 3DES assertion fails the test sign-in, saying what to set."""
    idp = _with_options(app, tmp_path, sign_requests=True, assertion_encryption="require")

    with app.browser() as browser:
        redirect = browser.get(app.authorize_url, follow_redirects=False)
        location = redirect.headers["location"]
        form = idp.answer_url(location, encrypt_assertion=True)
        outcome = app.last_outcome(post_form(browser, form))

    assert encryption(form.fields["SAMLResponse"]) == Encryption(
        content=f"{XMLENC}tripledes-cbc", key_transport=f"{XMLENC}rsa-oaep-mgf1p"
    )
    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.finding.code == "response.encryption_algorithm"
    assert app.service.connections(SLUG).active is None


@pytest.mark.slow
def test_signed_requests_and_aes_encrypted_assertions_with_pysaml2(
    app: InteropApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pysaml2 told to encrypt with AES-256-CBC: Save & authorize and sign-ins, all encrypted."""
    import saml2.entity
    from saml2.sigver import pre_encryption_part

    idp = _with_options(app, tmp_path, sign_requests=True, assertion_encryption="require")
    # pysaml2 7.5 has no setting for it: the algorithm its template names, and
    # the session key it asks xmlsec1 for.
    monkeypatch.setattr(
        saml2.entity,
        "pre_encryption_part",
        functools.partial(pre_encryption_part, msg_enc=f"{XMLENC}aes256-cbc"),
    )
    monkeypatch.setattr(
        idp.server.sec,
        "encrypt_assertion",
        functools.partial(idp.server.sec.encrypt_assertion, key_type="aes-256"),
    )

    with app.browser() as browser:
        for start in (app.authorize_url, app.login_url):
            redirect = browser.get(start, follow_redirects=False)
            form = idp.answer_url(redirect.headers["location"], encrypt_assertion=True)
            assert encryption(form.fields["SAMLResponse"]) == Encryption(
                content=f"{XMLENC}aes256-cbc", key_transport=f"{XMLENC}rsa-oaep-mgf1p"
            )
            outcome = app.last_outcome(post_form(browser, form))
            assert isinstance(outcome, Authorized if start == app.authorize_url else SignIn), (
                outcome
            )

    with app.browser() as browser:
        unsolicited = app.last_outcome(post_form(browser, idp.initiate(encrypt_assertion=True)))
    assert isinstance(unsolicited, SignIn), unsolicited
    assert unsolicited.idp_initiated
