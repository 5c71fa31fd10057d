"""Decrypting a SAML EncryptedAssertion (XML Encryption) with the SP's keys.

What an IdP sends is an ``xenc:EncryptedData`` of type Element: the
assertion encrypted with a fresh AES key (GCM or CBC), and that key
encrypted to the SP's certificate with RSA-OAEP (``xenc:EncryptedKey``,
inside the data's ``ds:KeyInfo`` or beside it in the EncryptedAssertion).
Only these algorithms are accepted, checked before any cryptography runs:

* content: AES-128/192/256-GCM (xmlenc11) and AES-128/192/256-CBC (xmlenc);
* key transport: RSA-OAEP, as ``rsa-oaep-mgf1p`` (xmlenc, MGF1 with SHA-1)
  or ``rsa-oaep`` (xmlenc11, MGF1 with SHA-1/224/256/384/512), with the
  SHA-1 or SHA-2 digest the IdP names.

RSA PKCS#1 v1.5 key transport (``rsa-1_5``) is refused with a finding of its
own: its padding errors let whoever can post responses decrypt the session
key (Bleichenbacher's attack), and the IdP can always be switched to OAEP.

Decryption itself gives nothing away: a session key that does not decrypt
with any SP key, a GCM tag that does not match, CBC padding that is wrong
and CBC plaintext that is not an assertion all end in the same finding, so
a response poster learns nothing about the plaintext from the answer
(Jager and Somorovsky's attack on CBC in XML Encryption reads the
difference). The plaintext is parsed by the same hardened parser as the
response (no DTD, no entities, no network) and must be exactly one
``saml:Assertion``; the caller then runs every check of a plaintext
assertion on it, including its signature.

The RSA and AES work uses ``cryptography`` directly: it is a few calls, and
libxmlsec's decryption would need a keys manager per call and accept
algorithms this module refuses.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from typing import Any
from typing import NoReturn
from xml.sax.saxutils import quoteattr

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers import modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree
from onelogin.saml2.xmlparser import DTDForbidden
from onelogin.saml2.xmlparser import EntitiesForbidden
from onelogin.saml2.xmlparser import fromstring

from pbidentity.saml._keys import SpKey
from pbidentity.saml._types import Finding

__all__ = ["DecryptionError", "decrypt_assertion"]

_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_XENC = "http://www.w3.org/2001/04/xmlenc#"
_XENC11 = "http://www.w3.org/2009/xmlenc11#"

_GCM = {
    f"{_XENC11}aes128-gcm": 16,
    f"{_XENC11}aes192-gcm": 24,
    f"{_XENC11}aes256-gcm": 32,
}
_CBC = {
    f"{_XENC}aes128-cbc": 16,
    f"{_XENC}aes192-cbc": 24,
    f"{_XENC}aes256-cbc": 32,
}
_RSA_OAEP_MGF1P = f"{_XENC}rsa-oaep-mgf1p"
_RSA_OAEP = f"{_XENC11}rsa-oaep"
_RSA_1_5 = f"{_XENC}rsa-1_5"
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "http://www.w3.org/2000/09/xmldsig#sha1": hashes.SHA1,
    "http://www.w3.org/2001/04/xmldsig-more#sha224": hashes.SHA224,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashes.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashes.SHA512,
}
_MGFS: dict[str, type[hashes.HashAlgorithm]] = {
    f"{_XENC11}mgf1sha1": hashes.SHA1,
    f"{_XENC11}mgf1sha224": hashes.SHA224,
    f"{_XENC11}mgf1sha256": hashes.SHA256,
    f"{_XENC11}mgf1sha384": hashes.SHA384,
    f"{_XENC11}mgf1sha512": hashes.SHA512,
}
_ELEMENT_TYPE = f"{_XENC}Element"
#: An EncryptedAssertion carries one EncryptedKey per recipient: a handful
#: at most. Each one can cost an RSA decryption per SP key, so a response
#: with many is refused unread.
_MAX_ENCRYPTED_KEYS = 4
_GCM_NONCE = 12
_GCM_TAG = 16
_BLOCK = 16
_XML_DECLARATION = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*\?>")
#: The plaintext's first start tag: its name, then its attributes (quoted values may hold ">").
_START_TAG = re.compile(rb"""\s*<([^\s/>]+)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*/?>""")
_DECLARATION = re.compile(rb"\sxmlns(?::([^\s=]+))?\s*=")
_SUGGESTION = (
    "Give the IdP this SP's current encryption certificate (the SP metadata lists it) and "
    "check that it encrypts with AES-GCM or AES-CBC and RSA-OAEP."
)


class DecryptionError(Exception):
    """The EncryptedAssertion was refused; ``finding`` says why (severity error)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def _fail(code: str, message: str, *, where: str = "", suggestion: str = "") -> NoReturn:
    raise DecryptionError(
        Finding(code=code, severity="error", message=message, where=where, suggestion=suggestion)
    )


