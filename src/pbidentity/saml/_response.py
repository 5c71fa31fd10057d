"""Verifying a SAML Response posted to the ACS: python3-saml's XML work plus what it leaves out.

python3-saml parses the response with its hardened parser (no DTD, no
entities, no comments, no network) and rejects signature-wrapping layouts
(``process_signed_elements``). Everything else that decides whether a sign-in
is accepted is done here, each check once and with its own error code:

* the body is capped before and after base64 decoding;
* every ``ds:Signature`` may only use allowlisted algorithms and transforms,
  checked before any cryptography runs (libxmlsec would otherwise run an
  XSLT transform from an unauthenticated POST, GHSA-8mmq-f9vf-8fg2), and
  libxmlsec is told the same allowlist when it verifies;
* an EncryptedAssertion is decrypted with the SP's keys
  (:mod:`pbidentity.saml._decrypt`) and every check below runs on the
  assertion it holds; a workspace that requires encryption refuses a
  plaintext assertion;
* the assertion must be signed, by one of the IdP's certificates, which is
  not expired; a signed Response is verified too. An encrypted assertion may
  instead be covered by the Response's signature alone: that signature is
  verified over the ciphertext, which decrypts to exactly one assertion;
* Destination, Recipient and Audience must equal the SP's ACS URL and entity
  ID exactly, the Issuer the IdP's entity ID;
* InResponseTo must answer the AuthnRequest when there was one;
* every time bound (Conditions, SubjectConfirmationData, the session) is
  checked against the caller's ``now`` with the caller's clock skew: upstream
  reads the wall clock and allows a fixed 300 s on Conditions only.

python3-saml's own ``is_valid`` is therefore not called: its checks are the
looser versions of the ones above, and it would re-read the protocol XSD
from disk on every call. The schema is parsed once per thread here. Nothing
of python3-saml is patched: subclasses change its behaviour for this module
only, and other users of it in the process see it unchanged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import threading
import types
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import NoReturn

import attrs
import onelogin.saml2
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.utils import OneLogin_Saml2_ValidationError
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from onelogin.saml2.xmlparser import DTDForbidden
from onelogin.saml2.xmlparser import EntitiesForbidden

from pbidentity.domain import IdentityProvider
from pbidentity.exceptions import PbIdentityError
from pbidentity.saml._decrypt import DecryptionError
from pbidentity.saml._decrypt import decrypt_assertion
from pbidentity.saml._keys import SpKey
from pbidentity.saml._types import Finding
from pbidentity.saml._types import ServiceProvider
from pbidentity.saml._validate import SIGNING_KEY_ALGORITHMS

__all__ = ["Assertion", "SignInError", "verify_response"]

_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_EXC_C14N_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#: Canonicalizations with an ``InclusiveNamespaces`` child allowed.
_EXCLUSIVE_C14N = frozenset(
    {
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    }
)
#: The parser drops comments before anything is verified, so the
#: WithComments variants canonicalize exactly like the plain ones.
_C14N = _EXCLUSIVE_C14N | {
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
    "http://www.w3.org/2006/12/xml-c14n11#WithComments",
}
_TRANSFORMS = _C14N | {_ENVELOPED}
#: A ds:Signature in SAML holds these and nothing else (no ds:Object, no Manifest).
_SIGNATURE_PARTS = frozenset(
    f"{{{_DS}}}{name}" for name in ("SignedInfo", "SignatureValue", "KeyInfo")
)
_SIGNATURE_METHODS = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    }
)
_DIGEST_METHODS = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)
#: A SAML signature needs two transforms (enveloped, then c14n); a few more
#: is still harmless, a long chain is not a signature any IdP makes.
_MAX_TRANSFORMS = 4
#: The processing instruction that stands where the decrypted assertion goes.
_DECRYPTED = "pbidentity-decrypted-assertion"
#: Received values quoted in messages are cut to this many characters.
_SHOWN = 200


def _xmlsec_transforms(hrefs: frozenset[str]) -> tuple[Any, ...]:
    """The libxmlsec transform objects for these algorithm URIs."""
    by_href = {
        getattr(xmlsec.Transform, name).href: getattr(xmlsec.Transform, name)
        for name in dir(xmlsec.Transform)
        if not name.startswith("_")
    }
    return tuple(by_href[href] for href in sorted(hrefs))


# Told to libxmlsec too, so a transform the pre-check missed still cannot run.
_REFERENCE_TRANSFORMS = _xmlsec_transforms(_TRANSFORMS | _DIGEST_METHODS)
_SIGNATURE_TRANSFORMS = _xmlsec_transforms(_C14N | _SIGNATURE_METHODS)


class SignInError(PbIdentityError):
    """A SAML response was refused; ``finding`` says which check failed.

    The finding's severity is ``error`` and its code names the check
    (``response.audience``, ``response.signature``...). ``str(error)`` is the
    finding's message: what was received and what was expected. Values taken
    from the response come from whoever posted it, so they are quoted, cut to
    200 characters, and have control characters and HTML special characters
    escaped.
    """

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding

    @property
    def code(self) -> str:
        """The finding's stable code, e.g. ``response.destination``."""
        return self.finding.code


@attrs.frozen(kw_only=True)
class Assertion:
    """What a verified SAML response says about who signed in.

    Replay protection is the caller's: remember ``assertion_id`` until
    ``not_on_or_after`` and take the AuthnRequest ``in_response_to`` answers
    once.
    """

    response_id: str
    assertion_id: str
    #: The IdP's entity ID, as the assertion's Issuer says it.
    issuer: str
    #: The AuthnRequest the response answers; ``None`` for an IdP-initiated sign-in.
    in_response_to: str | None
    name_id: str
    name_id_format: str | None
    #: Attribute name to its values, in document order (empty values dropped).
    attributes: Mapping[str, tuple[str, ...]]
    session_index: str | None
    issue_instant: datetime
    #: The latest instant the assertion may still be used: the earlier of
    #: Conditions' and the subject confirmation's NotOnOrAfter, plus the
    #: clock skew that was allowed. Remember the assertion ID until then.
    not_on_or_after: datetime
    #: The position in ``idp.certificates`` of the certificate that verified
    #: the assertion's signature.
    signed_by: int
    #: Seconds from our ``now`` to the assertion's IssueInstant: positive when
    #: the IdP's clock is ahead (transit time makes it slightly negative).
    clock_offset: float


