"""A SAML 2.0 identity provider for tests: metadata and signed responses, made offline.

It builds what a real IdP (Okta, Entra ID, Google) posts to an ACS: a
``samlp:Response`` with one ``saml:Assertion``, the assertion (and, if asked,
the response) signed with xmlsec, the ``ds:Signature`` right after the
``saml:Issuer`` as the schema wants it. Every part a check looks at can be
changed or left out, so a test can make exactly the response it needs::

    idp = TestIdp()
    saml_response = idp.response(sp=sp, name_id="ada@example.com", in_response_to=request_id)
    verify_response(saml_response, sp=sp, idp=idp.identity_provider(), request_id=request_id, ...)

Keys are generated with ``cryptography``; generating an RSA key takes tens of
milliseconds, so keys are cached by ``(type, size, label)`` for the whole test
session. Each certificate of an IdP gets its own key (labelled by the IdP's
entity ID and the certificate's position), so the certificates of a rollover,
or of two IdPs, never verify each other's signatures by accident; give two
certificates the same ``key`` label to make a re-issued certificate of the
same key pair.
"""

from __future__ import annotations

import base64
import enum
import secrets
import zlib
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import Final
from typing import Literal
from typing import TypedDict
from typing import Unpack

import attrs
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from pbidentity.domain import IdentityProvider
from pbidentity.saml._types import EMAIL_NAMEID
from pbidentity.saml._types import ServiceProvider

__all__ = [
    "DEFAULT",
    "NS",
    "AuthnRequestInfo",
    "CertificateSpec",
    "ResponseOptions",
    "SigningKey",
    "TestIdp",
    "encode",
    "saml_time",
    "sign",
]

NS: Final = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}

_STATUS_PREFIX = "urn:oasis:names:tc:SAML:2.0:status:"
_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
_ENTITY = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
_BINDINGS: Final = {
    "redirect": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
    "post": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
    "artifact": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact",
    "soap": "urn:oasis:names:tc:SAML:2.0:bindings:SOAP",
}

SIGNATURE_ALGORITHMS: Final = {
    "rsa-sha1": xmlsec.Transform.RSA_SHA1,
    "rsa-sha256": xmlsec.Transform.RSA_SHA256,
    "rsa-sha384": xmlsec.Transform.RSA_SHA384,
    "rsa-sha512": xmlsec.Transform.RSA_SHA512,
    "ecdsa-sha1": xmlsec.Transform.ECDSA_SHA1,
    "ecdsa-sha256": xmlsec.Transform.ECDSA_SHA256,
    "ecdsa-sha384": xmlsec.Transform.ECDSA_SHA384,
    "ecdsa-sha512": xmlsec.Transform.ECDSA_SHA512,
}
DIGEST_ALGORITHMS: Final = {
    "sha1": xmlsec.Transform.SHA1,
    "sha256": xmlsec.Transform.SHA256,
    "sha384": xmlsec.Transform.SHA384,
    "sha512": xmlsec.Transform.SHA512,
}

KeyType = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class _Default(enum.Enum):
    VALUE = enum.auto()


#: "What the SP expects" for a parameter that can also be a wrong value or ``None`` (left out).
DEFAULT: Final = _Default.VALUE

_KEYS: dict[tuple[KeyType, int, str], PrivateKey] = {}


def _private_key(key_type: KeyType, key_size: int, label: str) -> PrivateKey:
    """The key pair of that type, size and label, generated once per session."""
    found = _KEYS.get((key_type, key_size, label))
    if found is None:
        if key_type == "rsa":
            found = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        else:
            curve: ec.EllipticCurve = {256: ec.SECP256R1(), 384: ec.SECP384R1()}.get(
                key_size, ec.SECP521R1()
            )
            found = ec.generate_private_key(curve)
        _KEYS[(key_type, key_size, label)] = found
    return found


