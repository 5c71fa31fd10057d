"""SimpleSAMLphp as a real, independent IdP, through the whole SamlService over HTTP.

Debian's simplesamlphp package runs under ``php -S`` (:mod:`tests.saml.simplesamlphp`)
with the test IdP's key and its own signing defaults; pbidentity's app runs
beside it (:mod:`tests.saml.interop`). The admin saves SimpleSAMLphp's
metadata URL and authorizes it with a test sign-in; a member then signs in
from the app and from the IdP, each time through SimpleSAMLphp's login form
and the form it posts back to the ACS, as a browser does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

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
from tests.saml.interop import html_forms
from tests.saml.interop import identity_provider
from tests.saml.interop import post_form
from tests.saml.interop import running_app
from tests.saml.interop import signatures
from tests.saml.interop import signed_request
from tests.saml.interop import sp_key
from tests.saml.interop import sp_metadata_with_keys
from tests.saml.simplesamlphp import HOW_TO_INSTALL
from tests.saml.simplesamlphp import PASSWORD
from tests.saml.simplesamlphp import USERNAME
from tests.saml.simplesamlphp import SimpleSamlPhp
from tests.saml.simplesamlphp import available
from tests.saml.simplesamlphp import running_simplesamlphp

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason=HOW_TO_INSTALL),
]

EMAIL_NAMEID = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
#: What the app's instructions tell the IdP's admin to set: the email as the NameID.
AS_INSTRUCTED = {"NameIDFormat": EMAIL_NAMEID}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InteropApp]:
    """The app's SAML side over HTTP, workspace ``acme``, nothing configured."""
    (tmp_path / "app").mkdir()
    with running_app(tmp_path / "app") as running:
        yield running


@pytest.fixture
def simplesamlphp(app: InteropApp, tmp_path: Path) -> Iterator[SimpleSamlPhp]:
    """SimpleSAMLphp with its defaults, knowing the app from the SP metadata it serves."""
    test_idp = TestIdp(entity_id="https://simplesamlphp.idp.test", sso_url="https://unused.test")
    (tmp_path / "simplesamlphp").mkdir()
    with running_simplesamlphp(
        tmp_path / "simplesamlphp",
        certificate_pem=test_idp.certificate_pem,
        private_key_pem=test_idp.private_key_pem,
        sp_metadata=httpx.get(app.metadata_url).content,
        attributes={"mail": [EMAIL], "givenName": [GIVEN_NAME], "sn": [FAMILY_NAME]},
    ) as idp:
        yield idp


def _sign_in(
    app: InteropApp, browser: httpx.Client, page: httpx.Response
) -> tuple[SignInOutcome, str]:
    """Log in at SimpleSAMLphp if it asks, post its answer to the ACS: (outcome, SAMLResponse)."""
    forms = html_forms(page.text, str(page.url))
    if forms and "username" in forms[0].fields:
        login = forms[0]
        page = post_form(
            browser,
            HtmlForm(login.action, {**login.fields, "username": USERNAME, "password": PASSWORD}),
        )
        forms = html_forms(page.text, str(page.url))
    assert [form.action for form in forms] == [app.sp.acs_url], page.text[:3000]
    saml_response = forms[0].fields["SAMLResponse"]
    return app.last_outcome(post_form(browser, forms[0])), saml_response


def _authorized(app: InteropApp, simplesamlphp: SimpleSamlPhp, **options: object) -> None:
    """Save SimpleSAMLphp's metadata URL and authorize it, as the admin does."""
    saved = app.service.save_metadata_url(
        SLUG, simplesamlphp.metadata_url, unknown_members="create", **options
    )
    assert saved.saved, saved.report.render()
    with app.browser() as browser:
        outcome, _ = _sign_in(app, browser, browser.get(app.authorize_url))
    assert isinstance(outcome, Authorized), outcome