def verify_response(
    saml_response: str | bytes,
    *,
    sp: ServiceProvider,
    idp: IdentityProvider,
    request_id: str | None,
    now: datetime,
    clock_skew: timedelta = timedelta(seconds=120),
    max_bytes: int = 256 * 1024,
    decryption_keys: Sequence[SpKey] = (),
    require_encryption: bool = False,
) -> Assertion:
    """Verify a SAMLResponse posted to the ACS and return what it asserts.

    ``saml_response`` is the base64 form value as posted. ``request_id`` is
    the ID of the AuthnRequest the response must answer (its InResponseTo
    must be exactly that); ``None`` accepts an unsolicited (IdP-initiated)
    response, and an InResponseTo it carries is reported in the result for
    the caller to judge. ``now`` must be timezone-aware; every time bound is
    checked against it with ``clock_skew`` either way. ``max_bytes`` caps the
    decoded XML.

    ``decryption_keys`` are the SP's encryption keys (all of a rollover): an
    EncryptedAssertion is decrypted with them, and refused when there are
    none. ``require_encryption`` refuses a plaintext assertion.

    Raises :class:`SignInError` for any response that is not accepted,
    whatever failed inside (parsing, schema, signature, a check).
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    encoded = _decode(saml_response, max_bytes)
    try:
        return _Verification(
            encoded,
            sp,
            idp,
            request_id,
            now,
            clock_skew,
            tuple(decryption_keys),
            require_encryption,
        ).run()
    except SignInError:
        raise
    except (DTDForbidden, EntitiesForbidden):
        _fail(
            "response.malformed",
            "The response contains a DOCTYPE or entity declaration, which SAML does not allow.",
            suggestion="This is not what an identity provider sends; check who posted it.",
        )
    except etree.XMLSyntaxError as error:
        _fail("response.malformed", f"The response is not well-formed XML: {_shown(str(error))}.")
    except OneLogin_Saml2_ValidationError as error:
        _fail(
            "response.signature",
            f"The response's signatures are not laid out as SAML requires: {_shown(str(error))}.",
        )
    except Exception as error:  # anything from python3-saml, lxml or libxmlsec
        _fail(
            "response.invalid",
            f"The response could not be verified: {type(error).__name__}: {_shown(str(error))}.",
        )


# --- decoding and the python3-saml objects -------------------------------------------------


def _decode(saml_response: str | bytes, max_bytes: int) -> bytes:
    """The base64 value with line breaks removed, after the size caps; refuses non-base64."""
    limit = 4 * (max_bytes // 3 + 1)
    # Some IdPs wrap the base64 in lines: allow for the line breaks at first,
    # but never decode (or even copy) an oversized body.
    if len(saml_response) > limit + limit // 16 + 64:
        _too_large(f"{len(saml_response)} base64 characters", max_bytes)
    if isinstance(saml_response, str):
        try:
            raw = saml_response.encode("ascii")
        except UnicodeEncodeError:
            _fail(
                "response.malformed",
                "The SAMLResponse value is not base64: it has non-ASCII characters.",
            )
    else:
        raw = saml_response
    compact = raw.translate(None, b" \t\r\n")
    if not compact:
        _fail("response.malformed", "The SAMLResponse value is empty.")
    if len(compact) > limit:
        _too_large(f"{len(compact)} base64 characters", max_bytes)
    try:
        xml = base64.b64decode(compact, validate=True)
    except binascii.Error as error:
        _fail("response.malformed", f"The SAMLResponse value is not valid base64 ({error}).")
    if len(xml) > max_bytes:
        _too_large(f"{len(xml)} bytes of XML", max_bytes)
    return compact


def _too_large(received: str, max_bytes: int) -> NoReturn:
    _fail(
        "response.too_large",
        f"The response is too large: received {received}, at most {max_bytes} bytes of XML "
        "are accepted.",
        suggestion="An IdP response is a few kilobytes; a huge one is not a sign-in.",
    )


class _Settings(OneLogin_Saml2_Settings):  # type: ignore[misc]
    """Settings that never read key or certificate files.

    Upstream falls back to ``certs/sp.key`` (and ``sp.crt``, ``idp.crt``)
    beside the installed package whenever a value is empty: a file there must
    never become this SP's key or an IdP's certificate.
    """

    def get_sp_key(self) -> str | None:
        return self._sp.get("privateKey") or None

    def get_sp_cert(self) -> str | None:
        return self._sp.get("x509cert") or None

    def get_sp_cert_new(self) -> str | None:
        return self._sp.get("x509certNew") or None

    def get_idp_cert(self) -> str | None:
        return self._idp.get("x509cert") or None


class _Response(OneLogin_Saml2_Response):  # type: ignore[misc]
    """python3-saml's response object with the algorithm allowlist in front of its checks."""

    def process_signed_elements(self) -> list[str]:
        # The allowlist runs before python3-saml looks at the signatures and
        # long before libxmlsec would run any transform.
        _check_algorithms(self.document)
        if self.encrypted:
            _check_algorithms(self.decrypted_document)
        signed: list[str] = super().process_signed_elements()
        return signed

    def _decrypt_assertion(self, xml: Any) -> Any:
        # Decrypted by _Verification, with the SP's keys and its own errors;
        # upstream's libxmlsec decryption would accept rsa-1_5.
        return xml


