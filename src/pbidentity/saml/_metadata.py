"""Reading an IdP's SAML metadata into an :class:`~pbidentity.domain.IdentityProvider`.

The document comes from a tenant admin (uploaded, or fetched from a URL they
typed), so it is parsed here with a hardened lxml parser rather than with
python3-saml's metadata parser, which keeps only the HTTP-Redirect SSO URL,
lets the IdP's NameID format override the app's, ignores ``validUntil`` and
interpolates the entity ID into XPath. Only the document's own problems are
reported here; :func:`pbidentity.saml._validate.check_connection` checks the
IdentityProvider that comes out (certificates, URLs, NameID, attributes).
"""

from __future__ import annotations

import copy
import re
import textwrap
import threading
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from pbidentity.domain import IdentityProvider
from pbidentity.domain import SsoBinding
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report
from pbidentity.saml._types import Severity

__all__ = [
    "BINDING_POST",
    "BINDING_REDIRECT",
    "MAX_METADATA_BYTES",
    "idp_from_fields",
    "pem_certificates",
    "read_metadata",
]

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SAML2_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"

#: The largest document read: one IdP's metadata is a few kilobytes (Entra's,
#: the largest, about 20 KB); a bigger one is a federation aggregate or abuse.
MAX_METADATA_BYTES = 1_048_576

#: A ``validUntil`` this close is worth a warning: sign-ins stop when it passes.
VALID_UNTIL_WARNING = timedelta(days=7)

_ENTITY = f"{{{MD}}}EntityDescriptor"
_ENTITIES = f"{{{MD}}}EntitiesDescriptor"
_IDP = f"{{{MD}}}IDPSSODescriptor"
_ROLE = f"{{{MD}}}RoleDescriptor"

_BINDING_NAMES = {
    BINDING_REDIRECT: "HTTP-Redirect",
    BINDING_POST: "HTTP-POST",
    "urn:oasis:names:tc:SAML:2.0:bindings:SOAP": "SOAP",
    "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact": "HTTP-Artifact",
    "urn:oasis:names:tc:SAML:2.0:bindings:PAOS": "PAOS",
}

_WHERE = "metadata"


class _Unsafe(ValueError):
    """The document declares a DTD or entities: refused before anything reads it."""


class _Local(threading.local):
    """A parser and the metadata schema per thread: lxml shares neither safely across threads."""

    parser: Any = None
    schema: Any = None


_local = _Local()


def _parser() -> Any:
    if _local.parser is None:
        # No DTD is loaded, no entity is expanded (billion laughs, XXE), nothing
        # is fetched, and libxml2's size limits stay on (huge_tree off).
        _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
    return _local.parser


def _parse(xml: bytes) -> Any:
    """The root element of ``xml``; raises ``_Unsafe`` or ``etree.XMLSyntaxError``."""
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError:
        # An entity that was not expanded can break the parse (one in an
        # attribute value does): the DOCTYPE, not the syntax, is the finding.
        if _declares_doctype(xml):
            raise _Unsafe from None
        raise
    # Metadata never needs a DTD: any DOCTYPE (even one whose entities were
    # left unexpanded) is an attack or a broken exporter, so it is refused.
    if _has_dtd(root.getroottree()):
        raise _Unsafe
    return root


def _has_dtd(tree: Any) -> bool:
    docinfo = tree.docinfo
    return bool(
        docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None
    )


def _declares_doctype(xml: bytes) -> bool:
    """Whether a document that failed to parse has a DOCTYPE (read as leniently as safely)."""
    lenient = etree.XMLParser(
        recover=True,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
    )
    try:
        root = etree.fromstring(xml, lenient)
    except etree.XMLSyntaxError:
        return False
    return root is not None and _has_dtd(root.getroottree())


def _schema() -> Any:
    """The SAML metadata schema python3-saml ships, parsed once per thread (it is slow to load)."""
    if _local.schema is None:
        from importlib.util import find_spec

        spec = find_spec("onelogin.saml2")
        if spec is None or spec.origin is None:  # pragma: no cover - the saml extra has it
            return None
        path = Path(spec.origin).parent / "schemas" / "saml-schema-metadata-2.0.xsd"
        document = etree.parse(str(path), etree.XMLParser(no_network=True))
        _local.schema = etree.XMLSchema(document)
    return _local.schema


