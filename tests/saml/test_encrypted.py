"""Encrypted assertions: decrypted with the SP's keys, then held to every check of a plaintext one.

Responses are made by the test IdP and encrypted by libxmlsec
(``tests/saml/encryption.py``), an implementation independent of
pbidentity's decryption. The attacks are the encrypted variants of the
attack suite: wrapping around an EncryptedAssertion, another signer inside
the encryption, a plaintext assertion beside an encrypted one, tampered or
truncated ciphertext, XML attacks inside the plaintext.
"""

from __future__ import annotations

import copy
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest
from lxml import etree

from pbidentity.exceptions import ConfigurationError
from pbidentity.saml._decrypt import decrypt_assertion
from pbidentity.saml._keys import SpKey
from pbidentity.saml._keys import SpKeys
from pbidentity.saml._keys import generate_sp_key
from pbidentity.saml._response import Assertion
from pbidentity.saml._response import SignInError
from pbidentity.saml._response import verify_response
from pbidentity.saml._types import ServiceProvider
from tests.saml.encryption import CONTENT
from tests.saml.encryption import XENC
from tests.saml.encryption import encrypt_assertion
from tests.saml.encryption import encrypt_bytes
from tests.saml.encryption import fill
from tests.saml.encryption import tamper
from tests.saml.idp import NS
from tests.saml.idp import TestIdp
from tests.saml.idp import encode
from tests.saml.idp import sign

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REQUEST_ID = "_request-enc-1"
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


@pytest.fixture(scope="module")
def sp_key() -> SpKey:
    return generate_sp_key("app.example", now=NOW)


@pytest.fixture(scope="module")
def next_sp_key() -> SpKey:
    return generate_sp_key("app.example next", now=NOW)


def response(idp: TestIdp, name_id: str = "ada@example.com", **options: Any) -> Any:
    options.setdefault("in_response_to", REQUEST_ID)
    return etree.fromstring(idp.response_xml(sp=SP, name_id=name_id, now=NOW, **options))


def encrypted(idp: TestIdp, key: SpKey, **options: Any) -> Any:
    """A response whose signed assertion is encrypted to ``key``'s certificate."""
    encryption = {
        name: options.pop(name)
        for name in ("content", "key_transport", "placement", "name_certificate")
        if name in options
    }
    root = response(idp, **options)
    encrypt_assertion(root, key.certificate_pem, **encryption)
    return root


def verify(root: Any, idp: TestIdp, keys: tuple[SpKey, ...], **options: Any) -> Assertion:
    options.setdefault("request_id", REQUEST_ID)
    options.setdefault("now", NOW)
    return verify_response(
        encode(etree.tostring(root)),
        sp=SP,
        idp=idp.identity_provider(),
        decryption_keys=keys,
        **options,
    )


def refused(root: Any, idp: TestIdp, keys: tuple[SpKey, ...], **options: Any) -> SignInError:
    with pytest.raises(SignInError) as caught:
        verify(root, idp, keys, **options)
    return caught.value


# --- what IdPs send is accepted ---------------------------------------------------------------


@pytest.mark.parametrize("content", sorted(CONTENT))
@pytest.mark.parametrize(
    "key_transport", ["rsa-oaep-mgf1p", "rsa-oaep-mgf1p-sha256", "rsa-oaep", "rsa-oaep-sha256"]
)
def test_each_accepted_algorithm_pair_decrypts_to_the_signed_assertion(
    idp: TestIdp, sp_key: SpKey, content: str, key_transport: str
) -> None:
    """AES-GCM and AES-CBC with every RSA-OAEP variant IdPs send decrypt and verify."""
    root = encrypted(idp, sp_key, content=content, key_transport=key_transport)

    assertion = verify(root, idp, (sp_key,))

    assert assertion.name_id == "ada@example.com"
    assert assertion.attributes["firstName"] == ("Ada",)
    assert assertion.in_response_to == REQUEST_ID


def test_an_encrypted_key_beside_the_data_is_found(idp: TestIdp, sp_key: SpKey) -> None:
    """Shibboleth's layout: the EncryptedKey beside the data, named by a RetrievalMethod."""
    root = encrypted(idp, sp_key, placement="beside", name_certificate=False)
    wrapper = root.find(f"{{{SAML}}}EncryptedAssertion")
    assert wrapper.find(f"{{{XENC}}}EncryptedKey") is not None

    assert verify(root, idp, (sp_key,)).name_id == "ada@example.com"