def settings_dict(sp: ServiceProvider, idp: IdentityProvider) -> dict[str, Any]:
    """The python3-saml settings for one SP and IdP, every security choice spelled out.

    Defaults upstream are weak (nothing must be signed, SHA-1 passes), so
    each one that matters is given. The SP's certificate and key are empty
    strings on purpose: this SP neither signs nor decrypts.
    """
    certificates = [_pem(c) for c in idp.certificates]
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": sp.entity_id,
            "assertionConsumerService": {
                "url": sp.acs_url,
                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST,
            },
            "NameIDFormat": sp.nameid_format,
            "x509cert": "",
            "privateKey": "",
        },
        "idp": {
            "entityId": idp.entity_id,
            "singleSignOnService": {"url": idp.sso_url},
            "x509cert": certificates[0] if certificates else "",
            "x509certMulti": {"signing": certificates},
        },
        "security": {
            "wantAssertionsSigned": True,
            # A signed Response is verified when there is one; the assertion's
            # signature is what is required.
            "wantMessagesSigned": False,
            "rejectDeprecatedAlgorithm": True,
            "wantAssertionsEncrypted": False,
            "wantNameIdEncrypted": False,
            "wantNameId": True,
            # The NameID alone can identify a member; which attributes are
            # required is the caller's decision.
            "wantAttributeStatement": False,
            # Two Attribute elements of the same name have their values merged.
            "allowRepeatAttributeName": True,
            "requestedAuthnContext": False,
            "failOnAuthnContextMismatch": False,
            # The SP's own URLs are checked where they are configured; an
            # internal host name must not make every sign-in fail here.
            "allowSingleLabelDomains": True,
            "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
            "digestAlgorithm": OneLogin_Saml2_Constants.SHA256,
        },
    }


@functools.lru_cache(maxsize=256)
def _settings(sp: ServiceProvider, idp: IdentityProvider) -> _Settings:
    # Building settings checks and reformats every certificate; a tenant's
    # SP and IdP rarely change, and the object is only read afterwards.
    try:
        return _Settings(settings_dict(sp, idp))
    except Exception as error:  # python3-saml raises plain Exceptions
        _fail(
            "response.configuration",
            f"The SAML connection's settings are not usable: {_shown(str(error))}.",
            suggestion="Check the IdP's entity ID, SSO URL and certificates.",
        )


# --- the protocol schema, parsed once per thread --------------------------------------------

_SCHEMA_PATH = Path(onelogin.saml2.__file__).parent / "schemas" / "saml-schema-protocol-2.0.xsd"


class _Schemas(threading.local):
    """One parsed protocol schema per thread.

    An lxml XMLSchema keeps its error log on the object, so validating with
    one object from several threads at once would mix their errors.
    """

    schema: Any = None


_schemas = _Schemas()


def _protocol_schema() -> Any:
    schema = _schemas.schema
    if schema is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        schema = etree.XMLSchema(etree.parse(str(_SCHEMA_PATH), parser))
        _schemas.schema = schema
    return schema


# --- certificates ------------------------------------------------------------------------


def _pem(certificate: str) -> str:
    return str(OneLogin_Saml2_Utils.format_cert(certificate, heads=True))


def _load_certificate(pem: str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(_pem(pem).encode("ascii"))
    except ValueError:  # UnicodeEncodeError included
        return None


# Only the IdP's configured certificates go through the cache; what a
# response's KeyInfo carries is loaded without it, so posts cannot churn it.
_certificate = functools.lru_cache(maxsize=512)(_load_certificate)


@functools.lru_cache(maxsize=512)
def _public_key(pem: str) -> Any:
    """The certificate's public key, loaded once, as libxmlsec verifies with it.

    A signature context copies the key it is given. A key loaded from the
    bare public key copies in under a microsecond; one loaded from the
    certificate drags the certificate along (about 50 us a copy), and the
    certificate adds nothing to checking a signature.
    """
    certificate = _certificate(pem)
    # A key type the validator refuses verifies nothing (and DSA's key class is
    # deprecated in cryptography: it is never loaded).
    if certificate is None or certificate.public_key_algorithm_oid not in SIGNING_KEY_ALGORITHMS:
        return None
    public = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        return xmlsec.Key.from_memory(public, xmlsec.KeyFormat.PEM, None)
    except xmlsec.Error:
        return None


def _body(certificate: str) -> str:
    """A certificate's base64 body alone, to compare PEM with a KeyInfo's text."""
    return str(OneLogin_Saml2_Utils.format_cert(certificate, heads=False))


def _fingerprint(certificate: x509.Certificate) -> str:
    """The certificate's SHA-256 fingerprint as IdP consoles show it: ``AB:CD:...``."""
    return ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))


# --- checks ---------------------------------------------------------------------------------


def _fail(code: str, message: str, *, where: str = "", suggestion: str = "") -> NoReturn:
    raise SignInError(
        Finding(code=code, severity="error", message=message, where=where, suggestion=suggestion)
    )


def _shown(value: str | None) -> str:
    """A received value made safe to show: quoted, cut, control and HTML characters escaped."""
    if value is None:
        return "(none)"
    cut = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
    printable = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in cut
    )
    return '"' + html.escape(printable, quote=True) + '"'


def _local(tag: Any) -> str:
    return str(etree.QName(tag).localname) if isinstance(tag, str) else str(tag)


# python3-saml's parser makes RestrictedElement nodes, whose iteration methods
# filter comments and processing instructions in Python. The parser already
# dropped those (and refuses entities), so the C methods of the base class
# find the same elements several times faster.
_iterchildren = etree.ElementBase.iterchildren
_iter = etree.ElementBase.iter
#: Every ID in a document, including xml:id, which libxml2 also resolves.
_ALL_IDS = etree.XPath("//@ID | //@xml:id")


