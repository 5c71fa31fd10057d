"""Lasso (the library behind Authentic2) as a real, independent IdP, through the whole SamlService.

Lasso's Python bindings exist only for the system's Python (Debian's
``python3-lasso`` for ``/usr/bin/python3``), so the IdP is a script run there
in a subprocess (:mod:`tests.saml.lasso_idp`); it is not imported here. The
binding is built against the system's libxml2 and xmlsec1 while lxml and
python-xmlsec in the test environment bring their own copies of libxml2;
two libxml2 builds in one process are the "libxml2 library version mismatch"
problem python3-saml already warns of, so even on the same CPython the
separate process is the sound choice. The app runs over HTTP beside it
(:mod:`tests.saml.interop`): the browser takes the app's redirect to the IdP,
Lasso answers it, and the browser posts Lasso's answer to the ACS.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pbidentity.domain import IdentityProvider
from pbidentity.saml import Authorized
from pbidentity.saml import SignIn
from pbidentity.saml import SignInFailure
from pbidentity.saml import SignInOutcome
from pbidentity.saml._response import SignInError
from pbidentity.saml._response import verify_response
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

SYSTEM_PYTHON = Path("/usr/bin/python3")
SCRIPT = Path(__file__).with_name("lasso_idp.py")
HOW_TO_INSTALL = (
    "the Lasso interoperability test runs Lasso's Python binding under the system's "
    "/usr/bin/python3, where it is not installed: apt-get install python3-lasso"
)


def _lasso_installed() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", "import lasso"], capture_output=True, check=False
    )
    return probe.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _lasso_installed(), reason=HOW_TO_INSTALL),
]

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
#: What Authentic2 configures Lasso with (its SAML signature method setting): RSA-SHA256.
AUTHENTIC2 = {"signature_method": "rsa-sha256"}
ATTRIBUTES = {"mail": [EMAIL], "givenName": [GIVEN_NAME], "sn": [FAMILY_NAME]}


class LassoIdp:
    """A Lasso IdP: its metadata, key and certificate, and the script that answers for it."""

    def __init__(self, app: InteropApp) -> None:
        self.app = app
        self.entity_id = "https://authentic2.idp.test/idp/saml2/metadata"
        self.sso_url = "https://authentic2.idp.test/idp/saml2/sso"
        self.test_idp = TestIdp(entity_id=self.entity_id, sso_url=self.sso_url)
        self.options: dict[str, Any] = {}
        #: The SP metadata Lasso knows; ``None``: what the app serves.
        self.sp_metadata: str | None = None
        self.metadata = self._run(
            command="metadata",
            entity_id=self.entity_id,
            sso_url=self.sso_url,
            certificate=self.test_idp.certificate_pem,
        )["metadata"]

    def _run(self, **request: Any) -> dict[str, Any]:
        answer = self.run(**request)
        assert "error" not in answer, answer["error"]
        return answer

    def run(self, **request: Any) -> dict[str, Any]:
        """Run the script on one request; its answer, which may be Lasso's error."""
        done = subprocess.run(
            [SYSTEM_PYTHON, "-I", SCRIPT],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def _signing(self) -> dict[str, Any]:
        return {
            "idp_metadata": self.metadata,
            "private_key": self.test_idp.private_key_pem.decode(),
            "certificate": self.test_idp.certificate_pem,
            "sp_metadata": self.sp_metadata or httpx.get(self.app.metadata_url).text,
            "name_id": EMAIL,
            "attributes": ATTRIBUTES,
            "options": self.options,
        }

    def answer(self, redirect: httpx.Response) -> HtmlForm:
        """Lasso's answer to the AuthnRequest the app's redirect carries: the form for the ACS."""
        assert redirect.is_redirect, (redirect.status_code, redirect.text[:2000])
        return self.answer_url(redirect.headers["location"])

    def answer_url(self, location: str) -> HtmlForm:
        """Lasso's answer to the AuthnRequest of an HTTP-Redirect URL."""
        assert location.startswith(self.sso_url + "?"), location
        return self._form(self._run(command="answer", url=location, **self._signing()))

    def refusal(self, location: str) -> str:
        """Lasso's error for an AuthnRequest it refuses."""
        answer = self.run(command="answer", url=location, **self._signing())
        assert "error" in answer, answer
        error: str = answer["error"]
        return error

    def initiate(self) -> HtmlForm:
        """Lasso's unsolicited answer for the app (an IdP-initiated sign-in)."""
        return self._form(
            self._run(command="initiate", sp_entity_id=self.app.sp.entity_id, **self._signing())
        )

    @staticmethod
    def _form(answer: dict[str, Any]) -> HtmlForm:
        fields = {"SAMLResponse": answer["saml_response"]}
        if answer["relay_state"]:
            fields["RelayState"] = answer["relay_state"]
        return HtmlForm(answer["url"], fields)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InteropApp]:
    """The app's SAML side over HTTP, workspace ``acme``, nothing configured."""
    with running_app(tmp_path) as running:
        yield running