def _finding(code: str, severity: Severity, message: str, suggestion: str = "") -> Finding:
    return Finding(
        code=code, severity=severity, message=message, where=_WHERE, suggestion=suggestion
    )


def read_metadata(
    xml: bytes, *, now: datetime, signs_requests: bool = False
) -> tuple[IdentityProvider | None, Report]:
    """Read an IdP's metadata document: the IdentityProvider it describes, and the findings.

    The findings cover the document itself (well-formed and safe, one IdP
    entity, a usable SSO endpoint, ``validUntil``, ``cacheDuration``, the
    schema). The IdentityProvider is ``None`` exactly when an error leaves
    nothing to check; otherwise pass it to ``check_connection`` for the
    certificates, URLs, NameID formats and attributes. ``signs_requests``
    says whether the workspace signs its AuthnRequests: an IdP that asks for
    signed requests is then satisfied.
    """
    now = _aware(now)
    if len(xml) > MAX_METADATA_BYTES:
        return None, Report(
            (
                _finding(
                    "metadata.too_large",
                    "error",
                    f"The metadata is {len(xml):,} bytes, more than the {MAX_METADATA_BYTES:,} "
                    "one IdP's metadata ever needs: it may be a federation's aggregate.",
                    "Use the metadata of your IdP app alone (Okta: the Metadata URL on the Sign "
                    "On tab; Entra: the App Federation Metadata Url).",
                ),
            )
        )
    try:
        root = _parse(xml)
    except _Unsafe:
        return None, Report(
            (
                _finding(
                    "metadata.unsafe",
                    "error",
                    "The metadata declares a DOCTYPE (a DTD or entities), which SAML metadata "
                    "never needs and XML attacks use; pbidentity refuses to read it.",
                    "Download the metadata again from the IdP; if it still has a DOCTYPE, ask "
                    "the IdP vendor why.",
                ),
            )
        )
    except etree.XMLSyntaxError as error:
        return None, Report(
            (
                _finding(
                    "metadata.not_well_formed",
                    "error",
                    f"The metadata is not well-formed XML ({_syntax_error(error)}).",
                    "Download the metadata again from the IdP app and upload the file as it "
                    "is, or paste its Metadata URL instead.",
                ),
            )
        )

    findings: list[Finding] = []
    entity_and_role = _idp_entity(root, findings)
    if entity_and_role is None:
        return None, Report(findings)
    entity, role = entity_and_role
    findings.extend(_validity(root, entity, role, now))
    findings.extend(_signed_requests(role, signs_requests=signs_requests))
    findings.extend(_schema_findings(root))
    sso = _sso_service(role, findings)
    if sso is None:
        return None, Report(findings)
    binding, location = sso
    idp = IdentityProvider(
        entity_id=(entity.get("entityID") or "").strip(),
        sso_url=location,
        sso_binding=binding,
        certificates=_signing_certificates(role),
        nameid_formats=_unique(
            (element.text or "").strip() for element in role.iterchildren(f"{{{MD}}}NameIDFormat")
        ),
        attributes=_unique(
            (element.get("Name") or "").strip()
            for element in role.iterchildren(f"{{{SAML}}}Attribute")
        ),
        valid_until=_earliest_valid_until(root, entity, role),
        cache_duration=_cache_duration(root, entity, role),
    )
    return idp, Report(findings)


def _syntax_error(error: Any) -> str:
    entry = error.error_log.last_error if error.error_log else None
    if entry is not None:
        return f"line {entry.line}: {entry.message.strip()}"
    return str(error.msg or error).strip()