def _children(element: Any, name: str, ns: str = _SAML) -> list[Any]:
    return list(_iterchildren(element, f"{{{ns}}}{name}"))


def _child(element: Any, name: str, ns: str = _SAML) -> Any:
    return next(_iterchildren(element, f"{{{ns}}}{name}"), None)


def _text(element: Any, name: str, ns: str = _SAML) -> str | None:
    node = _child(element, name, ns)
    return None if node is None else node.text


def _check_algorithms(document: Any) -> None:
    """Refuse any signature whose algorithms or transforms are not on the allowlist.

    Runs on the parsed tree before anything is verified, over every
    ``ds:Signature`` wherever it is, so nothing an attacker puts in a
    signature is ever executed.
    """
    for signature in _iter(document, f"{{{_DS}}}Signature"):
        where = f"Signature in {_local(signature.getparent().tag)}"
        children = [child.tag for child in _iterchildren(signature)]
        if [c for c in children if c not in _SIGNATURE_PARTS] or (
            children.count(f"{{{_DS}}}SignedInfo") != 1
        ):
            _fail(
                "response.signature",
                "A signature must hold one SignedInfo, a SignatureValue and at most a KeyInfo; "
                f"received {', '.join(_local(c) for c in children) or 'nothing'}.",
                where=where,
            )
        signed_info = _child(signature, "SignedInfo", _DS)
        c14n = _child(signed_info, "CanonicalizationMethod", _DS)
        _check_method(c14n, _C14N, "response.transform", "canonicalization", where)
        method = _child(signed_info, "SignatureMethod", _DS)
        _check_method(
            method, _SIGNATURE_METHODS, "response.algorithm", "signature algorithm", where
        )
        references = _children(signed_info, "Reference", _DS)
        if len(references) != 1:
            _fail(
                "response.signature",
                "A signature must sign exactly one element; received "
                f"{len(references)} references.",
                where=where,
            )
        reference = references[0]
        uri = reference.get("URI") or ""
        if not uri.startswith("#") or len(uri) == 1:
            _fail(
                "response.signature",
                f'A signature must point at the element it signs by ID (URI="#..."); '
                f"received URI={_shown(uri)}.",
                where=where,
            )
        transforms = _child(reference, "Transforms", _DS)
        chain = [] if transforms is None else list(_iterchildren(transforms))
        if len(chain) > _MAX_TRANSFORMS:
            _fail(
                "response.transform",
                f"A signature has {len(chain)} transforms; at most {_MAX_TRANSFORMS} are accepted.",
                where=where,
            )
        for transform in chain:
            if transform.tag != f"{{{_DS}}}Transform":
                _fail(
                    "response.transform",
                    f"Unexpected element {_shown(_local(transform.tag))} among the transforms.",
                    where=where,
                )
            _check_method(transform, _TRANSFORMS, "response.transform", "transform", where)
        digest = _child(reference, "DigestMethod", _DS)
        _check_method(digest, _DIGEST_METHODS, "response.algorithm", "digest algorithm", where)


def _check_method(node: Any, allowed: frozenset[str], code: str, what: str, where: str) -> None:
    algorithm = None if node is None else node.get("Algorithm")
    if algorithm not in allowed:
        _fail(
            code,
            f"The {what} {_shown(algorithm)} is not accepted; accepted: "
            f"{', '.join(sorted(allowed))}.",
            where=where,
            suggestion="Configure the IdP to sign with RSA-SHA256 (or stronger) and a SHA-256 "
            "digest."
            if code == "response.algorithm"
            else "",
        )
    children = list(_iterchildren(node))
    if not children:
        return
    exclusive = algorithm in _EXCLUSIVE_C14N and all(
        child.tag == f"{{{_EXC_C14N_NS}}}InclusiveNamespaces" and not list(_iterchildren(child))
        for child in children
    )
    if not exclusive:
        _fail(
            code,
            f"The {what} {_shown(algorithm)} carries content "
            f"({', '.join(_shown(_local(c.tag)) for c in children)}); only an exclusive "
            "canonicalization may carry an InclusiveNamespaces list.",
            where=where,
        )


def _instant(value: str | None, where: str) -> datetime:
    """A SAML time as an aware UTC datetime (SAML times are UTC; a missing zone means UTC)."""
    try:
        parsed = datetime.fromisoformat(value or "")
    except ValueError:
        _fail("response.malformed", f"{where} is not a SAML time: received {_shown(value)}.")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _status_name(code: str | None) -> str:
    prefix = "urn:oasis:names:tc:SAML:2.0:status:"
    return code[len(prefix) :] if code and code.startswith(prefix) else code or ""


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.0f} s"