@pytest.fixture
def lasso_idp(app: InteropApp) -> LassoIdp:
    """A Lasso IdP that knows the app from the SP metadata it serves."""
    return LassoIdp(app)


def _sign_in(
    app: InteropApp, idp: LassoIdp, browser: httpx.Client, start: str
) -> tuple[SignInOutcome, HtmlForm]:
    """Start at the app, let Lasso answer, post the answer to the ACS: (outcome, the form)."""
    form = idp.answer(browser.get(start, follow_redirects=False))
    assert form.action == app.sp.acs_url
    return app.last_outcome(post_form(browser, form)), form


def _save(app: InteropApp, idp: LassoIdp, **options: Any) -> None:
    saved = app.service.save_metadata_xml(
        SLUG, idp.metadata.encode(), unknown_members="create", **options
    )
    assert saved.saved, saved.report.render()


def test_the_validator_on_lasso_metadata(app: InteropApp, lasso_idp: LassoIdp) -> None:
    """The IdP metadata Lasso loads passes, with the SSO URL and certificate Lasso uses."""
    idp, report = app.service.check_metadata(SLUG, lasso_idp.metadata.encode())

    assert idp is not None
    assert report.ok, report.render()
    assert idp.entity_id == lasso_idp.entity_id
    assert idp.sso_url == lasso_idp.sso_url
    assert (
        idp.certificates == (lasso_idp.test_idp.certificate_pem.strip(),)
        or len(idp.certificates) == 1
    )
    # The app is served over plain http on loopback; the IdP's URLs are https.
    assert {f.code for f in report.warnings} == {"sp.dev_http"}


def test_lasso_defaults_sign_with_sha1_and_the_test_sign_in_says_so(
    app: InteropApp, lasso_idp: LassoIdp
) -> None:
    """Lasso's default RSA-SHA1 is refused at Save & authorize, saying why; nothing activates."""
    _save(app, lasso_idp)

    with app.browser() as browser:
        outcome, form = _sign_in(app, lasso_idp, browser, app.authorize_url)

    assert signatures(form.fields["SAMLResponse"]) == [
        Signature(signs="Response", signature_method=RSA_SHA1, digest_method=SHA1),
        Signature(signs="Assertion", signature_method=RSA_SHA1, digest_method=SHA1),
    ]
    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.purpose == "authorize"
    assert outcome.finding.code == "response.algorithm"
    assert RSA_SHA1 in outcome.finding.message
    assert "sign with RSA-SHA256" in outcome.finding.suggestion
    assert app.service.connections(SLUG).active is None


def test_save_authorize_and_sign_in_with_lasso(app: InteropApp, lasso_idp: LassoIdp) -> None:
    """Lasso as Authentic2 sets it up: the test sign-in, then an SP-initiated sign-in."""
    lasso_idp.options = dict(AUTHENTIC2)
    _save(app, lasso_idp)
    with app.browser() as browser:
        authorized, _ = _sign_in(app, lasso_idp, browser, app.authorize_url)

        assert isinstance(authorized, Authorized), authorized
        assert authorized.name_id == EMAIL
        assert app.service.connections(SLUG).active == authorized.connection

        signed_in, form = _sign_in(app, lasso_idp, browser, app.login_url + "?next=/reports")

    assert isinstance(signed_in, SignIn), signed_in
    assert signed_in.created
    assert not signed_in.idp_initiated
    assert signed_in.relay_state == "/reports"
    assert signed_in.member.attributes["name"] == {
        "givenName": GIVEN_NAME,
        "familyName": FAMILY_NAME,
    }
    # Lasso signs the response and the assertion, with the method it is given.
    assert signatures(form.fields["SAMLResponse"]) == [
        Signature(signs="Response", signature_method=RSA_SHA256, digest_method=SHA256),
        Signature(signs="Assertion", signature_method=RSA_SHA256, digest_method=SHA256),
    ]