def saml_time(moment: datetime) -> str:
    """A SAML ``xs:dateTime``: UTC with a ``Z``, milliseconds when there are any."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def encode(xml: bytes) -> str:
    """The base64 form value an HTTP-POST binding carries for that XML."""
    return base64.b64encode(xml).decode("ascii")


def _new_id() -> str:
    # IDs are xs:ID (an NCName): they must not start with a digit.
    return "_" + secrets.token_hex(16)


@attrs.frozen(kw_only=True)
class CertificateSpec:
    """How to make one signing certificate of a :class:`TestIdp`.

    ``key`` labels the key pair: certificates with the same label, type and
    size share it (a certificate re-issued for the same key). Left empty, the
    IdP labels it with its entity ID and the certificate's position.
    """

    cn: str = "idp.test"
    key_type: KeyType = "rsa"
    #: RSA modulus bits, or the EC curve size (256, 384, 521).
    key_size: int = 2048
    not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    not_after: datetime = datetime(2099, 12, 31, tzinfo=UTC)
    key: str = ""


@attrs.frozen
class SigningKey:
    """A certificate and the private key that signs with it, both PEM."""

    private_key_pem: bytes = attrs.field(repr=False)
    certificate_pem: str
    key_type: KeyType = "rsa"

    @property
    def certificate_body(self) -> str:
        """The certificate's base64 body on one line, as metadata and KeyInfo carry it."""
        lines = self.certificate_pem.strip().splitlines()
        return "".join(line for line in lines if not line.startswith("-----"))


def _make_key(spec: CertificateSpec, label: str) -> SigningKey:
    key = _private_key(spec.key_type, spec.key_size, spec.key or label)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.cn)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return SigningKey(key_pem, cert_pem, spec.key_type)


def sign(
    element: Any,
    key: SigningKey,
    *,
    signature_algorithm: str = "rsa-sha256",
    digest_algorithm: str = "sha256",
    key_info: bool = True,
    key_info_certificate: str | None = None,
) -> Any:
    """Sign ``element`` (a Response or an Assertion) in place; return the ``ds:Signature``.

    The signature is enveloped, exclusive-c14n with the ``xs`` prefix
    inclusive (attribute values say ``xsi:type="xs:string"``), and placed
    right after the element's ``saml:Issuer``. ``key_info_certificate`` puts
    another certificate (PEM) in the KeyInfo than the one that signs.
    """
    signature = xmlsec.template.create(
        element,
        xmlsec.Transform.EXCL_C14N,
        SIGNATURE_ALGORITHMS[signature_algorithm],
        ns="ds",
    )
    issuer = element.find(f"{{{NS['saml']}}}Issuer")
    if issuer is not None:
        issuer.addnext(signature)
    else:
        element.insert(0, signature)
    reference = xmlsec.template.add_reference(
        signature, DIGEST_ALGORITHMS[digest_algorithm], uri="#" + element.get("ID")
    )
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    c14n = xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.transform_add_c14n_inclusive_namespaces(c14n, "xs")
    if key_info:
        xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    xmlsec.tree.add_ids(element.getroottree().getroot(), ["ID"])
    context = xmlsec.SignatureContext()
    signer = xmlsec.Key.from_memory(key.private_key_pem, xmlsec.KeyFormat.PEM)
    signer.load_cert_from_memory(key.certificate_pem, xmlsec.KeyFormat.CERT_PEM)
    context.key = signer
    context.sign(signature)
    if key_info and key_info_certificate is not None:
        # KeyInfo is outside what the signature covers: swapping it keeps the signature intact.
        node = signature.find(f".//{{{NS['ds']}}}X509Certificate")
        node.text = SigningKey(b"", key_info_certificate).certificate_body
    return signature