def _undecryptable(keys: Sequence[SpKey]) -> NoReturn:
    """The one answer for every failure after the algorithms were accepted."""
    fingerprints = ", ".join(key.fingerprint for key in keys)
    plural = "s" if len(keys) != 1 else ""
    _fail(
        "response.decryption",
        "The encrypted assertion could not be decrypted with this SP's encryption "
        f"certificate{plural} (SHA-256 {fingerprints}): it was encrypted for another "
        "certificate, or altered on the way.",
        where="Response/EncryptedAssertion",
        suggestion=_SUGGESTION,
    )


def _shown_algorithm(value: str | None) -> str:
    # An algorithm URI comes from the poster: keep it short and printable.
    if value is None:
        return "(none)"
    cut = value[:120]
    return '"' + "".join(c if c.isprintable() and c not in "<>&\"'" else "?" for c in cut) + '"'


def _children(element: Any, namespace: str, name: str) -> list[Any]:
    return list(etree.ElementBase.iterchildren(element, f"{{{namespace}}}{name}"))


def _child(element: Any, namespace: str, name: str) -> Any:
    found = _children(element, namespace, name)
    return found[0] if len(found) == 1 else None


def _cipher_value(element: Any, where: str) -> bytes:
    data = _child(element, _XENC, "CipherData")
    value = None if data is None else _child(data, _XENC, "CipherValue")
    if value is None:
        _fail(
            "response.encrypted",
            f"The {where} must carry its ciphertext in one CipherData/CipherValue "
            "(a CipherReference is not accepted).",
            where=f"Response/EncryptedAssertion/{where}",
        )
    try:
        return base64.b64decode("".join((value.text or "").split()), validate=True)
    except binascii.Error:
        _fail(
            "response.encrypted",
            f"The {where}'s CipherValue is not base64.",
            where=f"Response/EncryptedAssertion/{where}",
        )


class _KeyTransport:
    """One EncryptedKey, its algorithm checked: RSA-OAEP with known digests."""

    def __init__(self, encrypted_key: Any) -> None:
        method = _child(encrypted_key, _XENC, "EncryptionMethod")
        algorithm = None if method is None else method.get("Algorithm")
        where = "Response/EncryptedAssertion//EncryptedKey/EncryptionMethod"
        if algorithm == _RSA_1_5:
            _fail(
                "response.key_transport",
                "The assertion's key is encrypted with RSA PKCS#1 v1.5 (rsa-1_5), which is "
                "refused: its padding lets anyone who can post responses to this SP decrypt "
                "assertions (Bleichenbacher's attack).",
                where=where,
                suggestion="In the IdP, set the key transport (key encryption) algorithm to "
                "RSA-OAEP (rsa-oaep-mgf1p or xmlenc11 rsa-oaep).",
            )
        if algorithm not in (_RSA_OAEP_MGF1P, _RSA_OAEP):
            _fail(
                "response.key_transport",
                f"The assertion's key is encrypted with {_shown_algorithm(algorithm)}; accepted: "
                f"{_RSA_OAEP_MGF1P}, {_RSA_OAEP}.",
                where=where,
                suggestion="In the IdP, set the key transport algorithm to RSA-OAEP.",
            )
        digest_node = _child(method, _DS, "DigestMethod")
        digest_uri = None if digest_node is None else digest_node.get("Algorithm")
        digest = hashes.SHA1 if digest_uri is None else _DIGESTS.get(digest_uri)
        mgf: type[hashes.HashAlgorithm] | None = hashes.SHA1
        if algorithm == _RSA_OAEP:
            mgf_node = _child(method, _XENC11, "MGF")
            if mgf_node is not None:
                mgf = _MGFS.get(mgf_node.get("Algorithm") or "")
        if digest is None or mgf is None:
            _fail(
                "response.key_transport",
                f"The RSA-OAEP digest {_shown_algorithm(digest_uri)} or its mask function is "
                "not accepted; accepted digests: SHA-1, SHA-224, SHA-256, SHA-384, SHA-512.",
                where=where,
            )
        label_node = _child(method, _XENC, "OAEPparams")
        try:
            label = (
                None
                if label_node is None
                else base64.b64decode("".join((label_node.text or "").split()), validate=True)
            )
        except binascii.Error:
            _fail("response.key_transport", "The RSA-OAEP OAEPparams is not base64.", where=where)
        self.padding = padding.OAEP(mgf=padding.MGF1(mgf()), algorithm=digest(), label=label)
        self.ciphertext = _cipher_value(encrypted_key, "EncryptedKey")
        key_info = _child(encrypted_key, _DS, "KeyInfo")
        certificate = None
        if key_info is not None:
            certificate = next(etree.ElementBase.iter(key_info, f"{{{_DS}}}X509Certificate"), None)
        self.named_certificate = (
            "".join((certificate.text or "").split()) if certificate is not None else None
        )