def _idp_entity(root: Any, findings: list[Finding]) -> tuple[Any, Any] | None:
    """The one EntityDescriptor with a SAML 2.0 IDPSSODescriptor, and that descriptor."""
    if root.tag == _ENTITY:
        entities = [root]
    elif root.tag == _ENTITIES:
        entities = list(root.iter(_ENTITY))
    else:
        findings.append(
            _finding(
                "metadata.no_idp",
                "error",
                f"The document is not SAML metadata: its root element is "
                f"<{etree.QName(root).localname}>, not <EntityDescriptor>.",
                "Upload the IdP's SAML metadata (an XML file starting with <EntityDescriptor>), "
                "not a certificate or another document.",
            )
        )
        return None
    found: list[tuple[Any, Any]] = []
    saml1_only = False
    for entity in entities:
        roles = list(entity.iterchildren(_IDP))
        saml2 = [r for r in roles if SAML2_PROTOCOL in (r.get("protocolSupportEnumeration") or "")]
        saml1_only = saml1_only or bool(roles and not saml2)
        if saml2:
            found.append((entity, saml2[0]))
    if not found:
        detail = (
            "its identity provider role supports SAML 1.1 only"
            if saml1_only
            else "no entity in it has an identity provider role (IDPSSODescriptor)"
        )
        findings.append(
            _finding(
                "metadata.no_idp",
                "error",
                f"The metadata describes no SAML 2.0 identity provider: {detail}.",
                "Use the metadata of the IdP app (not of a service provider), with SAML 2.0.",
            )
        )
        return None
    if len(found) > 1:
        # An aggregate can hold thousands: name a few, count the rest.
        ids = ", ".join(f"'{entity.get('entityID') or '?'}'" for entity, _ in found[:5])
        if len(found) > 5:
            ids += f" and {len(found) - 5} more"
        findings.append(
            _finding(
                "metadata.several_idps",
                "error",
                f"The metadata describes {len(found)} identity providers ({ids}); pbidentity "
                "needs the one of your IdP app.",
                "Use the metadata URL or file of your own IdP app rather than a federation's.",
            )
        )
        return None
    return found[0]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_datetime(text: str) -> datetime | None:
    value = text.strip()
    # xs:dateTime allows more fractional digits than fromisoformat: keep six.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _valid_until_values(*elements: Any) -> list[str]:
    return [v for e in elements if (v := e.get("validUntil")) is not None]


def _earliest_valid_until(root: Any, entity: Any, role: Any) -> datetime | None:
    moments = [
        m
        for text in _valid_until_values(root, entity, role)
        if (m := _parse_datetime(text)) is not None
    ]
    return min(moments) if moments else None


def _cache_duration(root: Any, entity: Any, role: Any) -> str | None:
    for element in (role, entity, root):
        value = element.get("cacheDuration")
        if value:
            return str(value).strip()
    return None


def _validity(root: Any, entity: Any, role: Any, now: datetime) -> list[Finding]:
    findings: list[Finding] = []
    elements = [root] if root is entity else [root, entity]
    elements.append(role)
    texts = _valid_until_values(*elements)
    unreadable = [text for text in texts if _parse_datetime(text) is None]
    if unreadable:
        findings.append(
            _finding(
                "metadata.bad_valid_until",
                "warning",
                f"The metadata's validUntil '{unreadable[0]}' is not a date and time; "
                "pbidentity ignores it.",
                "Download the metadata again from the IdP; if the problem stays, ask the IdP "
                "vendor.",
            )
        )
    until = _earliest_valid_until(root, entity, role)
    if until is not None:
        day = until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if until <= now:
            findings.append(
                _finding(
                    "metadata.expired",
                    "error",
                    f"The metadata expired on {day} (its validUntil).",
                    "Download fresh metadata from the IdP app, or paste its Metadata URL.",
                )
            )
        elif until - now <= VALID_UNTIL_WARNING:
            left = until - now
            findings.append(
                _finding(
                    "metadata.expiring",
                    "warning",
                    f"The metadata is valid only until {day} (its validUntil), "
                    f"{_days(left)} from now; sign-ins stop then.",
                    "Download fresh metadata from the IdP app before then, or use its "
                    "Metadata URL.",
                )
            )
    duration = _cache_duration(root, entity, role)
    if duration:
        findings.append(
            _finding(
                "metadata.cache_duration",
                "info",
                f"The metadata asks to be read again after {duration} (its cacheDuration).",
            )
        )
    return findings