class ResponseOptions(TypedDict, total=False):
    """What :meth:`TestIdp.response` (and ``response_xml``, ``sign_in_form``) can change.

    Times: ``now`` (the real time by default) is when the IdP answers;
    ``issue_instant`` defaults to it, ``not_before`` to the issue instant,
    ``not_on_or_after`` (Conditions) and ``subject_not_on_or_after``
    (SubjectConfirmationData) to five minutes after it; ``subject_not_before``
    and ``session_not_on_or_after`` are left out unless given.

    Values the SP checks (``destination``, ``recipient``, ``audience``,
    ``issuer``, ``assertion_issuer``, ``subject_in_response_to``) are right by
    default (:data:`DEFAULT`); ``None`` leaves them out, a string puts that
    value in. ``in_response_to`` goes on the Response and, unless
    ``subject_in_response_to`` says otherwise, on the SubjectConfirmationData.

    Signing: ``sign_assertion`` (on), ``sign_response`` (off),
    ``signature_algorithm`` (``rsa-sha256``, ``rsa-sha1``, ``ecdsa-sha256``...),
    ``digest_algorithm`` (``sha256``, ``sha1``...), ``signing`` (which of the
    IdP's certificates signs), ``key_info`` (put the certificate in KeyInfo)
    and ``key_info_certificate`` (put another certificate there).

    ``status`` is ``Success`` or another status name or URI, with an optional
    ``status_message``; a non-Success response has no assertion unless
    ``include_assertion`` says so. ``attributes`` default to ``email`` (the
    NameID), ``firstName`` and ``lastName``; an empty mapping leaves the
    AttributeStatement out.
    """

    in_response_to: str | None
    attributes: Mapping[str, Sequence[str]] | None
    now: datetime | None
    issue_instant: datetime | None
    not_before: datetime | None
    not_on_or_after: datetime | None
    subject_not_on_or_after: datetime | None
    subject_not_before: datetime | None
    session_not_on_or_after: datetime | None
    sign_assertion: bool
    sign_response: bool
    signature_algorithm: str
    digest_algorithm: str
    signing: int | None
    key_info: bool
    key_info_certificate: str | None
    destination: str | _Default | None
    recipient: str | _Default | None
    audience: str | _Default | None
    issuer: str | _Default | None
    assertion_issuer: str | _Default | None
    subject_in_response_to: str | _Default | None
    status: str
    status_message: str | None
    include_assertion: bool | None
    assertion_id: str | None
    response_id: str | None
    name_id_format: str | None
    session_index: str | None


@attrs.frozen(kw_only=True)
class AuthnRequestInfo:
    """What a test IdP reads from an AuthnRequest it receives."""

    id: str
    issuer: str | None
    acs_url: str | None
    destination: str | None
    nameid_format: str | None


