"""The checks a tenant admin's SAML configuration goes through before it is saved.

:func:`check_connection` checks the IdP side (what came from metadata or was
typed by hand): identity, SSO endpoint, signing certificates, NameID formats
and attributes, and states the algorithm rules pbidentity always enforces.
:func:`check_service_provider` checks the app's side: the URLs the admin
pastes into the IdP. Both return a :class:`~pbidentity.saml.Report`; nothing
here talks to the network or to storage, so the caller passes what it knows
(the active connection, the other tenants using the same IdP).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import SplitResult
from urllib.parse import unquote
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.oid import PublicKeyAlgorithmOID

from pbidentity.domain import IdentityProvider
from pbidentity.domain import SamlRoles
from pbidentity.saml._attributes import check_attributes
from pbidentity.saml._roles import role_attribute
from pbidentity.saml._roles import scim_authoritative
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report
from pbidentity.saml._types import ServiceProvider

__all__ = [
    "CERT_EXPIRY_WARNING",
    "MIN_RSA_BITS",
    "SIGNING_KEY_ALGORITHMS",
    "certificate_findings",
    "check_connection",
    "check_roles",
    "check_service_provider",
]

#: A signing certificate this close to its end is worth a warning: sign-ins
#: fail the day it expires unless the IdP's next certificate is added first.
CERT_EXPIRY_WARNING = timedelta(days=30)

#: The smallest RSA key accepted for response signatures.
MIN_RSA_BITS = 2048

#: The public key algorithms a signing certificate may use: RSA (of at least
#: :data:`MIN_RSA_BITS`), elliptic curves, Ed25519 and Ed448. Anything else, DSA
#: above all, is refused as a weak key. An allow-list, so that a key type is
#: never accepted by default and the refused ones need no class of their own.
SIGNING_KEY_ALGORITHMS = frozenset(
    {
        PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5,
        PublicKeyAlgorithmOID.RSASSA_PSS,
        PublicKeyAlgorithmOID.EC_PUBLIC_KEY,
        PublicKeyAlgorithmOID.ED25519,
        PublicKeyAlgorithmOID.ED448,
    }
)

# What an admin knows the refused algorithms as (the OID's own names are
# "dsaEncryption", "X25519"...).
_KEY_NAMES = {"1.2.840.10040.4.1": "DSA", "1.3.101.110": "X25519", "1.3.101.111": "X448"}

#: The SAML limit on an entityID's length.
MAX_ENTITY_ID = 1024

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"

_CERT_HELP = (
    "Download the current certificate from the IdP app (Okta: the Sign On tab; Entra: "
    "SAML Certificates), or paste its Metadata URL again."
)

# Template markers and documentation hosts that show a value was copied from
# an example or an unexpanded template rather than from the admin's own IdP.
_PLACEHOLDER = re.compile(
    r"\$\{|\{\{|\}\}|\{[a-z_]+\}|%7b|<|>|changeme|change-me|placeholder|your[-_]?(org|company|domain"
    r"|tenant|idp|app)|//(?:[^/]*\.)?example\.(?:com|org|net)(?:[:/]|$)|xxxx",
    re.IGNORECASE,
)
# Microsoft Entra's multi-tenant ("common") federation metadata names no
# tenant: its issuer is a template that no response ever carries.
_ENTRA_COMMON = re.compile(r"//sts\.windows\.net/\{tenantid\}", re.IGNORECASE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Looser than RFC 8141 on purpose: Auth0's issuers ("urn:dev-123.us.auth0.com")
# have dots in the namespace and no second colon, yet are what the IdP sends.
_URN = re.compile(r"urn:[A-Za-z0-9]\S*", re.IGNORECASE)


def check_connection(
    idp: IdentityProvider,
    *,
    sp: ServiceProvider,
    now: datetime,
    attribute_mapping: Mapping[str, str] | None = None,
    active: IdentityProvider | None = None,
    shared_elsewhere: bool = False,
    dev_hosts: frozenset[str] = frozenset(),
) -> Report:
    """Check an IdP configuration for a tenant: what would block or endanger its sign-ins.

    ``active`` is the tenant's active IdP, if any, to point out what changes;
    ``shared_elsewhere`` whether another tenant's active connection has the
    same entity ID and a same signing certificate (which one is never said:
    the admin of one workspace learns nothing about the others); ``dev_hosts`` the hosts
    allowed over plain http (development only). ``now`` is timezone-aware.
    """
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    hosts = _hosts(dev_hosts)
    findings: list[Finding] = []
    findings.extend(_identity(idp, active))
    findings.extend(_sso_endpoint(idp.sso_url, hosts))
    findings.extend(_ours(idp, sp))
    findings.extend(_certificates(idp, now, active, shared_elsewhere))
    findings.append(_ALGORITHMS)
    findings.extend(_nameid(idp, sp))
    listed = not idp.nameid_formats or sp.nameid_format in idp.nameid_formats
    _, attribute_findings = check_attributes(
        idp.attributes,
        mapping=attribute_mapping,
        name_id=None,
        name_id_format=sp.nameid_format if listed else None,
    )
    findings.extend(attribute_findings)
    return Report(findings)


#: The certificate findings that ask the IT admin to act at the IdP before
#: sign-ins stop (or since they stopped): what the portal's banner shows.
_EXPIRY_CODES = frozenset({"cert.expired", "cert.expiring", "cert.expired_ignored"})


def certificate_findings(idp: IdentityProvider, *, now: datetime) -> Report:
    """What the signing certificates of a configuration in use say today: its expiries.

    The findings :func:`check_connection` gives about expiry (``cert.expired``,
    ``cert.expiring``, ``cert.expired_ignored``), in the same words, for a
    configuration saved long ago: a certificate that was valid then may
    expire next week. ``now`` is timezone-aware.
    """
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    found = _certificates(idp, now, None, shared_elsewhere=False)
    return Report([f for f in found if f.code in _EXPIRY_CODES])


def check_service_provider(
    sp: ServiceProvider, *, tenant_slug: str | None, dev_hosts: frozenset[str] = frozenset()
) -> Report:
    """Check the app's side of a tenant's connection: its entity ID and ACS URL.

    Both must be absolute https URLs (plain http only on a development host)
    and, so that one tenant's responses are never accepted for another, name
    the tenant: its slug must be a label of the host or a segment of the
    path. ``tenant_slug=None`` skips that last check (no tenant known).
    """
    hosts = _hosts(dev_hosts)
    findings: list[Finding] = []
    for value, where in ((sp.entity_id, "SP entity ID"), (sp.acs_url, "ACS URL")):
        parts = _split(value)
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            findings.append(
                Finding(
                    code="sp.not_absolute",
                    severity="error",
                    message=f"The {where} '{value}' is not an absolute URL; the IdP cannot use it.",
                    where=where,
                    suggestion="Set the app's public base URL for SAML to an absolute https "
                    "address.",
                )
            )
            continue
        if parts.scheme == "http":
            findings.append(_plain_http(value, where, parts.hostname, hosts, sso=False))
        if tenant_slug and not _names_tenant(parts, tenant_slug):
            findings.append(
                Finding(
                    code="sp.not_tenant_specific",
                    severity="error",
                    message=f"The {where} '{value}' does not name the tenant '{tenant_slug}': "
                    "responses meant for another tenant could be accepted for this one.",
                    where=where,
                    suggestion="Build the SAML URLs from the tenant (its slug in the path or "
                    "the host name).",
                )
            )
    return Report(findings)


def _hosts(dev_hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(host.strip().strip("[]").lower() for host in dev_hosts)


def _split(value: str) -> SplitResult | None:
    if not value or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return None
    return parts


def _names_tenant(parts: SplitResult, slug: str) -> bool:
    wanted = slug.casefold()
    labels = (parts.hostname or "").split(".")
    segments = [unquote(segment).casefold() for segment in parts.path.split("/")]
    return wanted in labels or wanted in segments


def _plain_http(value: str, where: str, host: str, hosts: frozenset[str], *, sso: bool) -> Finding:
    if host in hosts:
        return Finding(
            code="sso.dev_http" if sso else "sp.dev_http",
            severity="warning",
            message=f"The {where} '{value}' uses plain http, allowed only because '{host}' is "
            "a development host: sign-ins travel unencrypted.",
            where=where,
            suggestion="Use https for anything but local development.",
        )
    return Finding(
        code="sso.not_https" if sso else "sp.not_https",
        severity="error",
        message=f"The {where} '{value}' uses plain http: sign-ins would travel unencrypted.",
        where=where,
        suggestion="Use the https address the IdP gives for it."
        if sso
        else "Set the app's public base URL for SAML to an https address.",
    )


def _is_absolute_uri(value: str) -> bool:
    if any(c.isspace() for c in value):
        return False
    parts = _split(value)
    if parts is None or not _SCHEME.fullmatch(parts.scheme):
        return False
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return bool(parts.hostname)
    if scheme == "urn":
        return _URN.fullmatch(value) is not None
    return bool(parts.netloc or parts.path)


def _identity(idp: IdentityProvider, active: IdentityProvider | None) -> list[Finding]:
    entity_id = idp.entity_id
    where = "IdP entity ID"
    if not entity_id.strip():
        return [
            Finding(
                code="entity.missing",
                severity="error",
                message="The IdP entity ID (issuer) is empty; pbidentity checks every "
                "response's issuer against it.",
                where=where,
                suggestion="Copy the IdP's entity ID (Okta: Identity Provider Issuer; Entra: "
                "Microsoft Entra Identifier) from the IdP app.",
            )
        ]
    findings: list[Finding] = []
    if not _is_absolute_uri(entity_id):
        findings.append(
            Finding(
                code="entity.not_absolute",
                severity="warning",
                message=f"The IdP entity ID '{entity_id}' is not an absolute URI or URN, as "
                "SAML requires; it may be a display name rather than the issuer.",
                where=where,
                suggestion="Check it against the issuer the IdP app shows (Okta: Identity "
                "Provider Issuer; Entra: Microsoft Entra Identifier).",
            )
        )
    if len(entity_id) > MAX_ENTITY_ID:
        findings.append(
            Finding(
                code="entity.too_long",
                severity="warning",
                message=f"The IdP entity ID is {len(entity_id)} characters long, more than "
                f"the {MAX_ENTITY_ID} SAML allows.",
                where=where,
                suggestion="Check that the whole value is the IdP's issuer and nothing else.",
            )
        )
    if _PLACEHOLDER.search(entity_id):
        findings.append(
            Finding(
                code="entity.placeholder",
                severity="warning",
                message=f"The IdP entity ID '{entity_id}' looks like a placeholder or an "
                "example, not your IdP's issuer.",
                where=where,
                suggestion="This is Microsoft Entra's multi-tenant (common) metadata, which names "
                "no tenant: use the App Federation Metadata Url of your enterprise application "
                "in Entra instead."
                if _ENTRA_COMMON.search(entity_id)
                else "Copy the issuer from your IdP app, or use its Metadata URL.",
            )
        )
    if active is not None and active.entity_id != entity_id:
        findings.append(
            Finding(
                code="entity.changed",
                severity="warning",
                message=f"The IdP entity ID changes from '{active.entity_id}' (active now) to "
                f"'{entity_id}': this is another IdP or another app in it.",
                where=where,
                suggestion="Make sure this is the IdP app you mean to switch to; the active "
                "configuration keeps working until the test sign-in with the new one succeeds.",
            )
        )
    return findings


def _sso_endpoint(sso_url: str, hosts: frozenset[str]) -> list[Finding]:
    where = "SSO URL"
    if not sso_url.strip():
        return [
            Finding(
                code="sso.missing",
                severity="error",
                message="The IdP's SSO URL is empty: pbidentity has nowhere to send members "
                "to sign in.",
                where=where,
                suggestion="Copy the SSO URL (Okta: Identity Provider Single Sign-On URL; "
                "Entra: Login URL) from the IdP app.",
            )
        ]
    parts = _split(sso_url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            Finding(
                code="sso.invalid",
                severity="error",
                message=f"The SSO URL '{sso_url}' is not an absolute https URL.",
                where=where,
                suggestion="Copy the SSO URL from the IdP app as it is, starting with https://.",
            )
        ]
    findings: list[Finding] = []
    if parts.scheme == "http":
        findings.append(_plain_http(sso_url, where, parts.hostname, hosts, sso=True))
    if _PLACEHOLDER.search(sso_url):
        findings.append(
            Finding(
                code="sso.placeholder",
                severity="warning",
                message=f"The SSO URL '{sso_url}' looks like a placeholder or an example, not "
                "your IdP's.",
                where=where,
                suggestion="Copy the SSO URL from your IdP app, or use its Metadata URL.",
            )
        )
    return findings


def _ours(idp: IdentityProvider, sp: ServiceProvider) -> list[Finding]:
    """The app's own values typed where the IdP's belong: the usual mix-up of the two sides."""
    findings: list[Finding] = []
    if sp.entity_id and idp.entity_id.strip() == sp.entity_id:
        findings.append(
            Finding(
                code="entity.is_ours",
                severity="error",
                message=f"The IdP entity ID '{idp.entity_id}' is this app's own SP entity ID, "
                "not the IdP's.",
                where="IdP entity ID",
                suggestion="Enter the issuer the IdP app shows (Okta: Identity Provider "
                "Issuer; Entra: Microsoft Entra Identifier).",
            )
        )
    own = {url for url in (sp.acs_url, sp.login_url, sp.metadata_url, sp.entity_id) if url}
    if idp.sso_url.strip() in own:
        findings.append(
            Finding(
                code="sso.is_ours",
                severity="error",
                message=f"The SSO URL '{idp.sso_url}' is one of this app's own URLs, not the "
                "IdP's.",
                where="SSO URL",
                suggestion="Enter the SSO URL the IdP app shows (Okta: Identity Provider Single "
                "Sign-On URL; Entra: Login URL).",
            )
        )
    return findings


@attrs.frozen
class _Certificate:
    position: int
    certificate: x509.Certificate

    @property
    def name(self) -> str:
        """How the admin recognises it: ``'CN=okta'``, else the whole subject, else its position."""
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if names:
            return f"'CN={names[0].value!s}'"
        subject = self.certificate.subject.rfc4514_string()
        return f"'{subject}'" if subject else f"number {self.position}"

    @property
    def not_after(self) -> datetime:
        """The end of its validity."""
        return self.certificate.not_valid_after_utc

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the DER: the same certificate whatever its PEM wrapping."""
        return self.certificate.fingerprint(hashes.SHA256())


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def _load(pems: Sequence[str]) -> tuple[list[_Certificate], list[int]]:
    """The certificates that parse, and the positions (from 1) of those that do not."""
    loaded: list[_Certificate] = []
    unreadable: list[int] = []
    for position, pem in enumerate(pems, 1):
        try:
            loaded.append(_Certificate(position, x509.load_pem_x509_certificate(pem.encode())))
        except (ValueError, TypeError):
            unreadable.append(position)
    return loaded, unreadable