def _signed_requests(role: Any, *, signs_requests: bool) -> list[Finding]:
    """A warning when the IdP asks for signed AuthnRequests and the workspace does not sign them.

    A warning, not an error: IdPs such as Keycloak publish one
    ``WantAuthnRequestsSigned`` for the whole IdP while each app's own setting
    decides whether an unsigned request is refused, so only the test sign-in
    can tell.
    """
    # xs:boolean: "true" or "1" (surrounding whitespace is collapsed).
    if signs_requests or (role.get("WantAuthnRequestsSigned") or "").strip().lower() not in (
        "true",
        "1",
    ):
        return []
    return [
        _finding(
            "sso.wants_signed_requests",
            "warning",
            'The IdP asks for signed sign-in requests (WantAuthnRequestsSigned="true" in its '
            "metadata), and this connection does not sign them: if the IdP app enforces this, "
            "it refuses every sign-in from this app before anyone can log in.",
            "Turn on signed sign-in requests for this connection (sign_requests), give the IdP "
            "the SP metadata again (it then lists the signing certificate) and run the test "
            "sign-in. Or switch the requirement off for this app in the IdP (Keycloak: the "
            "client's Client signature required; AD FS: Set-AdfsRelyingPartyTrust "
            "-SignedSamlRequestsRequired $false); some IdPs keep saying this in their metadata "
            "with the requirement off, and the test sign-in tells.",
        )
    ]