class _Verification:
    """One run of the checks over one response."""

    def __init__(
        self,
        encoded: bytes,
        sp: ServiceProvider,
        idp: IdentityProvider,
        request_id: str | None,
        now: datetime,
        clock_skew: timedelta,
        decryption_keys: tuple[SpKey, ...] = (),
        require_encryption: bool = False,
    ) -> None:
        self.decryption_keys = decryption_keys
        self.require_encryption = require_encryption
        self.encoded = encoded
        self.sp = sp
        self.idp = idp
        self.request_id = request_id
        self.now = now.astimezone(UTC)
        self.skew = clock_skew

    def run(self) -> Assertion:
        if not self.idp.certificates:
            _fail(
                "response.configuration",
                "The IdP has no signing certificate configured, so no response can be verified.",
                suggestion="Import the IdP's metadata or paste its signing certificate.",
            )
        settings = _settings(self.sp, self.idp)
        response = _Response(settings, self.encoded)
        received = response.document
        self._check_root(received)
        encrypted = self._encrypted_assertion(received)
        response_signer = None
        root = received
        if encrypted is not None:
            # Counted before decrypting: an EncryptedAssertion beside a
            # plaintext Assertion (or a second one) is refused unread.
            self._the_assertion(received, encrypted=True)
            if _child(received, "Signature", _DS) is not None:
                # A signed Response is verified before anything is decrypted:
                # a tampered ciphertext then never reaches the decryption.
                _check_algorithms(received)
                self._check_reference(received)
                self._check_unique_ids(received, [received])
                xmlsec.tree.add_ids(received, ["ID"])
                response_signer = self._verify(received, "response")
            # python3-saml made a copy of the document for the decrypted assertion.
            root = self._decrypted(response.decrypted_document)
            response.decrypted_document = root
        try:
            signed = response.process_signed_elements()
        except OneLogin_Saml2_ValidationError as error:
            _fail(
                "response.signature",
                "The response's signatures are not laid out as SAML requires: "
                f"{_shown(str(error))}.",
            )
        self._check_status(root)
        assertion = self._the_assertion(root)
        self._check_schema(root)
        response_signed = f"{{{_SAMLP}}}Response" in signed
        if response_signer is not None and f"{{{_SAML}}}Assertion" not in signed:
            # The Response's signature covers the ciphertext, and the
            # ciphertext decrypted to this one assertion.
            return self._assertion(root, assertion, response_signer)
        if f"{{{_SAML}}}Assertion" not in signed:
            _fail(
                "response.unsigned",
                "The assertion is not signed; this SP requires a signed assertion (a signature "
                "on the Response alone is not enough)."
                if signed
                else "Neither the response nor its assertion is signed; this SP requires a "
                "signed assertion.",
                where="Assertion",
                suggestion="In the IdP, sign the assertion (or the response and the assertion).",
            )
        self._check_unique_ids(root, [root, assertion] if response_signed else [assertion])
        xmlsec.tree.add_ids(root, ["ID"])
        if response_signed and response_signer is None:
            self._verify(root, "response")
        signed_by = self._verify(assertion, "assertion")
        return self._assertion(root, assertion, signed_by)

    def _assertion(self, root: Any, assertion: Any, signed_by: int) -> Assertion:
        """Run the checks of what the (verified) assertion says; return what it asserts."""
        issuer = self._check_issuers(root, assertion)
        self._check_destination(root)
        issued = _instant(assertion.get("IssueInstant"), "The assertion's IssueInstant")
        self._check_clock(issued)
        conditions_end = self._check_conditions(assertion, issued)
        session_index = self._check_authn_statement(assertion)
        name_id, name_id_format = self._name_id(assertion)
        confirmation_end, confirmation_irt = self._check_confirmations(assertion, root, issued)
        in_response_to = self._check_in_response_to(root, confirmation_irt)
        ends = [confirmation_end] + ([conditions_end] if conditions_end is not None else [])
        return Assertion(
            response_id=root.get("ID"),
            assertion_id=assertion.get("ID"),
            issuer=issuer,
            in_response_to=in_response_to,
            name_id=name_id,
            name_id_format=name_id_format,
            attributes=self._attributes(assertion),
            session_index=session_index,
            issue_instant=issued,
            not_on_or_after=min(ends) + self.skew,
            signed_by=signed_by,
            clock_offset=(issued - self.now).total_seconds(),
        )

    # -- structure ------------------------------------------------------------------------

    def _encrypted_assertion(self, root: Any) -> Any:
        """The Response's EncryptedAssertion, or ``None``; refuses plaintext when required."""
        encrypted = _child(root, "EncryptedAssertion")
        if encrypted is None and self.require_encryption and _child(root, "Assertion") is not None:
            _fail(
                "response.unencrypted",
                "The assertion is not encrypted; this connection requires encrypted assertions.",
                where="Response/Assertion",
                suggestion="Turn on assertion encryption in the IdP with this SP's encryption "
                "certificate (the SP metadata lists it).",
            )
        return encrypted

    def _check_reference(self, element: Any) -> None:
        """Refuse a signature of ``element`` that points at another element."""
        signed_info = _child(_child(element, "Signature", _DS), "SignedInfo", _DS)
        reference = _child(signed_info, "Reference", _DS)
        if reference.get("URI") != "#" + element.get("ID"):
            _fail(
                "response.signature",
                f"The {_local(element.tag)}'s signature points at "
                f"{_shown(reference.get('URI'))}, not at the {_local(element.tag)} "
                f"({_shown(element.get('ID'))}).",
                where=f"{_local(element.tag)}/Signature",
            )

    def _decrypted(self, root: Any) -> Any:
        """``root`` (a copy of the response) with the EncryptedAssertion decrypted in place."""
        encrypted = _child(root, "EncryptedAssertion")
        try:
            plaintext = decrypt_assertion(encrypted, self.decryption_keys)
        except DecryptionError as error:
            raise SignInError(error.finding) from None
        # Put in as text and parsed with the response, as libxmlsec does: the
        # assertion keeps its own prefixes, so its canonical form is the one
        # the IdP signed. The parser drops processing instructions, so the
        # marker cannot come from the response itself.
        marker = etree.ProcessingInstruction(_DECRYPTED)
        root.replace(encrypted, marker)
        document = etree.tostring(root).replace(etree.tostring(marker), plaintext, 1)
        return OneLogin_Saml2_XML.to_etree(document)

    def _check_root(self, root: Any) -> None:
        if root.tag != f"{{{_SAMLP}}}Response":
            _fail(
                "response.malformed",
                f"Expected a SAML 2.0 Response (samlp:Response); received {_shown(str(root.tag))}.",
            )
        if root.get("Version") != "2.0":
            _fail(
                "response.malformed",
                f'Expected a SAML Version of "2.0"; received {_shown(root.get("Version"))}.',
            )
        if not root.get("ID"):
            _fail("response.malformed", "The response has no ID.")

    def _check_schema(self, root: Any) -> None:
        schema = _protocol_schema()
        if not schema.validate(root):
            error = schema.error_log.last_error
            detail = f"line {error.line}: {error.message}" if error is not None else "invalid"
            _fail(
                "response.malformed",
                f"The response does not match the SAML 2.0 protocol schema: {_shown(detail)}.",
            )

    def _check_status(self, root: Any) -> None:
        # Read before the schema check, so a response reporting a failure is
        # reported as such; a missing Status is left to the schema.
        status = _child(root, "Status", _SAMLP)
        code_node = None if status is None else _child(status, "StatusCode", _SAMLP)
        if code_node is None:
            return
        code = code_node.get("Value")
        if code == _SUCCESS:
            return
        sub_node = _child(code_node, "StatusCode", _SAMLP)
        message = f"The IdP did not sign the person in: status {_shown(_status_name(code))}"
        if sub_node is not None:
            message += f" ({_shown(_status_name(sub_node.get('Value')))})"
        text = _text(status, "StatusMessage", _SAMLP)
        if text:
            message += f", with the message {_shown(text.strip())}"
        _fail(
            "response.status",
            message + ".",
            where="Response/Status",
            suggestion="The IdP's sign-in log says why; a Requester status often means the "
            "person is not assigned to the application or a NameID format is not allowed.",
        )

    def _the_assertion(self, root: Any, *, encrypted: bool = False) -> Any:
        # Counted anywhere in the document, as python3-saml's
        # validate_num_assertions does: a second assertion hidden in an
        # Extensions or a ds:Object is how signature wrapping starts.
        found = list(_iter(root, f"{{{_SAML}}}Assertion", f"{{{_SAML}}}EncryptedAssertion"))
        if len(found) != 1:
            _fail(
                "response.assertion",
                f"Expected exactly one assertion in the response; received {len(found)}.",
            )
        assertion = _child(root, "EncryptedAssertion" if encrypted else "Assertion")
        if assertion is None:
            _fail("response.assertion", "The assertion must be a child of the Response.")
        return assertion

    def _check_unique_ids(self, root: Any, signed: list[Any]) -> None:
        # libxmlsec finds the signed element by its ID; with two elements of
        # that ID it could digest one while the other is read.
        ids = _ALL_IDS(root)
        for element in signed:
            value = element.get("ID")
            count = ids.count(value)
            if count != 1:
                what = _local(element.tag)
                _fail(
                    "response.signature",
                    f"The ID of the signed {what} ({_shown(value)}) is used {count} times; a "
                    "signed element's ID must be unique in the response.",
                )

    # -- signatures -----------------------------------------------------------------------

    def _verify(self, element: Any, what: str) -> int:
        """The position of the IdP certificate that verifies the element's signature.

        Every certificate of the IdP is tried (a rollover lists several), the
        one the KeyInfo names first: that is only an ordering, what the
        KeyInfo carries is never trusted.
        """
        signature = _child(element, "Signature", _DS)
        key_info = _child(signature, "KeyInfo", _DS)
        x509_data = None if key_info is None else _child(key_info, "X509Data", _DS)
        carried = None if x509_data is None else _text(x509_data, "X509Certificate", _DS)
        named = _body(carried) if carried else None
        order = sorted(
            range(len(self.idp.certificates)),
            key=lambda i: _body(self.idp.certificates[i]) != named,
        )
        expired: list[tuple[int, x509.Certificate]] = []
        for index in order:
            pem = self.idp.certificates[index]
            key = _public_key(pem)
            if key is None:
                continue
            context = xmlsec.SignatureContext()
            context.key = key
            context.set_enabled_key_data([xmlsec.KeyData.X509])
            for transform in _REFERENCE_TRANSFORMS:
                context.enable_reference_transform(transform)
            for transform in _SIGNATURE_TRANSFORMS:
                context.enable_signature_transform(transform)
            try:
                context.verify(signature)
            except xmlsec.Error:
                continue
            certificate = _certificate(pem)
            if certificate is not None and self.now > certificate.not_valid_after_utc:
                # The same key may have been re-issued in another certificate.
                expired.append((index, certificate))
                continue
            return index
        if expired:
            index, certificate = min(expired)
            _fail(
                "response.certificate_expired",
                f"The {what} is signed with the IdP's certificate #{index + 1} "
                f"(SHA-256 {_fingerprint(certificate)}), which expired on "
                f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; now is "
                f"{self.now:%Y-%m-%d %H:%M} UTC.",
                where=f"{what.capitalize()}/Signature",
                suggestion="Renew the signing certificate in the IdP and import its new metadata.",
            )
        expected = [c for c in (_certificate(p) for p in self.idp.certificates) if c is not None]
        if carried and carried.strip():
            certificate = _load_certificate(carried)
            received = (
                f"its KeyInfo carries a certificate with SHA-256 {_fingerprint(certificate)}"
                if certificate is not None
                else "its KeyInfo carries an unreadable certificate"
            )
        else:
            received = "it carries no certificate"
        _fail(
            "response.signature",
            f"The {what}'s signature does not verify with the IdP's signing "
            f"certificate{'s' if len(expected) != 1 else ''} (SHA-256 "
            f"{', '.join(_fingerprint(c) for c in expected) or 'none readable'}); {received}.",
            where=f"{what.capitalize()}/Signature",
            suggestion="If the IdP's signing certificate changed, import its current metadata; "
            "otherwise the response was altered or signed by someone else.",
        )

    # -- what the assertion says ----------------------------------------------------------

    def _check_issuers(self, root: Any, assertion: Any) -> str:
        expected = self.idp.entity_id
        response_issuer = _child(root, "Issuer")
        if response_issuer is not None and response_issuer.text != expected:
            _fail(
                "response.issuer",
                f"The response's Issuer is {_shown(response_issuer.text)}; expected the IdP's "
                f"entity ID {_shown(expected)}.",
                where="Response/Issuer",
            )
        issuer = _text(assertion, "Issuer")
        if issuer != expected:
            _fail(
                "response.issuer",
                f"The assertion's Issuer is {_shown(issuer)}; expected the IdP's entity ID "
                f"{_shown(expected)}.",
                where="Assertion/Issuer",
                suggestion="Import the metadata of the IdP application that sent this response.",
            )
        return expected

    def _check_destination(self, root: Any) -> None:
        destination = root.get("Destination")
        if destination != self.sp.acs_url:
            received = (
                "the response has no Destination"
                if destination is None
                else f"the response's Destination is {_shown(destination)}"
            )
            _fail(
                "response.destination",
                f"Expected the Destination to be this connection's ACS URL "
                f"{_shown(self.sp.acs_url)} exactly; {received}.",
                where="Response/@Destination",
                suggestion="Set the IdP's single sign-on (ACS) URL to the ACS URL shown here.",
            )

    def _check_clock(self, issued: datetime) -> None:
        if issued > self.now + self.skew:
            _fail(
                "response.clock",
                f"The assertion was issued at {issued:%Y-%m-%d %H:%M:%S} UTC, "
                f"{_seconds(issued - self.now)} ahead of this server's clock; at most "
                f"{_seconds(self.skew)} of clock skew is allowed.",
                where="Assertion/@IssueInstant",
                suggestion="The IdP's clock or this server's clock is wrong; both should use NTP.",
            )

    def _check_not_before(self, node: Any, where: str) -> None:
        not_before = node.get("NotBefore")
        if not_before is None:
            return
        start = _instant(not_before, f"{where} NotBefore")
        if start > self.now + self.skew:
            _fail(
                "response.not_yet_valid",
                f"The assertion is not valid before {start:%Y-%m-%d %H:%M:%S} UTC ({where} "
                f"NotBefore); this server's time is {self.now:%Y-%m-%d %H:%M:%S} UTC and "
                f"{_seconds(self.skew)} of clock skew is allowed.",
                where=f"{where}/@NotBefore",
                suggestion="The IdP's clock may be ahead of this server's.",
            )

    def _check_not_on_or_after(self, value: str, where: str, issued: datetime) -> datetime:
        end = _instant(value, f"{where} NotOnOrAfter")
        if end + self.skew <= self.now:
            _fail(
                "response.expired",
                f"The assertion expired at {end:%Y-%m-%d %H:%M:%S} UTC ({where} NotOnOrAfter); "
                f"this server's time is {self.now:%Y-%m-%d %H:%M:%S} UTC, "
                f"{_seconds(self.now - issued)} after it was issued, and "
                f"{_seconds(self.skew)} of clock skew is allowed.",
                where=f"{where}/@NotOnOrAfter",
                suggestion="A response must be posted within minutes; an old one may be a "
                "replay, or the IdP's clock is behind.",
            )
        return end

    def _check_conditions(self, assertion: Any, issued: datetime) -> datetime | None:
        found = _children(assertion, "Conditions")
        if len(found) != 1:
            _fail(
                "response.assertion",
                f"The assertion must have one Conditions element; received {len(found)}.",
                where="Assertion/Conditions",
            )
        conditions = found[0]
        restrictions = _children(conditions, "AudienceRestriction")
        if not restrictions:
            _fail(
                "response.audience",
                f"The assertion names no audience; expected an AudienceRestriction to this SP's "
                f"entity ID {_shown(self.sp.entity_id)}.",
                where="Assertion/Conditions/AudienceRestriction",
                suggestion="Set the IdP's audience URI (SP entity ID) to the one shown here.",
            )
        # Each AudienceRestriction must be satisfied (SAML core 2.5.1.4).
        for restriction in restrictions:
            audiences = [a.text for a in _children(restriction, "Audience")]
            if self.sp.entity_id not in audiences:
                _fail(
                    "response.audience",
                    f"The assertion is meant for {', '.join(_shown(a) for a in audiences)}; "
                    f"expected this SP's entity ID {_shown(self.sp.entity_id)} exactly.",
                    where="Assertion/Conditions/AudienceRestriction",
                    suggestion="Set the IdP's audience URI (SP entity ID) to the one shown here.",
                )
        self._check_not_before(conditions, "Conditions")
        not_on_or_after = conditions.get("NotOnOrAfter")
        if not_on_or_after is None:
            return None
        return self._check_not_on_or_after(not_on_or_after, "Conditions", issued)

    def _check_authn_statement(self, assertion: Any) -> str | None:
        statements = _children(assertion, "AuthnStatement")
        if len(statements) != 1:
            _fail(
                "response.assertion",
                f"The assertion must have one AuthnStatement; received {len(statements)}.",
                where="Assertion/AuthnStatement",
            )
        statement = statements[0]
        session_end = statement.get("SessionNotOnOrAfter")
        if session_end is not None:
            end = _instant(session_end, "AuthnStatement SessionNotOnOrAfter")
            if end + self.skew <= self.now:
                _fail(
                    "response.expired",
                    f"The IdP session ended at {end:%Y-%m-%d %H:%M:%S} UTC "
                    f"(SessionNotOnOrAfter); this server's time is "
                    f"{self.now:%Y-%m-%d %H:%M:%S} UTC.",
                    where="Assertion/AuthnStatement/@SessionNotOnOrAfter",
                )
        session_index: str | None = statement.get("SessionIndex")
        return session_index

    def _name_id(self, assertion: Any) -> tuple[str, str | None]:
        subject = _child(assertion, "Subject")
        if subject is None:
            _fail("response.assertion", "The assertion has no Subject.", where="Assertion/Subject")
        if _child(subject, "EncryptedID") is not None:
            _fail(
                "response.encrypted",
                "The NameID is encrypted (EncryptedID); this SP accepts unencrypted NameIDs only.",
                where="Assertion/Subject/EncryptedID",
                suggestion="Turn off NameID encryption for this application in the IdP.",
            )
        node = _child(subject, "NameID")
        value = "" if node is None else (node.text or "").strip()
        if not value:
            _fail(
                "response.name_id",
                "The assertion's Subject has no NameID value; expected the person's "
                f"identifier (format {_shown(self.sp.nameid_format)}).",
                where="Assertion/Subject/NameID",
            )
        qualifier = node.get("SPNameQualifier")
        if qualifier is not None and qualifier != self.sp.entity_id:
            _fail(
                "response.name_id",
                f"The NameID is qualified for the SP {_shown(qualifier)}; expected this SP's "
                f"entity ID {_shown(self.sp.entity_id)}.",
                where="Assertion/Subject/NameID/@SPNameQualifier",
            )
        name_id_format: str | None = node.get("Format")
        return value, name_id_format

    def _check_confirmations(
        self, assertion: Any, root: Any, issued: datetime
    ) -> tuple[datetime, str | None]:
        """Check the bearer SubjectConfirmations; one must pass. Return its end and InResponseTo."""
        subject = _child(assertion, "Subject")
        bearers = [
            c for c in _children(subject, "SubjectConfirmation") if c.get("Method") == _BEARER
        ]
        if not bearers:
            _fail(
                "response.subject_confirmation",
                "The assertion has no bearer SubjectConfirmation; expected one with Method "
                f"{_shown(_BEARER)}.",
                where="Assertion/Subject/SubjectConfirmation",
            )
        refused: list[SignInError] = []
        for confirmation in bearers:
            try:
                return self._check_confirmation(confirmation, root, issued)
            except SignInError as error:
                refused.append(error)
        raise refused[0]

    def _check_confirmation(
        self, confirmation: Any, root: Any, issued: datetime
    ) -> tuple[datetime, str | None]:
        where = "SubjectConfirmationData"
        data = _child(confirmation, "SubjectConfirmationData")
        if data is None:
            _fail(
                "response.subject_confirmation",
                "The bearer SubjectConfirmation has no SubjectConfirmationData; expected one "
                "with the Recipient and NotOnOrAfter.",
                where="Assertion/Subject/SubjectConfirmation",
            )
        recipient = data.get("Recipient")
        if recipient != self.sp.acs_url:
            received = (
                "it has no Recipient"
                if recipient is None
                else f"its Recipient is {_shown(recipient)}"
            )
            _fail(
                "response.recipient",
                f"Expected the subject confirmation's Recipient to be this connection's ACS URL "
                f"{_shown(self.sp.acs_url)} exactly; {received}.",
                where="Assertion/Subject/SubjectConfirmation/SubjectConfirmationData/@Recipient",
                suggestion="Set the IdP's single sign-on (ACS) URL / Recipient to the ACS URL "
                "shown here.",
            )
        self._check_not_before(data, where)
        not_on_or_after = data.get("NotOnOrAfter")
        if not_on_or_after is None:
            _fail(
                "response.subject_confirmation",
                "The bearer SubjectConfirmationData has no NotOnOrAfter; it must say until "
                "when the assertion may be used.",
                where="Assertion/Subject/SubjectConfirmation/SubjectConfirmationData",
            )
        end = self._check_not_on_or_after(not_on_or_after, where, issued)
        in_response_to: str | None = data.get("InResponseTo")
        expected = self.request_id if self.request_id is not None else root.get("InResponseTo")
        if in_response_to is not None and expected is not None and in_response_to != expected:
            _fail(
                "response.in_response_to",
                f"The assertion answers the request {_shown(in_response_to)} "
                f"(SubjectConfirmationData InResponseTo); expected {_shown(expected)}.",
                where="Assertion/Subject/SubjectConfirmation/SubjectConfirmationData/@InResponseTo",
                suggestion="Sign in again from this application; a response must answer the "
                "latest sign-in request.",
            )
        return end, in_response_to

    def _check_in_response_to(self, root: Any, confirmation_irt: str | None) -> str | None:
        in_response_to: str | None = root.get("InResponseTo")
        if self.request_id is None:
            return in_response_to if in_response_to is not None else confirmation_irt
        if in_response_to is None:
            _fail(
                "response.unsolicited",
                f"The response answers no request (it has no InResponseTo); expected an answer "
                f"to this application's sign-in request {_shown(self.request_id)}.",
                where="Response/@InResponseTo",
                suggestion="Start the sign-in from this application rather than from the IdP's "
                "portal.",
            )
        if in_response_to != self.request_id:
            _fail(
                "response.in_response_to",
                f"The response answers the request {_shown(in_response_to)}; expected this "
                f"application's sign-in request {_shown(self.request_id)}.",
                where="Response/@InResponseTo",
                suggestion="Sign in again from this application; a response must answer the "
                "latest sign-in request.",
            )
        return in_response_to

    def _attributes(self, assertion: Any) -> Mapping[str, tuple[str, ...]]:
        values: dict[str, list[str]] = {}
        for statement in _children(assertion, "AttributeStatement"):
            if _child(statement, "EncryptedAttribute") is not None:
                _fail(
                    "response.encrypted",
                    "The assertion has encrypted attributes (EncryptedAttribute); this SP "
                    "accepts unencrypted attributes only.",
                    where="Assertion/AttributeStatement/EncryptedAttribute",
                )
            for attribute in _children(statement, "Attribute"):
                bucket = values.setdefault(attribute.get("Name"), [])
                for value in _children(attribute, "AttributeValue"):
                    if value.get(_XSI_NIL) in {"true", "1"}:
                        continue
                    # A value may be complex (a NameID inside): its text is what it says.
                    text = "".join(value.itertext()).strip()
                    if text:
                        bucket.append(text)
        return types.MappingProxyType({name: tuple(v) for name, v in values.items()})