def test_both_keys_of_a_rollover_decrypt(idp: TestIdp, sp_key: SpKey, next_sp_key: SpKey) -> None:
    """During a rollover an assertion encrypted to either published key is accepted."""
    keys = (sp_key, next_sp_key)
    for key in keys:
        for named in (True, False):
            root = encrypted(idp, key, name_certificate=named)
            assert verify(root, idp, keys).name_id == "ada@example.com"
    # Once the rollover is finished, the old key decrypts no more.
    old = encrypted(idp, sp_key)
    assert refused(old, idp, (next_sp_key,)).code == "response.decryption"


def test_a_signed_response_covers_an_unsigned_encrypted_assertion(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """The Response's signature over the ciphertext vouches for the assertion inside."""
    root = response(idp, sign_assertion=False)
    encrypt_assertion(root, sp_key.certificate_pem)
    sign(root, idp.keys[0])

    assert verify(root, idp, (sp_key,)).name_id == "ada@example.com"


def test_a_signed_response_and_a_signed_encrypted_assertion_are_both_verified(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """Both signatures are checked: the Response's over the ciphertext, the assertion's inside."""
    root = encrypted(idp, sp_key)
    sign(root, idp.keys[0])
    assert verify(root, idp, (sp_key,)).name_id == "ada@example.com"

    tamper(root.find(f"{{{SAML}}}EncryptedAssertion"), lambda c: c[:-1] + bytes([c[-1] ^ 1]))
    # The Response's signature fails first: the ciphertext it covers changed.
    assert refused(root, idp, (sp_key,)).code == "response.signature"


def test_the_checks_of_a_plaintext_assertion_apply_inside(idp: TestIdp, sp_key: SpKey) -> None:
    """Audience, Recipient and InResponseTo are checked on the decrypted assertion."""
    assert (
        refused(encrypted(idp, sp_key, audience="https://evil.example"), idp, (sp_key,)).code
        == "response.audience"
    )
    assert (
        refused(encrypted(idp, sp_key, recipient="https://evil.example"), idp, (sp_key,)).code
        == "response.recipient"
    )
    assert (
        refused(encrypted(idp, sp_key, in_response_to="_other"), idp, (sp_key,)).code
        == "response.in_response_to"
    )


# --- what the SP refuses ----------------------------------------------------------------------


def test_rsa_1_5_key_transport_is_refused_and_the_finding_says_why(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """PKCS#1 v1.5 key transport is refused before any RSA work, naming Bleichenbacher and OAEP."""
    error = refused(encrypted(idp, sp_key, key_transport="rsa-1_5"), idp, (sp_key,))

    assert error.code == "response.key_transport"
    assert "Bleichenbacher" in error.finding.message
    assert "RSA-OAEP" in error.finding.suggestion


def test_an_unknown_content_algorithm_is_refused(idp: TestIdp, sp_key: SpKey) -> None:
    """Triple-DES (or anything not AES-GCM/CBC) is refused, saying what is accepted."""
    root = encrypted(idp, sp_key)
    method = root.find(f".//{{{XENC}}}EncryptedData/{{{XENC}}}EncryptionMethod")
    method.set("Algorithm", f"{XENC}tripledes-cbc")

    error = refused(root, idp, (sp_key,))

    assert error.code == "response.encryption_algorithm"
    assert "AES-128/192/256-GCM" in error.finding.message


def test_an_assertion_encrypted_for_another_key_is_a_decryption_finding(
    idp: TestIdp, sp_key: SpKey, next_sp_key: SpKey
) -> None:
    """The wrong key is a finding naming the SP's certificate, never a crash."""
    error = refused(encrypted(idp, next_sp_key), idp, (sp_key,))

    assert error.code == "response.decryption"
    assert sp_key.fingerprint in error.finding.message
    assert "PRIVATE" not in error.finding.message


@pytest.mark.parametrize("content", sorted(CONTENT))
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: c[:-1] + bytes([c[-1] ^ 1]), id="last byte (tag or padding)"),
        pytest.param(lambda c: c[:20] + bytes([c[20] ^ 0x80]) + c[21:], id="a body byte"),
        pytest.param(lambda c: bytes([c[0] ^ 1]) + c[1:], id="the IV"),
        pytest.param(lambda c: c[:-16], id="truncated by a block"),
        pytest.param(lambda c: c[:20], id="truncated to 20 bytes"),
        pytest.param(lambda c: b"", id="empty"),
    ],
)
def test_tampered_or_truncated_ciphertext_is_one_decryption_finding(
    idp: TestIdp, sp_key: SpKey, next_sp_key: SpKey, content: str, change: Any
) -> None:
    """Any change to the ciphertext gives the finding of a wrong key, whatever broke inside."""
    root = encrypted(idp, sp_key, content=content)
    tamper(root.find(f"{{{SAML}}}EncryptedAssertion"), change)
    wrong_key = refused(encrypted(idp, next_sp_key, content=content), idp, (sp_key,))

    error = refused(root, idp, (sp_key,))

    if content.endswith("cbc") and error.code == "response.signature":
        # A CBC change that keeps the padding and the XML intact decrypts to
        # an altered assertion, which its signature then refuses.
        return
    assert error.finding == wrong_key.finding


