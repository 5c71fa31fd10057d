"""Encrypted assertions, signed requests and SP key rollover through the whole SamlService.

On SQLite and PostgreSQL: the workspace's options, its SP keys (made by
pbidentity or given by the app), the metadata endpoint that publishes them,
AuthnRequests signed with them and assertions encrypted to them by libxmlsec
as an IdP would.
"""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import unquote_plus
from urllib.parse import urlsplit

import pytest
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import InputError
from pbidentity.http import Request
from pbidentity.saml._keys import SpKey
from pbidentity.saml._keys import SpKeys
from pbidentity.saml._keys import generate_sp_key
from pbidentity.saml._protocol import RSA_SHA256
from pbidentity.saml._service import SamlConfig
from pbidentity.saml._service import SamlService
from pbidentity.saml._service import SignIn
from pbidentity.saml._service import SignInFailure
from pbidentity.saml._service import SignInOutcome
from pbidentity.storage import Storage
from tests.saml.encryption import encrypt_assertion
from tests.saml.idp import NS
from tests.saml.idp import TestIdp
from tests.saml.idp import encode
from tests.saml.test_service import PUBLIC_URL
from tests.saml.test_service import activate
from tests.saml.test_service import request_id
from tests.saml.test_service import sp

MD = NS["md"]
DS = NS["ds"]


@pytest.fixture(scope="module")
def idp() -> TestIdp:
    """The IdP the workspace trusts."""
    return TestIdp(entity_id="http://www.okta.com/exk1", sso_url="https://acme.okta.test/sso/saml")


@pytest.fixture
def service(storage: Storage) -> SamlService:
    """The SAML service of workspaces ``acme`` (with a member) and ``globex``."""
    from pbidentity.admin import Admin
    from pbidentity.members import Members

    admin = Admin(storage)
    admin.create_tenant("acme", "Acme")
    admin.create_tenant("globex", "Globex")
    Members(storage).add("acme", "jane@acme.test", given_name="Jane", email="jane@acme.test")
    return SamlService(storage, SamlConfig(public_url=PUBLIC_URL))


def metadata(service: SamlService, slug: str = "acme") -> Any:
    """The SP metadata as the endpoint serves it, parsed."""
    response = service.handle(Request(method="GET", path=f"/{slug}/metadata", base_url=PUBLIC_URL))
    assert response.status == 200
    return etree.fromstring(response.body)


def published(root: Any, use: str) -> list[str]:
    """The certificate bodies of the metadata's KeyDescriptors of that use."""
    return [
        d.find(f".//{{{DS}}}X509Certificate").text
        for d in root.iter(f"{{{MD}}}KeyDescriptor")
        if d.get("use") == use
    ]


def pem_of(body: str) -> str:
    """A certificate body from metadata as PEM, as an IdP that imports it holds it."""
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def encrypted_sign_in(
    service: SamlService, idp: TestIdp, certificate_pem: str | None, name_id: str = "jane@acme.test"
) -> SignInOutcome:
    """An SP-initiated sign-in whose assertion is encrypted to ``certificate_pem`` (None: plain)."""
    redirect = service.begin_sign_in("acme")
    xml = idp.response_xml(sp=sp(service), name_id=name_id, in_response_to=request_id(redirect.url))
    root = etree.fromstring(xml)
    if certificate_pem is not None:
        encrypt_assertion(root, certificate_pem)
    return service.consume("acme", encode(etree.tostring(root)))


def failure_code(outcome: SignInOutcome) -> str:
    assert isinstance(outcome, SignInFailure), outcome
    return outcome.finding.code


def test_encryption_is_off_until_the_workspace_turns_it_on(
    service: SamlService, idp: TestIdp
) -> None:
    """No key is published or made; an encrypted assertion is refused saying how to turn it on."""
    activate(service, idp)
    assert published(metadata(service), "encryption") == []
    with service.storage.transaction(write=False) as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        assert tx.saml_sp_keys(tenant.id) is None
    stranger = generate_sp_key("stranger")

    outcome = encrypted_sign_in(service, idp, stranger.certificate_pem)

    assert failure_code(outcome) == "response.encrypted"
    assert "encrypted assertions for this connection" in outcome.finding.suggestion  # type: ignore[union-attr]


def test_accepting_encryption_publishes_a_key_that_decrypts(
    service: SamlService, idp: TestIdp
) -> None:
    """accept: the published encryption certificate is the one that works; plaintext passes too."""
    activate(service, idp)
    service.update_options("acme", assertion_encryption="accept")
    certificates = published(metadata(service), "encryption")
    assert len(certificates) == 1
    assert published(metadata(service), "encryption") == certificates  # made once, kept

    assert isinstance(encrypted_sign_in(service, idp, pem_of(certificates[0])), SignIn)
    assert isinstance(encrypted_sign_in(service, idp, None), SignIn)
    other = generate_sp_key("stranger").certificate_pem
    assert failure_code(encrypted_sign_in(service, idp, other)) == "response.decryption"