def _days(left: timedelta) -> str:
    days = left.days
    if days >= 1:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = max(int(left.total_seconds() // 3600), 0)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def _schema_findings(root: Any) -> list[Finding]:
    schema = _schema()
    if schema is None:  # pragma: no cover - the saml extra ships it
        return []
    document = _for_schema(root)
    if schema.validate(document):
        return []
    errors = [e for e in schema.error_log if e.message]
    detail = more = ""
    if errors:
        # libxml2's messages list every element it expected: keep them readable.
        message = textwrap.shorten(errors[0].message.strip(), 240, placeholder=" ...")
        detail = f" (line {errors[0].line}: {message})"
    if len(errors) > 1:
        more = f", and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''}"
    return [
        _finding(
            "metadata.schema",
            "warning",
            f"The metadata does not follow the SAML metadata schema{detail}{more}. pbidentity "
            "read what it needs from it, but other parts may be wrong.",
            "If sign-in fails, download the metadata again or ask the IdP vendor for valid "
            "metadata.",
        )
    ]


def _for_schema(root: Any) -> Any:
    """The document as the bundled schema can check it.

    Microsoft's federation metadata adds WS-Federation roles
    (``RoleDescriptor xsi:type="fed:..."``), which SAML allows but whose types
    only the WS-Federation schema defines. Those roles are left out of the
    check (on a copy) rather than reported as invalid; a RoleDescriptor with
    no type, or a SAML one, is still checked.
    """
    if not any(_is_extension_role(role) for role in root.iter(_ROLE)):
        return root
    checked = copy.deepcopy(root)
    for role in [role for role in checked.iter(_ROLE) if _is_extension_role(role)]:
        role.getparent().remove(role)
    return checked


def _is_extension_role(role: Any) -> bool:
    qname = role.get(f"{{{XSI}}}type")
    if not qname:
        return False
    prefix, _, _ = qname.rpartition(":")
    namespace = role.nsmap.get(prefix or None) or ""
    return bool(namespace) and not namespace.startswith("urn:oasis:names:tc:SAML:")


def _sso_service(role: Any, findings: list[Finding]) -> tuple[SsoBinding, str] | None:
    """The SSO endpoint to use: HTTP-Redirect if offered, else HTTP-POST."""
    services = [
        ((service.get("Binding") or "").strip(), (service.get("Location") or "").strip())
        for service in role.iterchildren(f"{{{MD}}}SingleSignOnService")
    ]
    preferred: tuple[tuple[str, SsoBinding], ...] = (
        (BINDING_REDIRECT, "redirect"),
        (BINDING_POST, "post"),
    )
    for wanted, binding in preferred:
        for found, location in services:
            if found == wanted:
                return binding, location
    if not services:
        findings.append(
            _finding(
                "sso.missing",
                "error",
                "The metadata lists no single sign-on endpoint (SingleSignOnService).",
                "Download the metadata of the IdP app again; it should list an HTTP-Redirect "
                "or HTTP-POST SSO URL.",
            )
        )
    else:
        offered = ", ".join(sorted({_BINDING_NAMES.get(b, b or "none") for b, _ in services}))
        findings.append(
            _finding(
                "sso.unsupported_binding",
                "error",
                f"The IdP offers single sign-on only over {offered}; pbidentity needs "
                "HTTP-Redirect or HTTP-POST.",
                "Enable the HTTP-Redirect or HTTP-POST binding for the app in the IdP and "
                "download its metadata again.",
            )
        )
    return None


def _signing_certificates(role: Any) -> tuple[str, ...]:
    """The IdP's signing certificates, as PEM, in document order, without repeats.

    A KeyDescriptor without ``use`` serves both signing and encryption; one
    with ``use="encryption"`` is for encrypting to the IdP and is skipped.
    """
    texts: list[str] = []
    for descriptor in role.iterchildren(f"{{{MD}}}KeyDescriptor"):
        if (descriptor.get("use") or "signing").strip() != "signing":
            continue
        for element in descriptor.iter(f"{{{DS}}}X509Certificate"):
            texts.extend(pem_certificates(element.text or ""))
    return _unique(texts)


def _unique(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL | re.IGNORECASE
)


def pem_certificates(text: str) -> list[str]:
    """The certificates in ``text`` as PEM: PEM blocks, or a bare base64 body as metadata has.

    Whitespace and line breaks inside the base64 are dropped and the body is
    re-wrapped at 64 characters, so the same certificate always gives the
    same PEM. Text that is not base64 is kept (cleaned) so that the validator
    can report it rather than it vanishing.
    """
    blocks = _PEM_BLOCK.findall(text) or ([text] if text.strip() else [])
    pems: list[str] = []
    for block in blocks:
        body = re.sub(r"\s+", "", block)
        if not body:
            continue
        pems.append(
            "-----BEGIN CERTIFICATE-----\n"
            + "\n".join(textwrap.wrap(body, 64))
            + "\n-----END CERTIFICATE-----\n"
        )
    return pems


_BINDINGS: dict[str, SsoBinding] = {
    "redirect": "redirect",
    "http-redirect": "redirect",
    BINDING_REDIRECT.lower(): "redirect",
    "post": "post",
    "http-post": "post",
    BINDING_POST.lower(): "post",
}


def idp_from_fields(
    entity_id: str,
    sso_url: str,
    certificate_pem_or_base64: str,
    binding: str = "redirect",
) -> tuple[IdentityProvider | None, Report]:
    """An IdentityProvider from values the admin typed or pasted instead of metadata.

    Surrounding whitespace is dropped; the certificate may be PEM (several
    blocks for a rollover) or the bare base64 of one certificate. The binding
    is ``redirect`` or ``post`` (the SAML binding URNs work too). Pass the
    result to ``check_connection``, which checks every value.
    """
    chosen = _BINDINGS.get(binding.strip().lower())
    if chosen is None:
        return None, Report(
            (
                Finding(
                    code="sso.unsupported_binding",
                    severity="error",
                    message=f"The SSO binding '{binding}' is not one pbidentity can use.",
                    where="SSO binding",
                    suggestion="Choose HTTP-Redirect or HTTP-POST, whichever the IdP app's "
                    "SSO URL is for.",
                ),
            )
        )
    idp = IdentityProvider(
        entity_id=entity_id.strip(),
        sso_url=sso_url.strip(),
        sso_binding=chosen,
        certificates=_unique(pem_certificates(certificate_pem_or_base64)),
    )
    return idp, Report()