def _certificates(
    idp: IdentityProvider,
    now: datetime,
    active: IdentityProvider | None,
    shared_elsewhere: bool,
) -> list[Finding]:
    where = "signing certificate"
    if not idp.certificates:
        return [
            Finding(
                code="cert.missing",
                severity="error",
                message="The IdP configuration has no signing certificate, so no response "
                "could be verified.",
                where=where,
                suggestion=_CERT_HELP,
            )
        ]
    loaded, unreadable = _load(idp.certificates)
    findings = [
        Finding(
            code="cert.unreadable",
            severity="error",
            message=f"Signing certificate {position} is not a readable X.509 certificate"
            + (" (the only one)." if len(idp.certificates) == 1 else "."),
            where=f"{where} {position}",
            suggestion="Paste the whole certificate (PEM, or the base64 between its BEGIN and "
            "END lines). " + _CERT_HELP,
        )
        for position in unreadable
    ]
    checked = [(cert, _one_certificate(cert, loaded, now)) for cert in loaded]
    serving = [cert for cert, found in checked if _serves(cert, found, now)]
    for cert, found in checked:
        # A rollover the IdP has not cleaned up: the expired certificate can
        # sign nothing that is accepted (sign-in refuses a signature by an
        # expired certificate) and a valid one carries on, so it is no reason
        # to refuse the configuration.
        findings.extend(
            _ignored(cert, serving) if serving and f.code == "cert.expired" else f for f in found
        )
    if len(loaded) > 1:
        listed = "; ".join(f"{c.name} valid until {_day(c.not_after)}" for c in loaded)
        accepted = (
            "A response signed with any of them is accepted."
            if all(c.not_after > now for c in loaded)
            else "A response signed with any of them that has not expired is accepted."
        )
        findings.append(
            Finding(
                code="cert.rollover",
                severity="info",
                message=f"The IdP lists {len(loaded)} signing certificates (a rollover): "
                f"{listed}. {accepted}",
                where=where,
            )
        )
    if active is not None and active.certificates and loaded:
        before, _ = _load(active.certificates)
        if before and not {c.fingerprint for c in before} & {c.fingerprint for c in loaded}:
            was = "; ".join(f"{c.name} valid until {_day(c.not_after)}" for c in before)
            findings.append(
                Finding(
                    code="cert.changed",
                    severity="warning",
                    message=f"None of the signing certificates is one the active configuration "
                    f"uses ({was}).",
                    where=where,
                    suggestion="Expected after the IdP renewed its certificate; otherwise check "
                    "that this is your IdP app. The active configuration keeps working until "
                    "the test sign-in with the new one succeeds.",
                )
            )
    if shared_elsewhere:
        findings.append(
            Finding(
                code="cert.shared",
                severity="warning",
                message=f"The IdP '{idp.entity_id}' with the same signing certificate is "
                "already active for another workspace.",
                where=where,
                suggestion="Make sure this metadata is from your organisation's own IdP app, "
                "not copied from another workspace; each workspace needs its own app in the IdP.",
            )
        )
    return findings