def _encrypted_keys(encrypted_assertion: Any, encrypted_data: Any) -> list[_KeyTransport]:
    """The EncryptedKeys an IdP may send: in the data's KeyInfo, or beside the data."""
    key_info = _child(encrypted_data, _DS, "KeyInfo")
    found = [] if key_info is None else _children(key_info, _XENC, "EncryptedKey")
    found += _children(encrypted_assertion, _XENC, "EncryptedKey")
    if not found:
        _fail(
            "response.encrypted",
            "The encrypted assertion carries no EncryptedKey: nothing says which key decrypts it.",
            where="Response/EncryptedAssertion",
            suggestion=_SUGGESTION,
        )
    if len(found) > _MAX_ENCRYPTED_KEYS:
        _fail(
            "response.encrypted",
            f"The encrypted assertion carries {len(found)} EncryptedKeys; at most "
            f"{_MAX_ENCRYPTED_KEYS} are accepted.",
            where="Response/EncryptedAssertion",
        )
    return [_KeyTransport(node) for node in found]


def _session_key(
    transports: Sequence[_KeyTransport], keys: Sequence[SpKey], size: int
) -> bytes | None:
    """The AES key, decrypted with the first SP key that works; ``None`` if none does."""
    for transport in transports:
        # The SP key whose certificate the EncryptedKey names goes first;
        # the others are still tried (a rollover, an IdP that names none).
        ordered = sorted(keys, key=lambda k: k.certificate_body != transport.named_certificate)
        for key in ordered:
            try:
                session = key.private_key.decrypt(transport.ciphertext, transport.padding)
            except ValueError:
                continue
            if len(session) == size:
                return session
    return None


def _content(algorithm: str, session: bytes, ciphertext: bytes) -> bytes | None:
    """The plaintext, or ``None`` when the ciphertext does not decrypt."""
    if algorithm in _GCM:
        if len(ciphertext) < _GCM_NONCE + _GCM_TAG:
            return None
        try:
            return AESGCM(session).decrypt(ciphertext[:_GCM_NONCE], ciphertext[_GCM_NONCE:], None)
        except InvalidTag:
            return None
    body = ciphertext[_BLOCK:]
    if len(ciphertext) < 2 * _BLOCK or len(body) % _BLOCK:
        return None
    decryptor = Cipher(algorithms.AES(session), modes.CBC(ciphertext[:_BLOCK])).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    # XML Encryption's padding: the last octet is the padding length, the
    # others are arbitrary (it is not PKCS#7).
    length = padded[-1]
    if not 1 <= length <= _BLOCK:
        return None
    return padded[:-length]


def _wrapper(encrypted_assertion: Any) -> tuple[bytes, bytes]:
    """An element declaring the namespaces in scope where the assertion was encrypted.

    The plaintext is the assertion as it stood in the response: it may use a
    prefix (``saml:``) that only the Response declared.
    """
    declarations = "".join(
        f" xmlns={quoteattr(uri)}" if prefix is None else f" xmlns:{prefix}={quoteattr(uri)}"
        for prefix, uri in encrypted_assertion.nsmap.items()
    )
    return f"<plaintext{declarations}>".encode(), b"</plaintext>"


def _parse_plaintext(plaintext: bytes, encrypted_assertion: Any) -> bytes | None:
    """The plaintext, ready to stand in the EncryptedAssertion's place; ``None`` if no assertion.

    It must parse, with the namespaces in scope where it was encrypted, to
    exactly one saml:Assertion. The caller puts it into the response as text
    and parses the whole again: moving a parsed element into another tree
    would let lxml rename its prefixes to the new parent's, which changes its
    canonical form, and so its signature.
    """
    plaintext = _XML_DECLARATION.sub(b"", plaintext, count=1)
    if b"<!DOCTYPE" in plaintext or b"<!ENTITY" in plaintext:
        raise DTDForbidden(None, None, None)
    opening, closing = _wrapper(encrypted_assertion)
    try:
        wrapper = fromstring(opening + plaintext + closing)
    except (etree.XMLSyntaxError, EntitiesForbidden, DTDForbidden, ValueError):
        return None
    elements = list(wrapper)
    text = (wrapper.text or "") + "".join(e.tail or "" for e in elements)
    if len(elements) != 1 or text.strip() or elements[0].tag != f"{{{_SAML}}}Assertion":
        return None
    start = _START_TAG.match(plaintext)
    if start is None:
        return None
    # A prefix the EncryptedAssertion itself declared is gone once the
    # assertion stands in its place: the assertion declares it instead.
    declared = {m.group(1) or b"" for m in _DECLARATION.finditer(start.group(2))}
    parent = encrypted_assertion.getparent()
    scope = {} if parent is None else parent.nsmap
    missing = b"".join(
        (b" xmlns=" if prefix is None else b" xmlns:" + prefix.encode() + b"=")
        + quoteattr(uri).encode()
        for prefix, uri in encrypted_assertion.nsmap.items()
        if scope.get(prefix) != uri and (prefix or "").encode() not in declared
    )
    return plaintext[: start.end(1)] + missing + plaintext[start.end(1) :]