def test_requiring_encryption_refuses_a_plaintext_assertion(
    service: SamlService, idp: TestIdp
) -> None:
    """require: the same signed assertion is refused in plaintext and accepted encrypted."""
    activate(service, idp)
    service.update_options("acme", assertion_encryption="require")
    certificate = pem_of(published(metadata(service), "encryption")[0])

    assert failure_code(encrypted_sign_in(service, idp, None)) == "response.unencrypted"
    assert isinstance(encrypted_sign_in(service, idp, certificate), SignIn)


def test_the_options_survive_a_new_configuration_and_a_restart(
    storage: Storage, service: SamlService, idp: TestIdp
) -> None:
    """Saved metadata keeps the options; another instance on the database uses the same keys."""
    activate(service, idp)
    service.update_options("acme", assertion_encryption="require", sign_requests=True)
    saved = service.save_metadata_xml("acme", idp.metadata_xml())
    assert saved.connection is not None
    assert saved.connection.assertion_encryption == "require"
    assert saved.connection.sign_requests

    other_instance = SamlService(storage, SamlConfig(public_url=PUBLIC_URL))
    assert other_instance.sp_keys("acme") == service.sp_keys("acme")
    active = other_instance.connections("acme").active
    assert active is not None
    assert (active.assertion_encryption, active.sign_requests) == ("require", True)


def test_an_unknown_encryption_option_is_refused(service: SamlService, idp: TestIdp) -> None:
    """A typo is an input error, not a silently ignored setting."""
    activate(service, idp)
    with pytest.raises(InputError, match="assertion_encryption"):
        service.update_options("acme", assertion_encryption="always")  # type: ignore[arg-type]


# --- signed requests ---------------------------------------------------------------------------


def signed_query(url: str) -> tuple[str, bytes]:
    query = urlsplit(url).query
    signed, _, signature = query[query.index("SAMLRequest=") :].partition("&Signature=")
    return signed, base64.b64decode(unquote_plus(signature))


def test_signed_requests_are_signed_with_the_published_certificate(
    service: SamlService, idp: TestIdp
) -> None:
    """AuthnRequestsSigned="true", and the IdP verifies each request with the metadata's key."""
    activate(service, idp)
    assert "SigAlg" not in service.begin_sign_in("acme").url
    service.update_options("acme", sign_requests=True)
    root = metadata(service)
    assert root.find(f"{{{MD}}}SPSSODescriptor").get("AuthnRequestsSigned") == "true"
    (certificate,) = published(root, "signing")

    redirect = service.begin_sign_in("acme", relay_state="/projects/7")

    assert parse_qs(urlsplit(redirect.url).query)["SigAlg"] == [RSA_SHA256]
    signed, signature = signed_query(redirect.url)
    assert OneLogin_Saml2_Utils.validate_binary_sign(
        signed, signature, pem_of(certificate), RSA_SHA256
    )


def test_the_signed_requests_warning_goes_once_requests_are_signed(
    service: SamlService, idp: TestIdp
) -> None:
    """IdP metadata asking for signed requests warns until the workspace signs them."""
    activate(service, idp)
    wanting = idp.metadata_xml().replace(
        b"<md:IDPSSODescriptor ", b'<md:IDPSSODescriptor WantAuthnRequestsSigned="true" '
    )
    _, report = service.check_metadata("acme", wanting)
    assert "sso.wants_signed_requests" in report.codes()

    service.update_options("acme", sign_requests=True)
    _, report = service.check_metadata("acme", wanting)

    assert "sso.wants_signed_requests" not in report.codes()


# --- rollover ----------------------------------------------------------------------------------


def test_an_encryption_key_rollover_accepts_both_keys_until_it_is_finished(
    service: SamlService, idp: TestIdp
) -> None:
    """Start: both certificates published, both decrypt. Finish: only the new one remains."""
    activate(service, idp)
    service.update_options("acme", assertion_encryption="accept")
    (old,) = published(metadata(service), "encryption")

    new_key = service.start_sp_key_rollover("acme", "encryption")

    # The new certificate first: the one IdPs that take the first listed encrypt to.
    assert published(metadata(service), "encryption") == [new_key.certificate_body, old]
    for certificate in (pem_of(old), new_key.certificate_pem):
        assert isinstance(encrypted_sign_in(service, idp, certificate), SignIn)
    with pytest.raises(InputError, match="under way"):
        service.start_sp_key_rollover("acme", "encryption")

    assert service.finish_sp_key_rollover("acme", "encryption") == new_key

    assert published(metadata(service), "encryption") == [new_key.certificate_body]
    assert failure_code(encrypted_sign_in(service, idp, pem_of(old))) == "response.decryption"
    assert isinstance(encrypted_sign_in(service, idp, new_key.certificate_pem), SignIn)
    with pytest.raises(InputError, match="no rollover"):
        service.finish_sp_key_rollover("acme", "encryption")


