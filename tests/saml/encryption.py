"""Encrypting assertions as an IdP does, with libxmlsec (python-xmlsec), for tests.

An IdP encrypts the signed assertion with a fresh AES key and encrypts that
key to the SP's certificate (XML Encryption, SAML core 6). Here libxmlsec
does both, from a template naming the algorithms, so the SP's decryption is
checked against an implementation other than its own: pbidentity decrypts
with ``cryptography``, and never with libxmlsec.
"""

from __future__ import annotations

import base64
from typing import Any
from typing import Final
from typing import Literal

import xmlsec
from lxml import etree

from tests.saml.idp import NS

__all__ = [
    "CONTENT",
    "KEY_TRANSPORT",
    "XENC",
    "encrypt_assertion",
    "encrypt_bytes",
    "fill",
]

XENC: Final = "http://www.w3.org/2001/04/xmlenc#"
XENC11: Final = "http://www.w3.org/2009/xmlenc11#"
DS: Final = NS["ds"]

#: Content encryption: name -> (algorithm URI, key bits).
CONTENT: Final = {
    "aes128-gcm": (f"{XENC11}aes128-gcm", 128),
    "aes256-gcm": (f"{XENC11}aes256-gcm", 256),
    "aes128-cbc": (f"{XENC}aes128-cbc", 128),
    "aes256-cbc": (f"{XENC}aes256-cbc", 256),
}
#: Key transport: name -> (algorithm URI, DigestMethod URI or None, MGF URI or None).
KEY_TRANSPORT: Final = {
    # xmlenc 1.0 OAEP as Okta, ADFS and Shibboleth send it: SHA-1 digest and MGF1.
    "rsa-oaep-mgf1p": (f"{XENC}rsa-oaep-mgf1p", None, None),
    "rsa-oaep-mgf1p-sha256": (f"{XENC}rsa-oaep-mgf1p", f"{XENC}sha256", None),
    # xmlenc 1.1 OAEP as Entra ID and newer Shibboleth send it.
    "rsa-oaep": (f"{XENC11}rsa-oaep", None, None),
    "rsa-oaep-sha256": (f"{XENC11}rsa-oaep", f"{XENC}sha256", f"{XENC11}mgf1sha256"),
    "rsa-1_5": (f"{XENC}rsa-1_5", None, None),
}

Placement = Literal["key_info", "beside"]


def _template(
    content: str, key_transport: str, certificate_pem: str | None, placement: Placement
) -> tuple[Any, Any]:
    """An EncryptedData template, and the EncryptedKey template if it goes beside the data."""
    content_uri, _ = CONTENT[content]
    transport_uri, digest, mgf = KEY_TRANSPORT[key_transport]
    data = etree.Element(
        f"{{{XENC}}}EncryptedData",
        nsmap={"xenc": XENC, "ds": DS},
        Type=f"{XENC}Element",
    )
    etree.SubElement(data, f"{{{XENC}}}EncryptionMethod", Algorithm=content_uri)
    key_info = etree.SubElement(data, f"{{{DS}}}KeyInfo")
    encrypted_key = etree.Element(f"{{{XENC}}}EncryptedKey", nsmap={"xenc": XENC, "ds": DS})
    if placement == "key_info":
        key_info.append(encrypted_key)
    else:
        encrypted_key.set("Id", "_encrypted-key-1")
        etree.SubElement(
            key_info,
            f"{{{DS}}}RetrievalMethod",
            Type=f"{XENC}EncryptedKey",
            URI="#_encrypted-key-1",
        )
    method = etree.SubElement(encrypted_key, f"{{{XENC}}}EncryptionMethod", Algorithm=transport_uri)
    if digest is not None:
        etree.SubElement(method, f"{{{DS}}}DigestMethod", Algorithm=digest)
    if mgf is not None:
        etree.SubElement(method, f"{{{XENC11}}}MGF", nsmap={"xenc11": XENC11}, Algorithm=mgf)
    if certificate_pem is not None:
        # Which certificate the key was encrypted to, as Shibboleth and ADFS say.
        key_key_info = etree.SubElement(encrypted_key, f"{{{DS}}}KeyInfo")
        x509_data = etree.SubElement(key_key_info, f"{{{DS}}}X509Data")
        body = "".join(
            line for line in certificate_pem.strip().splitlines() if not line.startswith("-----")
        )
        etree.SubElement(x509_data, f"{{{DS}}}X509Certificate").text = body
    cipher = etree.SubElement(encrypted_key, f"{{{XENC}}}CipherData")
    etree.SubElement(cipher, f"{{{XENC}}}CipherValue")
    cipher = etree.SubElement(data, f"{{{XENC}}}CipherData")
    etree.SubElement(cipher, f"{{{XENC}}}CipherValue")
    return data, encrypted_key