def test_idp_initiated_sign_in_with_lasso(app: InteropApp, lasso_idp: LassoIdp) -> None:
    """Lasso's unsolicited response signs Ada in when the workspace allows it."""
    lasso_idp.options = dict(AUTHENTIC2)
    _save(app, lasso_idp, allow_idp_initiated=True)
    with app.browser() as browser:
        authorized, _ = _sign_in(app, lasso_idp, browser, app.authorize_url)
        assert isinstance(authorized, Authorized), authorized

    with app.browser() as browser:
        outcome = app.last_outcome(post_form(browser, lasso_idp.initiate()))

    assert isinstance(outcome, SignIn), outcome
    assert outcome.idp_initiated
    assert outcome.request_id is None
    assert outcome.name_id == EMAIL


def test_idp_initiated_sign_in_with_lasso_is_refused_by_default(
    app: InteropApp, lasso_idp: LassoIdp
) -> None:
    """Without allow_idp_initiated, Lasso's unsolicited response signs no one in."""
    lasso_idp.options = dict(AUTHENTIC2)
    _save(app, lasso_idp)
    with app.browser() as browser:
        authorized, _ = _sign_in(app, lasso_idp, browser, app.authorize_url)
        assert isinstance(authorized, Authorized), authorized

    with app.browser() as browser:
        outcome = app.last_outcome(post_form(browser, lasso_idp.initiate()))

    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.finding.code == "response.unsolicited"


# -- Signed AuthnRequests and encrypted assertions, protocol level -------------------
#
# What Lasso does with the SP's keys, one step at a time: the SP metadata publishing
# them (sp_metadata), a request signed as redirect_for signs it, or signed by
# another key, or not at all (which the app never sends), and the response read by
# verify_response. The whole SamlService follows below.

XMLENC = "http://www.w3.org/2001/04/xmlenc#"


def _keyed(
    app: InteropApp, lasso_idp: LassoIdp, *, signing: bool = False, encryption: bool = False
) -> IdentityProvider:
    lasso_idp.sp_metadata = sp_metadata_with_keys(
        app, sp_key(), signing=signing, encryption=encryption
    ).decode()
    return identity_provider(lasso_idp.metadata.encode())


def test_lasso_verifies_our_signed_authn_request(app: InteropApp, lasso_idp: LassoIdp) -> None:
    """Lasso answers our signed request, and refuses one signed by another key, or unsigned."""
    idp = _keyed(app, lasso_idp, signing=True)
    # Lasso's default: check the signature of a request from an SP whose metadata
    # says AuthnRequestsSigned="true".
    lasso_idp.options = dict(AUTHENTIC2)

    request_id, redirect = signed_request(app, idp, sp_key())
    saml_response = lasso_idp.answer_url(redirect.url).fields["SAMLResponse"]
    assertion = verify_response(
        saml_response, sp=app.sp, idp=idp, request_id=request_id, now=datetime.now(UTC)
    )
    assert assertion.name_id == EMAIL

    _, redirect = signed_request(app, idp, sp_key("another"))
    assert lasso_idp.refusal(redirect.url).startswith("DsInvalidSignatureError")
    _, redirect = signed_request(app, idp, None)
    # No SigAlg parameter at all.
    assert lasso_idp.refusal(redirect.url).startswith("DsInvalidSigalgError")


def test_lasso_encrypted_assertion_is_decrypted(app: InteropApp, lasso_idp: LassoIdp) -> None:
    """Lasso's encrypted assertion, with its default key transport (RSA-OAEP), is read."""
    idp = _keyed(app, lasso_idp, encryption=True)
    lasso_idp.options = {**AUTHENTIC2, "encrypt_assertion": True}

    request_id, redirect = signed_request(app, idp, None)
    saml_response = lasso_idp.answer_url(redirect.url).fields["SAMLResponse"]

    assert encryption(saml_response) == Encryption(
        content=f"{XMLENC}aes128-cbc", key_transport=f"{XMLENC}rsa-oaep-mgf1p"
    )
    assertion = verify_response(
        saml_response,
        sp=app.sp,
        idp=idp,
        request_id=request_id,
        now=datetime.now(UTC),
        decryption_keys=[sp_key()],
        require_encryption=True,
    )
    assert assertion.name_id == EMAIL
    assert assertion.attributes["givenName"] == (GIVEN_NAME,)