def decrypt_assertion(encrypted_assertion: Any, keys: Sequence[SpKey]) -> bytes:
    """The saml:Assertion an EncryptedAssertion holds, as XML to put in its place.

    ``keys`` are the SP's encryption keys (every key of a rollover). Raises
    :class:`DecryptionError` with the finding to show.
    """
    if not keys:
        _fail(
            "response.encrypted",
            "The assertion is encrypted (EncryptedAssertion), and this SP has no encryption key "
            "to decrypt it.",
            where="Response/EncryptedAssertion",
            suggestion="Turn off assertion encryption for this application in the IdP, or turn "
            "on encrypted assertions for this connection (the SP metadata then lists the "
            "encryption certificate to give the IdP).",
        )
    found = _children(encrypted_assertion, _XENC, "EncryptedData")
    others = [
        child
        for child in etree.ElementBase.iterchildren(encrypted_assertion)
        if child.tag not in (f"{{{_XENC}}}EncryptedData", f"{{{_XENC}}}EncryptedKey")
    ]
    if len(found) != 1 or others:
        _fail(
            "response.encrypted",
            "An EncryptedAssertion must hold one EncryptedData (and its EncryptedKeys); "
            f"received {len(found)} EncryptedData and {len(others)} other elements.",
            where="Response/EncryptedAssertion",
        )
    encrypted_data = found[0]
    data_type = encrypted_data.get("Type")
    if data_type is not None and data_type != _ELEMENT_TYPE:
        _fail(
            "response.encrypted",
            f"The EncryptedData's Type is {_shown_algorithm(data_type)}; an encrypted assertion "
            f"is of type {_ELEMENT_TYPE}.",
            where="Response/EncryptedAssertion/EncryptedData/@Type",
        )
    method = _child(encrypted_data, _XENC, "EncryptionMethod")
    algorithm = None if method is None else method.get("Algorithm")
    size = _GCM.get(algorithm or "") or _CBC.get(algorithm or "")
    if algorithm is None or size is None:
        _fail(
            "response.encryption_algorithm",
            f"The assertion is encrypted with {_shown_algorithm(algorithm)}; accepted: "
            "AES-128/192/256-GCM and AES-128/192/256-CBC.",
            where="Response/EncryptedAssertion/EncryptedData/EncryptionMethod",
            suggestion="In the IdP, set the data encryption algorithm to AES-256-GCM (or "
            "AES-128-GCM; AES-CBC is accepted too).",
        )
    transports = _encrypted_keys(encrypted_assertion, encrypted_data)
    ciphertext = _cipher_value(encrypted_data, "EncryptedData")
    session = _session_key(transports, keys, size)
    # No key decrypted the session key: carry on with a random one, so that
    # this failure takes the same path (and the same answer) as a bad tag.
    plaintext = _content(algorithm, session or os.urandom(size), ciphertext)
    if plaintext is None:
        _undecryptable(keys)
    try:
        assertion = _parse_plaintext(plaintext, encrypted_assertion)
    except DTDForbidden:
        if algorithm in _CBC:
            # CBC plaintext can be steered by flipping ciphertext bits: a
            # distinct answer would tell the poster something about it.
            _undecryptable(keys)
        _fail(
            "response.malformed",
            "The decrypted assertion contains a DOCTYPE or entity declaration, which SAML "
            "does not allow.",
            where="Response/EncryptedAssertion",
            suggestion="This is not what an identity provider sends; check who posted it.",
        )
    if assertion is None:
        if algorithm in _CBC:
            _undecryptable(keys)
        _fail(
            "response.malformed",
            "The encrypted assertion decrypted to something other than one well-formed "
            "saml:Assertion.",
            where="Response/EncryptedAssertion",
        )
    return assertion