class TestIdp:
    """An identity provider that signs real SAML responses, for tests.

    ``certificates`` is how many signing certificates it has (a rollover when
    more than one) or their specs; ``signing`` is which of them signs unless
    a response asks for another.
    """

    # Not a test class, whatever its name says.
    __test__ = False

    def __init__(
        self,
        *,
        entity_id: str = "https://idp.test/metadata",
        sso_url: str = "https://idp.test/sso",
        certificates: int | Sequence[CertificateSpec] = 1,
        key_size: int = 2048,
        key_type: KeyType = "rsa",
        signing: int = 0,
    ) -> None:
        self.entity_id = entity_id
        self.sso_url = sso_url
        specs = (
            [CertificateSpec(key_size=key_size, key_type=key_type) for _ in range(certificates)]
            if isinstance(certificates, int)
            else list(certificates)
        )
        if not specs:
            raise ValueError("a test IdP needs at least one certificate")
        self.keys: tuple[SigningKey, ...] = tuple(
            _make_key(spec, f"{entity_id}#{index}") for index, spec in enumerate(specs)
        )
        self.signing = signing

    @property
    def certificate_pem(self) -> str:
        """The PEM certificate that signs by default."""
        return self.keys[self.signing].certificate_pem

    @property
    def private_key_pem(self) -> bytes:
        """The PEM private key that signs by default."""
        return self.keys[self.signing].private_key_pem

    @property
    def certificates(self) -> tuple[str, ...]:
        """Every signing certificate, PEM, in order."""
        return tuple(key.certificate_pem for key in self.keys)

    def identity_provider(
        self,
        *,
        certificates: Sequence[int] | None = None,
        sso_binding: Literal["redirect", "post"] = "post",
        nameid_formats: Sequence[str] = (EMAIL_NAMEID,),
    ) -> IdentityProvider:
        """What pbidentity would know of this IdP after importing its metadata.

        ``certificates`` picks which of its certificates (by position) the SP
        trusts; all of them by default.
        """
        chosen = range(len(self.keys)) if certificates is None else certificates
        return IdentityProvider(
            entity_id=self.entity_id,
            sso_url=self.sso_url,
            sso_binding=sso_binding,
            certificates=tuple(self.keys[i].certificate_pem for i in chosen),
            nameid_formats=tuple(nameid_formats),
        )

    def metadata_xml(
        self,
        *,
        valid_until: datetime | None = None,
        cache_duration: str | None = None,
        extra_certs: Sequence[str] = (),
        certificates: Sequence[int] | None = None,
        bindings: Sequence[str] = ("redirect", "post"),
        nameid_formats: Sequence[str] = (EMAIL_NAMEID,),
        attributes: Sequence[str] = (),
        key_use: str | None = "signing",
        entity_id: str | None = None,
        sso_url: str | None = None,
    ) -> bytes:
        """The IdP's metadata: an EntityDescriptor with one IDPSSODescriptor.

        One signing KeyDescriptor per certificate (those picked by position
        in ``certificates``, then ``extra_certs`` as PEM), NameIDFormats, one
        SingleSignOnService per binding (``redirect``, ``post``, ``artifact``,
        ``soap`` or a full binding URI) and the attribute names as
        ``saml:Attribute`` elements. ``key_use=None`` leaves ``use`` out.
        """
        md, ds, saml = NS["md"], NS["ds"], NS["saml"]
        root = etree.Element(
            f"{{{md}}}EntityDescriptor",
            nsmap={"md": md, "ds": ds, "saml": saml},
            entityID=self.entity_id if entity_id is None else entity_id,
        )
        if valid_until is not None:
            root.set("validUntil", saml_time(valid_until))
        if cache_duration is not None:
            root.set("cacheDuration", cache_duration)
        descriptor = etree.SubElement(
            root,
            f"{{{md}}}IDPSSODescriptor",
            protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol",
        )
        chosen = range(len(self.keys)) if certificates is None else certificates
        bodies = [self.keys[i].certificate_body for i in chosen]
        bodies += [SigningKey(b"", pem).certificate_body for pem in extra_certs]
        for body in bodies:
            key_descriptor = etree.SubElement(descriptor, f"{{{md}}}KeyDescriptor")
            if key_use is not None:
                key_descriptor.set("use", key_use)
            key_info = etree.SubElement(key_descriptor, f"{{{ds}}}KeyInfo")
            x509_data = etree.SubElement(key_info, f"{{{ds}}}X509Data")
            etree.SubElement(x509_data, f"{{{ds}}}X509Certificate").text = body
        for nameid_format in nameid_formats:
            etree.SubElement(descriptor, f"{{{md}}}NameIDFormat").text = nameid_format
        for binding in bindings:
            etree.SubElement(
                descriptor,
                f"{{{md}}}SingleSignOnService",
                Binding=_BINDINGS.get(binding, binding),
                Location=self.sso_url if sso_url is None else sso_url,
            )
        for name in attributes:
            etree.SubElement(descriptor, f"{{{saml}}}Attribute", Name=name)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

    def response_xml(
        self,
        *,
        sp: ServiceProvider,
        name_id: str,
        in_response_to: str | None = None,
        attributes: Mapping[str, Sequence[str]] | None = None,
        now: datetime | None = None,
        issue_instant: datetime | None = None,
        not_before: datetime | None = None,
        not_on_or_after: datetime | None = None,
        subject_not_on_or_after: datetime | None = None,
        subject_not_before: datetime | None = None,
        session_not_on_or_after: datetime | None = None,
        sign_assertion: bool = True,
        sign_response: bool = False,
        signature_algorithm: str = "rsa-sha256",
        digest_algorithm: str = "sha256",
        signing: int | None = None,
        key_info: bool = True,
        key_info_certificate: str | None = None,
        destination: str | _Default | None = DEFAULT,
        recipient: str | _Default | None = DEFAULT,
        audience: str | _Default | None = DEFAULT,
        issuer: str | _Default | None = DEFAULT,
        assertion_issuer: str | _Default | None = DEFAULT,
        subject_in_response_to: str | _Default | None = DEFAULT,
        status: str = "Success",
        status_message: str | None = None,
        include_assertion: bool | None = None,
        assertion_id: str | None = None,
        response_id: str | None = None,
        name_id_format: str | None = EMAIL_NAMEID,
        session_index: str | None = "_session-1",
    ) -> bytes:
        """The response as XML bytes, signed as asked (see :class:`ResponseOptions`)."""
        now = datetime.now(UTC) if now is None else now
        issued = now if issue_instant is None else issue_instant
        not_before = issued if not_before is None else not_before
        not_on_or_after = (
            issued + timedelta(minutes=5) if not_on_or_after is None else not_on_or_after
        )
        if subject_not_on_or_after is None:
            subject_not_on_or_after = issued + timedelta(minutes=5)
        if attributes is None:
            attributes = {"email": [name_id], "firstName": ["Ada"], "lastName": ["Lovelace"]}
        if include_assertion is None:
            include_assertion = status == "Success"
        key = self.keys[self.signing if signing is None else signing]
        samlp, saml, xs, xsi = NS["samlp"], NS["saml"], NS["xs"], NS["xsi"]

        def pick(value: str | _Default | None, default: str | None) -> str | None:
            return default if isinstance(value, _Default) else value

        response = etree.Element(
            f"{{{samlp}}}Response",
            nsmap={"samlp": samlp, "saml": saml, "xs": xs, "xsi": xsi},
            ID=response_id or _new_id(),
            Version="2.0",
            IssueInstant=saml_time(issued),
        )
        response_destination = pick(destination, sp.acs_url)
        if response_destination is not None:
            response.set("Destination", response_destination)
        if in_response_to is not None:
            response.set("InResponseTo", in_response_to)
        response_issuer = pick(issuer, self.entity_id)
        if response_issuer is not None:
            node = etree.SubElement(response, f"{{{saml}}}Issuer", Format=_ENTITY)
            node.text = response_issuer
        status_node = etree.SubElement(response, f"{{{samlp}}}Status")
        code = status if status.startswith("urn:") else _STATUS_PREFIX + status
        etree.SubElement(status_node, f"{{{samlp}}}StatusCode", Value=code)
        if status_message is not None:
            etree.SubElement(status_node, f"{{{samlp}}}StatusMessage").text = status_message
        if include_assertion:
            assertion = etree.SubElement(
                response,
                f"{{{saml}}}Assertion",
                ID=assertion_id or _new_id(),
                Version="2.0",
                IssueInstant=saml_time(issued),
            )
            a_issuer = pick(assertion_issuer, self.entity_id)
            if a_issuer is not None:
                etree.SubElement(assertion, f"{{{saml}}}Issuer", Format=_ENTITY).text = a_issuer
            subject = etree.SubElement(assertion, f"{{{saml}}}Subject")
            name_node = etree.SubElement(subject, f"{{{saml}}}NameID")
            if name_id_format is not None:
                name_node.set("Format", name_id_format)
            name_node.text = name_id
            confirmation = etree.SubElement(
                subject, f"{{{saml}}}SubjectConfirmation", Method=_BEARER
            )
            data = etree.SubElement(
                confirmation,
                f"{{{saml}}}SubjectConfirmationData",
                NotOnOrAfter=saml_time(subject_not_on_or_after),
            )
            if subject_not_before is not None:
                data.set("NotBefore", saml_time(subject_not_before))
            data_recipient = pick(recipient, sp.acs_url)
            if data_recipient is not None:
                data.set("Recipient", data_recipient)
            data_in_response_to = pick(subject_in_response_to, in_response_to)
            if data_in_response_to is not None:
                data.set("InResponseTo", data_in_response_to)
            conditions = etree.SubElement(
                assertion,
                f"{{{saml}}}Conditions",
                NotBefore=saml_time(not_before),
                NotOnOrAfter=saml_time(not_on_or_after),
            )
            condition_audience = pick(audience, sp.entity_id)
            if condition_audience is not None:
                restriction = etree.SubElement(conditions, f"{{{saml}}}AudienceRestriction")
                etree.SubElement(restriction, f"{{{saml}}}Audience").text = condition_audience
            statement = etree.SubElement(
                assertion, f"{{{saml}}}AuthnStatement", AuthnInstant=saml_time(issued)
            )
            if session_index is not None:
                statement.set("SessionIndex", session_index)
            if session_not_on_or_after is not None:
                statement.set("SessionNotOnOrAfter", saml_time(session_not_on_or_after))
            context = etree.SubElement(statement, f"{{{saml}}}AuthnContext")
            etree.SubElement(context, f"{{{saml}}}AuthnContextClassRef").text = _PASSWORD
            # The schema wants at least one Attribute in an AttributeStatement:
            # no attributes, no statement.
            if attributes:
                attribute_statement = etree.SubElement(assertion, f"{{{saml}}}AttributeStatement")
                for attr_name, values in attributes.items():
                    attribute = etree.SubElement(
                        attribute_statement,
                        f"{{{saml}}}Attribute",
                        Name=attr_name,
                        NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
                    )
                    for value in values:
                        value_node = etree.SubElement(attribute, f"{{{saml}}}AttributeValue")
                        value_node.set(f"{{{xsi}}}type", "xs:string")
                        value_node.text = value
            if sign_assertion:
                sign(
                    assertion,
                    key,
                    signature_algorithm=signature_algorithm,
                    digest_algorithm=digest_algorithm,
                    key_info=key_info,
                    key_info_certificate=key_info_certificate,
                )
        if sign_response:
            sign(
                response,
                key,
                signature_algorithm=signature_algorithm,
                digest_algorithm=digest_algorithm,
                key_info=key_info,
                key_info_certificate=key_info_certificate,
            )
        return bytes(etree.tostring(response, xml_declaration=True, encoding="UTF-8"))

    def response(
        self, *, sp: ServiceProvider, name_id: str, **options: Unpack[ResponseOptions]
    ) -> str:
        """A signed SAML response for ``sp`` about ``name_id``, base64 as HTTP-POST carries it.

        By default it is what a well-configured IdP sends: Destination,
        Recipient and Audience are the SP's, Issuer is this IdP, the assertion
        (only) is signed with RSA-SHA256, valid for five minutes from ``now``
        (the real time unless given), with ``email``, ``firstName`` and
        ``lastName`` attributes. Each of :class:`ResponseOptions` changes one
        part: ``destination=None`` leaves it out, ``destination="https://other"``
        puts a wrong one in.
        """
        return encode(self.response_xml(sp=sp, name_id=name_id, **options))

    def sign_in_form(
        self,
        *,
        sp: ServiceProvider,
        name_id: str,
        relay_state: str = "",
        **options: Unpack[ResponseOptions],
    ) -> dict[str, str]:
        """The form the IdP's page posts to the ACS: ``SAMLResponse`` and ``RelayState``."""
        return {
            "SAMLResponse": self.response(sp=sp, name_id=name_id, **options),
            "RelayState": relay_state,
        }

    @staticmethod
    def read_authn_request(saml_request: str, *, binding: str = "redirect") -> AuthnRequestInfo:
        """Read an AuthnRequest as the SP sent it: deflated (redirect) or plain (post) base64."""
        raw = base64.b64decode(saml_request)
        xml = zlib.decompress(raw, -15) if binding == "redirect" else raw
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        root = etree.fromstring(xml, parser)
        issuer = root.find(f"{{{NS['saml']}}}Issuer")
        policy = root.find(f"{{{NS['samlp']}}}NameIDPolicy")
        return AuthnRequestInfo(
            id=root.get("ID"),
            issuer=issuer.text if issuer is not None else None,
            acs_url=root.get("AssertionConsumerServiceURL"),
            destination=root.get("Destination"),
            nameid_format=policy.get("Format") if policy is not None else None,
        )