def test_the_validator_on_simplesamlphp_metadata(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """SimpleSAMLphp's own metadata: transient NameIDs refused until the admin sets emailAddress."""
    as_generated = httpx.get(simplesamlphp.metadata_url).content

    idp, report = app.service.check_metadata(SLUG, as_generated)

    assert idp is not None
    assert idp.entity_id == simplesamlphp.entity_id
    assert idp.sso_binding == "redirect"
    assert idp.sso_url == f"{simplesamlphp.base_url}/saml2/idp/SSOService.php"
    assert len(idp.certificates) == 1
    assert [f.code for f in report.errors] == ["nameid.transient"]
    assert {f.code for f in report.warnings} == {"sso.dev_http", "sp.dev_http"}
    assert not app.service.save_metadata_url(SLUG, simplesamlphp.metadata_url).saved

    simplesamlphp.set_idp_options(AS_INSTRUCTED)
    _, report = app.service.check_metadata(SLUG, httpx.get(simplesamlphp.metadata_url).content)

    assert report.ok, report.render()
    assert "nameid.transient" not in {f.code for f in report.findings}


def test_save_authorize_and_sign_in_with_simplesamlphp(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """The metadata URL, the test sign-in, then an SP-initiated sign-in creating the member."""
    simplesamlphp.set_idp_options(AS_INSTRUCTED)
    saved = app.service.save_metadata_url(
        SLUG, simplesamlphp.metadata_url, unknown_members="create"
    )
    assert saved.saved, saved.report.render()
    with app.browser() as browser:
        authorized, _ = _sign_in(app, browser, browser.get(app.authorize_url))

        assert isinstance(authorized, Authorized), authorized
        assert authorized.name_id == EMAIL
        assert authorized.connection.idp.entity_id == simplesamlphp.entity_id
        assert app.service.connections(SLUG).active == authorized.connection

        # SimpleSAMLphp remembers Ada: the second sign-in needs no password.
        signed_in, saml_response = _sign_in(app, browser, browser.get(app.login_url))

    assert isinstance(signed_in, SignIn), signed_in
    assert signed_in.created
    assert not signed_in.idp_initiated
    assert signed_in.name_id == EMAIL
    assert signed_in.member.attributes["name"] == {
        "givenName": GIVEN_NAME,
        "familyName": FAMILY_NAME,
    }
    # SimpleSAMLphp's defaults: the assertion and the response both signed, RSA-SHA256 and SHA-256.
    assert signatures(saml_response) == [
        Signature(signs="Response", signature_method=RSA_SHA256, digest_method=SHA256),
        Signature(signs="Assertion", signature_method=RSA_SHA256, digest_method=SHA256),
    ]


def test_idp_initiated_sign_in_with_simplesamlphp(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """SimpleSAMLphp's own link to the app signs Ada in when the workspace allows it."""
    simplesamlphp.set_idp_options(AS_INSTRUCTED)
    _authorized(app, simplesamlphp, allow_idp_initiated=True)

    with app.browser() as browser:
        outcome, _ = _sign_in(
            app, browser, browser.get(simplesamlphp.idp_initiated_url(app.sp.entity_id))
        )

    assert isinstance(outcome, SignIn), outcome
    assert outcome.idp_initiated
    assert outcome.request_id is None
    assert outcome.name_id == EMAIL


def test_idp_initiated_sign_in_with_simplesamlphp_is_refused_by_default(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """Without allow_idp_initiated, SimpleSAMLphp's unsolicited response signs no one in."""
    simplesamlphp.set_idp_options(AS_INSTRUCTED)
    _authorized(app, simplesamlphp)

    with app.browser() as browser:
        outcome, _ = _sign_in(
            app, browser, browser.get(simplesamlphp.idp_initiated_url(app.sp.entity_id))
        )

    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.finding.code == "response.unsolicited"


# -- Signed AuthnRequests and encrypted assertions, protocol level -------------------
#
# What SimpleSAMLphp does with the SP's keys, one step at a time: the SP metadata
# publishing them (sp_metadata), a request signed as redirect_for signs it, or
# signed by another key, or not at all (which the app never sends), and the
# response read by verify_response. The whole SamlService follows below.

XMLENC = "http://www.w3.org/2001/04/xmlenc#"


def _keyed(
    app: InteropApp,
    simplesamlphp: SimpleSamlPhp,
    *,
    signing: bool = False,
    encryption: bool = False,
    **options: object,
) -> IdentityProvider:
    """SimpleSAMLphp knowing the app's key from its metadata, with ``options`` set."""
    simplesamlphp.set_sp_metadata(
        sp_metadata_with_keys(app, sp_key(), signing=signing, encryption=encryption)
    )
    simplesamlphp.set_idp_options({**AS_INSTRUCTED, **options})
    return identity_provider(httpx.get(simplesamlphp.metadata_url).content)


def _answer(browser: httpx.Client, redirect_url: str) -> httpx.Response:
    """SimpleSAMLphp's page after the request and, if it asks, the login form."""
    page = browser.get(redirect_url)
    forms = html_forms(page.text, str(page.url))
    if forms and "username" in forms[0].fields:
        login = forms[0]
        page = post_form(
            browser,
            HtmlForm(login.action, {**login.fields, "username": USERNAME, "password": PASSWORD}),
        )
    return page


def _posted_response(app: InteropApp, page: httpx.Response) -> str:
    forms = html_forms(page.text, str(page.url))
    assert [form.action for form in forms] == [app.sp.acs_url], page.text[:3000]
    return forms[0].fields["SAMLResponse"]


def test_simplesamlphp_accepts_our_signed_authn_request(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """With validate.authnrequest, SimpleSAMLphp answers our signed request and refuses others."""
    idp = _keyed(app, simplesamlphp, signing=True, **{"validate.authnrequest": True})

    with app.browser() as browser:
        request_id, redirect = signed_request(app, idp, sp_key())
        saml_response = _posted_response(app, _answer(browser, redirect.url))
        assertion = verify_response(
            saml_response, sp=app.sp, idp=idp, request_id=request_id, now=datetime.now(UTC)
        )
        assert assertion.name_id == EMAIL

        # The same IdP refuses a request signed by another key, and an unsigned one,
        # on its error page (shown with status 200).
        for key, reason in (
            (sp_key("another"), "Unable to validate signature on query string."),
            (None, "Validation of received messages enabled, but no signature found on message."),
        ):
            _, redirect = signed_request(app, idp, key)
            refused = _answer(browser, redirect.url)
            actions = [form.action for form in html_forms(refused.text, str(refused.url))]
            assert app.sp.acs_url not in actions
            assert reason in refused.text


def test_simplesamlphp_encrypted_assertion_is_decrypted(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """SimpleSAMLphp's encrypted assertion (its defaults: AES-128-CBC, RSA-OAEP) is read."""
    idp = _keyed(app, simplesamlphp, encryption=True, **{"assertion.encryption": True})

    with app.browser() as browser:
        request_id, redirect = signed_request(app, idp, None)
        saml_response = _posted_response(app, _answer(browser, redirect.url))

    assert encryption(saml_response) == Encryption(
        content=f"{XMLENC}aes128-cbc", key_transport=f"{XMLENC}rsa-oaep-mgf1p"
    )
    # The response is signed around the ciphertext; the assertion inside is signed too.
    assert [s.signs for s in signatures(saml_response)] == ["Response"]
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


def test_simplesamlphp_encrypted_assertion_to_another_key_is_refused(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """An assertion encrypted to a key the SP does not hold is a finding, not a crash."""
    idp = _keyed(app, simplesamlphp, encryption=True, **{"assertion.encryption": True})

    with app.browser() as browser:
        request_id, redirect = signed_request(app, idp, None)
        saml_response = _posted_response(app, _answer(browser, redirect.url))

    with pytest.raises(SignInError) as refused:
        verify_response(
            saml_response,
            sp=app.sp,
            idp=idp,
            request_id=request_id,
            now=datetime.now(UTC),
            decryption_keys=[sp_key("another")],
        )
    assert refused.value.code.startswith("response.")
    assert sp_key("another").fingerprint in refused.value.finding.message


# -- Signed and encrypted through the whole SamlService ------------------------------


def _signed_and_encrypted(app: InteropApp, simplesamlphp: SimpleSamlPhp, **options: object) -> None:
    """Save SimpleSAMLphp, sign requests, require encryption, and give it the new SP metadata.

    As the admin does: the SP metadata now lists the app's certificates.
    """
    simplesamlphp.set_idp_options({**AS_INSTRUCTED, "assertion.encryption": True})
    saved = app.service.save_metadata_url(
        SLUG, simplesamlphp.metadata_url, unknown_members="create", **options
    )
    assert saved.saved, saved.report.render()
    app.service.update_options(SLUG, sign_requests=True, assertion_encryption="require")
    simplesamlphp.set_sp_metadata(httpx.get(app.metadata_url).content)


def _through(app: InteropApp, browser: httpx.Client, start: str) -> tuple[SignInOutcome, str]:
    """From the app's page to the ACS, checking the request the app sent is signed."""
    redirect = browser.get(start, follow_redirects=False)
    assert redirect.is_redirect, redirect.text[:2000]
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    assert "Signature" in query
    page = _answer(browser, redirect.headers["location"])
    saml_response = _posted_response(app, page)
    forms = html_forms(page.text, str(page.url))
    return app.last_outcome(post_form(browser, forms[0])), saml_response


def test_signed_requests_and_encrypted_assertions_with_simplesamlphp(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """Save & authorize, SP- and IdP-initiated sign-in: requests signed, assertions encrypted."""
    _signed_and_encrypted(app, simplesamlphp, allow_idp_initiated=True)
    # The SP metadata SimpleSAMLphp now holds says requests are signed, and it enforces that.
    sp_metadata = (simplesamlphp.directory / "sp-metadata.xml").read_text()
    assert 'AuthnRequestsSigned="true"' in sp_metadata
    assert '<md:KeyDescriptor use="encryption">' in sp_metadata

    with app.browser() as browser:
        authorized, saml_response = _through(app, browser, app.authorize_url)
        assert isinstance(authorized, Authorized), authorized
        assert encryption(saml_response) == Encryption(
            content=f"{XMLENC}aes128-cbc", key_transport=f"{XMLENC}rsa-oaep-mgf1p"
        )

        signed_in, saml_response = _through(app, browser, app.login_url)
        assert isinstance(signed_in, SignIn), signed_in
        assert signed_in.created
        assert encryption(saml_response) is not None

    with app.browser() as browser:
        page = _answer(browser, simplesamlphp.idp_initiated_url(app.sp.entity_id))
        assert encryption(_posted_response(app, page)) is not None
        unsolicited = app.last_outcome(post_form(browser, html_forms(page.text, str(page.url))[0]))
    assert isinstance(unsolicited, SignIn), unsolicited
    assert unsolicited.idp_initiated


def test_simplesamlphp_plaintext_assertion_is_refused_when_encryption_is_required(
    app: InteropApp, simplesamlphp: SimpleSamlPhp
) -> None:
    """With encryption required, SimpleSAMLphp's plaintext assertion activates nothing."""
    _signed_and_encrypted(app, simplesamlphp)
    simplesamlphp.set_idp_options({**AS_INSTRUCTED, "assertion.encryption": False})

    with app.browser() as browser:
        outcome, saml_response = _through(app, browser, app.authorize_url)

    assert encryption(saml_response) is None
    assert isinstance(outcome, SignInFailure), outcome
    assert outcome.finding.code == "response.unencrypted"
    assert app.service.connections(SLUG).active is None


def test_sp_key_rollover_with_simplesamlphp(app: InteropApp, simplesamlphp: SimpleSamlPhp) -> None:
    """Both SP keys rolled over with SimpleSAMLphp reading the metadata once, mid-rollover.

    SimpleSAMLphp encrypts to the first encryption certificate the SP
    metadata lists, so the new one must come first: finishing the rollover
    then breaks no sign-in, though SimpleSAMLphp never reads the metadata again.
    """
    _signed_and_encrypted(app, simplesamlphp)
    with app.browser() as browser:
        authorized, _ = _through(app, browser, app.authorize_url)
        assert isinstance(authorized, Authorized), authorized
        old = app.service.sp_keys(SLUG)

        new_encryption = app.service.start_sp_key_rollover(SLUG, "encryption")
        new_signing = app.service.start_sp_key_rollover(SLUG, "signing")
        # Before the IdP has the new metadata: the old keys still serve.
        signed_in, _ = _through(app, browser, app.login_url)
        assert isinstance(signed_in, SignIn), signed_in

        simplesamlphp.set_sp_metadata(httpx.get(app.metadata_url).content)
        signed_in, saml_response = _through(app, browser, app.login_url)
        assert isinstance(signed_in, SignIn), signed_in
        idp = identity_provider(httpx.get(simplesamlphp.metadata_url).content)
        # SimpleSAMLphp has switched to the new encryption certificate already.
        verify_response(
            saml_response,
            sp=app.sp,
            idp=idp,
            request_id=None,
            now=datetime.now(UTC),
            decryption_keys=[new_encryption],
        )
        with pytest.raises(SignInError):
            verify_response(
                saml_response,
                sp=app.sp,
                idp=idp,
                request_id=None,
                now=datetime.now(UTC),
                decryption_keys=old.encryption,
            )

        app.service.finish_sp_key_rollover(SLUG, "encryption")
        app.service.finish_sp_key_rollover(SLUG, "signing")
        assert app.service.sp_keys(SLUG).signing_key == new_signing
        signed_in, _ = _through(app, browser, app.login_url)

    assert isinstance(signed_in, SignIn), signed_in