def test_a_tampered_or_truncated_session_key_is_the_same_finding(
    idp: TestIdp, sp_key: SpKey, next_sp_key: SpKey
) -> None:
    """An EncryptedKey that does not decrypt looks exactly like a bad tag (no OAEP oracle)."""
    wrong_key = refused(encrypted(idp, next_sp_key), idp, (sp_key,))
    for text in ("AAAA", "", None):
        root = encrypted(idp, sp_key)
        node = root.find(f".//{{{XENC}}}EncryptedKey/{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
        node.text = text
        assert refused(root, idp, (sp_key,)).finding == wrong_key.finding


def test_an_encrypted_assertion_without_sp_keys_is_refused(idp: TestIdp, sp_key: SpKey) -> None:
    """With no encryption key configured the finding says how to turn encryption on or off."""
    error = refused(encrypted(idp, sp_key), idp, ())

    assert error.code == "response.encrypted"
    assert "encrypted assertions for this connection" in error.finding.suggestion


def test_a_plaintext_assertion_is_refused_when_encryption_is_required(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """A workspace that requires encryption refuses a signed but plaintext assertion."""
    plain = response(idp)
    assert verify(plain, idp, (sp_key,)).name_id == "ada@example.com"

    error = refused(plain, idp, (sp_key,), require_encryption=True)

    assert error.code == "response.unencrypted"
    assert verify(encrypted(idp, sp_key), idp, (sp_key,), require_encryption=True)


def test_a_failed_sign_in_status_is_reported_when_encryption_is_required(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """A response with no assertion at all says what the IdP said, not "unencrypted"."""
    root = response(idp, status="Requester")

    assert refused(root, idp, (sp_key,), require_encryption=True).code == "response.status"


# --- the attack suite, encrypted --------------------------------------------------------------


def test_a_plaintext_assertion_beside_an_encrypted_one_is_refused(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """The attacker's plaintext assertion next to the genuine encrypted one: two assertions."""
    genuine = encrypted(idp, sp_key)
    evil = response(idp, name_id="admin@example.com", sign_assertion=False)
    genuine.append(evil.find(f"{{{SAML}}}Assertion"))

    assert refused(genuine, idp, (sp_key,)).code == "response.assertion"


def test_two_encrypted_assertions_are_refused(idp: TestIdp, sp_key: SpKey) -> None:
    """A second EncryptedAssertion, even a genuine one, is refused before any decryption."""
    root = encrypted(idp, sp_key)
    root.append(copy.deepcopy(root.find(f"{{{SAML}}}EncryptedAssertion")))

    assert refused(root, idp, (sp_key,)).code == "response.assertion"


def test_an_encrypted_assertion_signed_by_another_key_is_refused(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """Encryption proves nothing about the sender: the signature inside must be the IdP's."""
    impostor = TestIdp(entity_id=idp.entity_id + "#impostor")
    root = response(impostor, issuer=idp.entity_id, assertion_issuer=idp.entity_id)
    encrypt_assertion(root, sp_key.certificate_pem)

    assert refused(root, idp, (sp_key,)).code == "response.signature"


def test_an_unsigned_encrypted_assertion_is_refused(idp: TestIdp, sp_key: SpKey) -> None:
    """Anyone can encrypt to the SP's public certificate: unsigned, it is refused."""
    root = response(idp, name_id="admin@example.com", sign_assertion=False)
    encrypt_assertion(root, sp_key.certificate_pem)

    assert refused(root, idp, (sp_key,)).code == "response.unsigned"


def test_wrapping_the_signed_response_around_an_attackers_encrypted_assertion_is_refused(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """XSW1 encrypted: the genuine signed Response hidden in its signature, the outer one evil."""
    genuine = encrypted(idp, sp_key)
    sign(genuine, idp.keys[0])
    evil = copy.deepcopy(genuine)
    evil.remove(evil.find(f"{{{SAML}}}EncryptedAssertion"))
    attacker = response(idp, name_id="admin@example.com", sign_assertion=False)
    evil.append(attacker.find(f"{{{SAML}}}Assertion"))
    encrypt_assertion(evil, sp_key.certificate_pem)
    original = copy.deepcopy(genuine)
    original.remove(original.find(f"{{{DS}}}Signature"))
    evil.find(f"{{{DS}}}Signature").append(original)
    evil.set("ID", "_evil_response")

    # The copy in the signature still holds the genuine EncryptedAssertion: two.
    assert refused(evil, idp, (sp_key,)).code == "response.assertion"
    # Without it, the signature points at a copy that no longer digests.
    hidden = evil.find(f"{{{DS}}}Signature/{{{NS['samlp']}}}Response")
    hidden.remove(hidden.find(f"{{{SAML}}}EncryptedAssertion"))
    assert refused(evil, idp, (sp_key,)).code == "response.signature"


def test_moving_the_signed_encrypted_assertion_into_extensions_is_refused(
    idp: TestIdp, sp_key: SpKey
) -> None:
    """XSW3 encrypted: the genuine EncryptedAssertion hidden in Extensions, an evil one in place."""
    root = encrypted(idp, sp_key)
    genuine = root.find(f"{{{SAML}}}EncryptedAssertion")
    extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
    root.find(f"{{{SAML}}}Issuer").addnext(extensions)
    extensions.append(genuine)
    attacker = response(idp, name_id="admin@example.com")
    root.append(attacker.find(f"{{{SAML}}}Assertion"))
    encrypt_assertion(root, sp_key.certificate_pem)

    assert refused(root, idp, (sp_key,)).code == "response.assertion"


def test_a_second_assertion_inside_the_plaintext_is_refused(idp: TestIdp, sp_key: SpKey) -> None:
    """Wrapping inside the encryption: the plaintext's assertion hides another in its Advice."""
    root = response(idp)
    assertion = root.find(f"{{{SAML}}}Assertion")
    hidden = copy.deepcopy(assertion)
    hidden.remove(hidden.find(f"{{{DS}}}Signature"))
    hidden.set("ID", "_hidden")
    etree.SubElement(assertion, f"{{{SAML}}}Advice").append(hidden)
    encrypt_assertion(root, sp_key.certificate_pem)

    assert refused(root, idp, (sp_key,)).code == "response.assertion"


@pytest.mark.parametrize(
    ("plaintext", "code"),
    [
        pytest.param(
            b'<!DOCTYPE a [<!ENTITY x "admin@example.com">]><saml:Assertion/>',
            "response.malformed",
            id="DTD with an entity",
        ),
        pytest.param(b"<saml:Assertion>&x;</saml:Assertion>", "response.malformed", id="entity"),
        pytest.param(
            b'<saml:Assertion xmlns:xi="http://www.w3.org/2001/XInclude">'
            b'<xi:include href="file:///etc/passwd" parse="text"/></saml:Assertion>',
            "response.malformed",
            id="XInclude",
        ),
        pytest.param(b"<saml:Assertion>", "response.malformed", id="not well-formed"),
        pytest.param(b"<saml:Response/>", "response.malformed", id="not an assertion"),
        pytest.param(b"<saml:Assertion/><saml:Assertion/>", "response.malformed", id="two"),
        pytest.param(b"  ", "response.malformed", id="blank"),
    ],
)
def test_xml_attacks_inside_the_plaintext_are_refused(
    idp: TestIdp, sp_key: SpKey, plaintext: bytes, code: str
) -> None:
    """Whatever an attacker encrypts to the SP's public certificate is parsed as safely."""
    root = response(idp)
    encrypt_bytes(root, plaintext, sp_key.certificate_pem)

    error = refused(root, idp, (sp_key,))

    assert error.code in {code, "response.schema", "response.unsigned", "response.assertion"}
    assert "passwd" not in error.finding.message or error.code != "response.invalid"


def test_a_dtd_inside_cbc_plaintext_is_the_decryption_finding(
    idp: TestIdp, sp_key: SpKey, next_sp_key: SpKey
) -> None:
    """Under CBC, plaintext errors answer like a bad key: no parse-error oracle."""
    root = response(idp)
    encrypt_bytes(
        root, b'<!DOCTYPE a [<!ENTITY x "y">]><a/>', sp_key.certificate_pem, content="aes128-cbc"
    )
    wrong_key = refused(encrypted(idp, next_sp_key, content="aes128-cbc"), idp, (sp_key,))

    assert refused(root, idp, (sp_key,)).finding == wrong_key.finding


def test_too_many_encrypted_keys_are_refused_unread(idp: TestIdp, sp_key: SpKey) -> None:
    """Each EncryptedKey costs RSA work per SP key: more than four is refused before any."""
    root = encrypted(idp, sp_key)
    wrapper = root.find(f"{{{SAML}}}EncryptedAssertion")
    key = wrapper.find(f".//{{{XENC}}}EncryptedKey")
    for _ in range(4):
        wrapper.append(copy.deepcopy(key))

    error = refused(root, idp, (sp_key,))

    assert error.code == "response.encrypted"
    assert "5 EncryptedKeys" in error.finding.message


# --- the SP key --------------------------------------------------------------------------------


def test_an_sp_key_never_shows_its_private_key(sp_key: SpKey) -> None:
    """repr, str and the key sets name the certificate by fingerprint, never the private key."""
    body = sp_key.private_key_pem.splitlines()[1]
    for shown in (repr(sp_key), str(sp_key), repr(SpKeys(encryption=sp_key))):
        assert body not in shown
        assert "PRIVATE" not in shown
    assert sp_key.fingerprint in str(sp_key)


def test_an_sp_key_must_match_its_certificate(sp_key: SpKey, next_sp_key: SpKey) -> None:
    """A certificate of another key, a small key or garbage is a configuration error."""
    with pytest.raises(ConfigurationError, match="not the certificate of its private key"):
        SpKey(sp_key.private_key_pem, next_sp_key.certificate_pem)
    with pytest.raises(ConfigurationError, match="could not be read"):
        SpKey("garbage", sp_key.certificate_pem)
    from tests.saml.certs import make_certificate

    small_key, small_certificate = make_certificate(key_size=1024)
    with pytest.raises(ConfigurationError, match="at least 2048 bits"):
        SpKey(small_key, small_certificate)


def test_a_dtd_inside_gcm_plaintext_is_named(idp: TestIdp, sp_key: SpKey) -> None:
    """Under GCM (authenticated) the finding says the plaintext declares a DOCTYPE."""
    root = response(idp)
    encrypt_bytes(root, b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', sp_key.certificate_pem)

    error = refused(root, idp, (sp_key,))

    assert error.code == "response.malformed"
    assert "DOCTYPE" in error.finding.message


SAMLP = NS["samlp"]


@pytest.mark.parametrize(
    ("plaintext", "declared"),
    [
        pytest.param(b"<saml2:Assertion ID='_a'/>", 1, id="relies on the wrapper's prefix"),
        pytest.param(
            b'<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a"/>',
            1,
            id="declares it itself",
        ),
        pytest.param(
            b'<saml2:Assertion ID=">" xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"/>',
            1,
            id="a quoted > before its declaration",
        ),
    ],
)
def test_a_prefix_only_the_encrypted_assertion_declared_stays_declared(
    sp_key: SpKey, plaintext: bytes, declared: int
) -> None:
    """In the EncryptedAssertion's place, the assertion declares what it inherited there."""
    root = etree.fromstring(f'<samlp:Response xmlns:samlp="{SAMLP}"/>'.encode())
    wrapper = etree.SubElement(root, f"{{{SAML}}}EncryptedAssertion", nsmap={"saml2": SAML})
    fill(wrapper, plaintext, sp_key.certificate_pem)

    result = decrypt_assertion(wrapper, (sp_key,))

    assert result.count(b"xmlns:saml2=") == declared
    standing = etree.fromstring(
        f'<samlp:Response xmlns:samlp="{SAMLP}">'.encode() + result + b"</samlp:Response>"
    )
    assert standing[0].tag == f"{{{SAML}}}Assertion"
    assert standing[0].prefix == "saml2"


def test_the_decrypted_assertion_keeps_its_own_prefixes(idp: TestIdp, sp_key: SpKey) -> None:
    """An assertion signed with its own prefix verifies, decrypted into a response using another.

    pysaml2 does this: the Response says ``ns1`` for the assertion namespace,
    the encrypted assertion ``encas2``. Moved as a parsed element, lxml
    would rename it to ``ns1`` and the signature would no longer match.
    """
    root = response(idp)
    assertion = root.find(f"{{{SAML}}}Assertion")
    standalone = etree.fromstring(
        etree.tostring(assertion)
        .replace(b"saml:", b"encas2:")
        .replace(b"xmlns:saml=", b"xmlns:encas2=")
    )
    standalone.remove(standalone.find(f"{{{DS}}}Signature"))
    sign(standalone, idp.keys[0])
    assert standalone.prefix == "encas2"
    wrapper = etree.SubElement(root, f"{{{SAML}}}EncryptedAssertion")
    root.replace(assertion, wrapper)
    fill(wrapper, etree.tostring(standalone), sp_key.certificate_pem)

    assert verify(root, idp, (sp_key,)).name_id == "ada@example.com"