def _serves(cert: _Certificate, found: Sequence[Finding], now: datetime) -> bool:
    """Whether the IdP can sign with ``cert`` today: in its validity window, no error on it."""
    in_window = cert.certificate.not_valid_before_utc <= now < cert.not_after
    return in_window and not any(f.severity == "error" for f in found)


def _ignored(expired: _Certificate, serving: Sequence[_Certificate]) -> Finding:
    """The warning that replaces ``cert.expired`` when another certificate still serves."""
    valid = " or ".join(f"{c.name} (valid until {_day(c.not_after)})" for c in serving)
    return Finding(
        code="cert.expired_ignored",
        severity="warning",
        message=f"The signing certificate {expired.name} expired on {_day(expired.not_after)} "
        f"and will be ignored; the IdP signs with {valid}.",
        where=f"signing certificate {expired.name}",
        suggestion="Nothing to do for sign-ins to work. Removing the expired certificate from "
        "the IdP app (then importing its metadata again) makes this warning go away; a "
        "response signed with the expired one is refused.",
    )


def _one_certificate(
    cert: _Certificate, loaded: Sequence[_Certificate], now: datetime
) -> list[Finding]:
    where = f"signing certificate {cert.name}"
    findings: list[Finding] = []
    not_after = cert.not_after
    not_before = cert.certificate.not_valid_before_utc
    if not_after <= now:
        findings.append(
            Finding(
                code="cert.expired",
                severity="error",
                message=f"The signing certificate {cert.name} expired on {_day(not_after)}.",
                where=where,
                suggestion=_CERT_HELP,
            )
        )
    elif not_after - now <= CERT_EXPIRY_WARNING:
        days = (not_after - now).days
        later = [c for c in loaded if c.not_after - now > CERT_EXPIRY_WARNING]
        if later:
            advice = (
                f"The IdP also lists {later[0].name} (valid until {_day(later[0].not_after)}): "
                "sign-ins go on once it signs with that one."
            )
        else:
            advice = (
                "Before then, add the IdP's next certificate (or paste its Metadata URL again "
                "once the IdP has one): sign-ins fail after that day."
            )
        findings.append(
            Finding(
                code="cert.expiring",
                severity="warning",
                message=f"The signing certificate {cert.name} expires in {days} "
                f"day{'s' if days != 1 else ''}, on {_day(not_after)}.",
                where=where,
                suggestion=advice,
            )
        )
    if not_before > now:
        findings.append(
            Finding(
                code="cert.not_yet_valid",
                severity="warning",
                message=f"The signing certificate {cert.name} is valid only from "
                f"{_day(not_before)}.",
                where=where,
                suggestion="Check the IdP's clock and that this is its current certificate.",
            )
        )
    algorithm = cert.certificate.public_key_algorithm_oid
    if algorithm not in SIGNING_KEY_ALGORITHMS:
        # Named from the certificate's algorithm identifier, without loading the
        # key: cryptography deprecates the DSA key class itself.
        oid = algorithm.dotted_string
        kind = f"a {_KEY_NAMES[oid]} key" if oid in _KEY_NAMES else f"a key of algorithm {oid}"
        findings.append(
            Finding(
                code="cert.weak_key",
                severity="error",
                message=f"The signing certificate {cert.name} has {kind}, which "
                "pbidentity does not accept for signatures.",
                where=where,
                suggestion="Create a new RSA (2048 bits or more) or EC signing certificate in "
                "the IdP and use it for this app.",
            )
        )
        return findings
    key = cert.certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        findings.append(
            Finding(
                code="cert.weak_key",
                severity="error",
                message=f"The signing certificate {cert.name} has a {key.key_size}-bit RSA key; "
                f"pbidentity needs at least {MIN_RSA_BITS} bits.",
                where=where,
                suggestion="Create a new signing certificate with a 2048-bit key or larger "
                "in the IdP and use it for this app.",
            )
        )
    return findings