def test_a_signing_key_rollover_publishes_the_new_key_before_it_signs(
    service: SamlService, idp: TestIdp
) -> None:
    """Start: both published, the old one still signs. Finish: the new one signs."""
    activate(service, idp)
    service.update_options("acme", sign_requests=True)
    (old,) = published(metadata(service), "signing")

    new_key = service.start_sp_key_rollover("acme", "signing")

    assert published(metadata(service), "signing") == [old, new_key.certificate_body]
    signed, signature = signed_query(service.begin_sign_in("acme").url)
    assert OneLogin_Saml2_Utils.validate_binary_sign(signed, signature, pem_of(old), RSA_SHA256)

    service.finish_sp_key_rollover("acme", "signing")

    signed, signature = signed_query(service.begin_sign_in("acme").url)
    assert OneLogin_Saml2_Utils.validate_binary_sign(
        signed, signature, new_key.certificate_pem, RSA_SHA256
    )
    assert not OneLogin_Saml2_Utils.validate_binary_sign(signed, signature, pem_of(old), RSA_SHA256)


def test_keys_the_app_provides_are_used_for_every_workspace(storage: Storage, idp: TestIdp) -> None:
    """SamlConfig.sp_keys: published and used as given; rolled over by the app, not here."""
    from pbidentity.admin import Admin
    from pbidentity.members import Members

    Admin(storage).create_tenant("acme", "Acme")
    Members(storage).add("acme", "jane@acme.test", email="jane@acme.test")
    encryption = generate_sp_key("app encryption")
    service = SamlService(
        storage, SamlConfig(public_url=PUBLIC_URL, sp_keys=SpKeys(encryption=encryption))
    )
    activate(service, idp)
    service.update_options("acme", assertion_encryption="require")

    assert published(metadata(service), "encryption") == [encryption.certificate_body]
    assert isinstance(encrypted_sign_in(service, idp, encryption.certificate_pem), SignIn)
    with storage.transaction(write=False) as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        assert tx.saml_sp_keys(tenant.id) is None
    with pytest.raises(ConfigurationError, match=r"SamlConfig\.sp_keys"):
        service.start_sp_key_rollover("acme", "encryption")


def test_private_keys_never_reach_events_or_logs(
    service: SamlService, idp: TestIdp, caplog: pytest.LogCaptureFixture
) -> None:
    """Making and rolling keys over records fingerprints only."""
    caplog.set_level(logging.DEBUG, logger="pbidentity")
    activate(service, idp)
    service.update_options("acme", assertion_encryption="accept", sign_requests=True)
    metadata(service)
    service.start_sp_key_rollover("acme", "signing")
    keys: SpKeys = service.sp_keys("acme")
    secrets = [key.private_key_pem.splitlines()[1] for key in (*keys.signing, *keys.encryption)]
    with service.storage.transaction(write=False) as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        events = [e for e in tx.list_events(tenant.id) if e.type.startswith("saml.sp_key")]
    assert [e.type for e in events] == ["saml.sp_keys_created", "saml.sp_key_rollover_started"]
    shown = repr(events) + caplog.text + repr(keys)
    assert all(secret not in shown for secret in secrets)
    assert "PRIVATE" not in shown
    assert keys.signing[0].fingerprint in repr(events)


def test_sp_key_checks_use_the_workspace_not_another(service: SamlService, idp: TestIdp) -> None:
    """Each workspace gets its own keys: one's certificate decrypts nothing of the other's."""
    keys_acme: SpKey = service.sp_keys("acme").encryption[0]
    keys_globex: SpKey = service.sp_keys("globex").encryption[0]

    assert keys_acme.fingerprint != keys_globex.fingerprint


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: c[:-1] + bytes([c[-1] ^ 1]), id="tampered tag"),
        pytest.param(lambda c: c[:10], id="truncated"),
    ],
)
def test_an_undecryptable_post_to_the_acs_is_a_page_never_a_500(
    service: SamlService, idp: TestIdp, change: Any
) -> None:
    """Over HTTP, a ciphertext that does not decrypt is a 403 page naming the finding."""
    from tests.saml.encryption import tamper
    from tests.saml.test_service import post_form

    activate(service, idp)
    service.update_options("acme", assertion_encryption="require", allow_idp_initiated=True)
    certificate = pem_of(published(metadata(service), "encryption")[0])
    root = etree.fromstring(idp.response_xml(sp=sp(service), name_id="jane@acme.test"))
    tamper(encrypt_assertion(root, certificate), change)

    answer = post_form(service, "/acme/acs", {"SAMLResponse": encode(etree.tostring(root))})

    assert answer.status == 403
    assert b"Traceback" not in answer.body
    assert b"could not be decrypted" in answer.body