def test_lasso_rsa_1_5_key_transport_is_refused(app: InteropApp, lasso_idp: LassoIdp) -> None:
    """Lasso set to RSA PKCS#1 v1.5 key transport: refused, saying why and what to set."""
    idp = _keyed(app, lasso_idp, encryption=True)
    lasso_idp.options = {**AUTHENTIC2, "encrypt_assertion": True, "key_encryption": "pkcs1"}

    request_id, redirect = signed_request(app, idp, None)
    saml_response = lasso_idp.answer_url(redirect.url).fields["SAMLResponse"]

    assert encryption(saml_response) == Encryption(
        content=f"{XMLENC}aes128-cbc", key_transport=f"{XMLENC}rsa-1_5"
    )
    with pytest.raises(SignInError) as refused:
        verify_response(
            saml_response,
            sp=app.sp,
            idp=idp,
            request_id=request_id,
            now=datetime.now(UTC),
            decryption_keys=[sp_key()],
        )
    assert refused.value.code == "response.key_transport"
    assert "Bleichenbacher" in refused.value.finding.message


# -- Signed and encrypted through the whole SamlService ------------------------------


def _signed_and_encrypted(app: InteropApp, lasso_idp: LassoIdp, **options: Any) -> None:
    """Save Lasso's metadata, sign requests, require encryption; Lasso reads the new SP metadata."""
    _save(app, lasso_idp, **options)
    app.service.update_options(SLUG, sign_requests=True, assertion_encryption="require")
    sp_metadata = httpx.get(app.metadata_url).text
    assert 'AuthnRequestsSigned="true"' in sp_metadata
    assert '<md:KeyDescriptor use="encryption">' in sp_metadata


def _signed_redirect(browser: httpx.Client, start: str) -> httpx.Response:
    redirect = browser.get(start, follow_redirects=False)
    assert "&Signature=" in redirect.headers["location"], redirect.headers["location"]
    return redirect


def test_signed_requests_and_encrypted_assertions_with_lasso(
    app: InteropApp, lasso_idp: LassoIdp
) -> None:
    """Save & authorize, SP- and IdP-initiated sign-in: requests signed, assertions encrypted."""
    _signed_and_encrypted(app, lasso_idp, allow_idp_initiated=True)
    lasso_idp.options = {**AUTHENTIC2, "encrypt_assertion": True}

    with app.browser() as browser:
        form = lasso_idp.answer(_signed_redirect(browser, app.authorize_url))
        assert encryption(form.fields["SAMLResponse"]) == Encryption(
            content=f"{XMLENC}aes128-cbc", key_transport=f"{XMLENC}rsa-oaep-mgf1p"
        )
        authorized = app.last_outcome(post_form(browser, form))
        assert isinstance(authorized, Authorized), authorized

        form = lasso_idp.answer(_signed_redirect(browser, app.login_url))
        assert encryption(form.fields["SAMLResponse"]) is not None
        signed_in = app.last_outcome(post_form(browser, form))
        assert isinstance(signed_in, SignIn), signed_in
        assert signed_in.created

    with app.browser() as browser:
        form = lasso_idp.initiate()
        assert encryption(form.fields["SAMLResponse"]) is not None
        unsolicited = app.last_outcome(post_form(browser, form))
    assert isinstance(unsolicited, SignIn), unsolicited
    assert unsolicited.idp_initiated


def test_lasso_plaintext_assertion_is_refused_when_encryption_is_required(
    app: InteropApp, lasso_idp: LassoIdp
) -> None:
    """With encryption required, Lasso's plaintext assertion activates nothing."""
    _signed_and_encrypted(app, lasso_idp)
    lasso_idp.options = dict(AUTHENTIC2)

    with app.browser() as browser:
        form = lasso_idp.answer(_signed_redirect(browser, app.authorize_url))
        outcome = app.last_outcome(post_form(browser, form))

    assert encryption(form.fields["SAMLResponse"]) is None
    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.finding.code == "response.unencrypted"
    assert app.service.connections(SLUG).active is None