def _context(certificate_pem: str, content: str) -> xmlsec.EncryptionContext:
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(certificate_pem, xmlsec.KeyFormat.CERT_PEM))
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(
        xmlsec.KeyData.AES, CONTENT[content][1], xmlsec.KeyDataType.SESSION
    )
    return context


def encrypt_assertion(
    response: Any,
    certificate_pem: str,
    *,
    content: str = "aes256-gcm",
    key_transport: str = "rsa-oaep-mgf1p",
    placement: Placement = "key_info",
    name_certificate: bool = True,
) -> Any:
    """Replace the Response's (signed) Assertion in place by an EncryptedAssertion; return it.

    ``placement`` puts the EncryptedKey inside the data's KeyInfo (Okta,
    Entra ID) or beside the data with a RetrievalMethod (Shibboleth's
    default). ``name_certificate`` puts the SP certificate in the
    EncryptedKey's KeyInfo.
    """
    assertion = response.find(f"{{{NS['saml']}}}Assertion")
    # Made inside the response, so that it reuses its saml prefix as an IdP would.
    wrapper = etree.SubElement(response, f"{{{NS['saml']}}}EncryptedAssertion")
    assertion.addprevious(wrapper)
    wrapper.append(assertion)
    data, encrypted_key = _template(
        content, key_transport, certificate_pem if name_certificate else None, placement
    )
    context = _context(certificate_pem, content)
    if placement == "beside":
        # libxmlsec fills a KeyInfo's EncryptedKey only: encrypt with the key
        # inside, then move it beside the data where the RetrievalMethod points.
        retrieval = data.find(f"{{{DS}}}KeyInfo/{{{DS}}}RetrievalMethod")
        retrieval.addprevious(encrypted_key)
        encrypted = context.encrypt_xml(data, assertion)
        encrypted_key = encrypted.find(f"{{{DS}}}KeyInfo/{{{XENC}}}EncryptedKey")
        wrapper.append(encrypted_key)
    else:
        encrypted = context.encrypt_xml(data, assertion)
    return wrapper


def encrypt_bytes(
    response: Any,
    plaintext: bytes,
    certificate_pem: str,
    *,
    content: str = "aes256-gcm",
    key_transport: str = "rsa-oaep-mgf1p",
) -> Any:
    """Replace the Response's Assertion by an EncryptedAssertion of arbitrary ``plaintext``.

    What an attacker who has the SP's certificate (it is public) can post:
    anything, encrypted as an IdP would.
    """
    assertion = response.find(f"{{{NS['saml']}}}Assertion")
    # Made inside the response, so that it reuses its saml prefix as an IdP would.
    wrapper = etree.SubElement(response, f"{{{NS['saml']}}}EncryptedAssertion")
    assertion.addprevious(wrapper)
    response.remove(assertion)
    fill(wrapper, plaintext, certificate_pem, content=content, key_transport=key_transport)
    return wrapper


def fill(
    wrapper: Any,
    plaintext: bytes,
    certificate_pem: str,
    *,
    content: str = "aes256-gcm",
    key_transport: str = "rsa-oaep-mgf1p",
) -> None:
    """Put ``plaintext``, encrypted, into an empty EncryptedAssertion ``wrapper``."""
    data, _ = _template(content, key_transport, None, "key_info")
    wrapper.append(data)
    encrypted = _context(certificate_pem, content).encrypt_binary(data, plaintext)
    # encrypt_binary writes no Type: say what an IdP says.
    encrypted.set("Type", f"{XENC}Element")


def cipher_value(wrapper: Any) -> Any:
    """The EncryptedData's CipherValue element (the assertion's ciphertext)."""
    return wrapper.find(f"{{{XENC}}}EncryptedData/{{{XENC}}}CipherData/{{{XENC}}}CipherValue")


def tamper(wrapper: Any, change: Any) -> None:
    """Apply ``change`` (bytes -> bytes) to the assertion's ciphertext."""
    node = cipher_value(wrapper)
    node.text = base64.b64encode(change(base64.b64decode("".join(node.text.split())))).decode()