_ALGORITHMS = Finding(
    code="algorithms.enforced",
    severity="info",
    message="pbidentity always checks responses in strict mode, rejects SHA-1 signatures and "
    "digests, and allows only the standard signature transforms.",
    where="algorithms",
)


def _short(nameid_format: str) -> str:
    return nameid_format.rsplit(":", 1)[-1]


def _nameid(idp: IdentityProvider, sp: ServiceProvider) -> list[Finding]:
    formats = idp.nameid_formats
    where = "NameID format"
    if not formats:
        return []
    if all(f == TRANSIENT for f in formats):
        return [
            Finding(
                code="nameid.transient",
                severity="error",
                message="The IdP offers only transient NameIDs, which change at every sign-in: "
                "pbidentity could never recognise a member the second time.",
                where=where,
                suggestion=f"Set the app's Name ID format to {_short(sp.nameid_format)} in the "
                "IdP and download its metadata again.",
            )
        ]
    if sp.nameid_format not in formats:
        listed = ", ".join(_short(f) for f in formats)
        return [
            Finding(
                code="nameid.not_listed",
                severity="warning",
                message=f"The IdP lists the NameID formats {listed}, but not "
                f"{_short(sp.nameid_format)}, which pbidentity asks for.",
                where=where,
                suggestion=f"Set the app's Name ID format to {_short(sp.nameid_format)} in the "
                "IdP (Okta: Name ID format; Entra: Unique User Identifier set to an email).",
            )
        ]
    return []


def check_roles(
    roles: SamlRoles, *, scim_enabled: bool, advertised: Sequence[str] = ()
) -> list[Finding]:
    """Check how the workspace reads roles from sign-ins against its SCIM switch.

    ``advertised`` are the attribute names the IdP metadata lists (most list
    none: the test sign-in then says what it carried). With SCIM provisioning
    on, SCIM sets roles: a role read from sign-ins, or a role statement the
    metadata lists, is only information that the statement can go.
    """
    listed = {name: [name] for name in advertised}
    name, values = role_attribute(roles, listed)
    if scim_enabled:
        return [scim_authoritative(name)] if roles.enabled or values else []
    if not roles.enabled or not advertised or values:
        return []
    groups = roles.groups_attribute
    if groups is not None and groups.casefold() in {a.casefold() for a in advertised}:
        return []
    return [
        Finding(
            code="roles.not_sent",
            severity="warning",
            message=f"Roles come from sign-ins, but the attributes the IdP metadata lists "
            f"include no '{roles.attribute}'" + (f" nor '{groups}'" if groups else "") + ".",
            where=f"attribute {roles.attribute}",
            suggestion=f"Add an attribute statement named '{roles.attribute}' holding the "
            "member's role in the IdP app.",
        )
    ]
