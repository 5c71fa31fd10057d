"""Real IdPs' metadata through the reader and the validator: what each document gives, exactly.

The documents, and where each comes from, are in ``tests/data/idp-metadata``
(``SOURCES.md``). Each is read at fixed moments chosen from its certificates'
lifetimes, never at today's date, with the app's side fixed at
``https://app.example``; it must give exactly the findings listed here. A new
finding on a real document is either a bug or a change to make in this table
on purpose.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC
from datetime import datetime
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pbidentity.admin import Admin
from pbidentity.domain import IdentityProvider
from pbidentity.saml import Report
from pbidentity.saml import ServiceProvider
from pbidentity.saml._metadata import read_metadata
from pbidentity.saml._service import SamlConfig
from pbidentity.saml._service import SamlService
from pbidentity.saml._validate import check_connection
from pbidentity.storage import open_storage
from tests.saml.certs import NOW

CORPUS = Path(__file__).resolve().parents[1] / "data" / "idp-metadata"
SOURCES = CORPUS / "SOURCES.md"

PUBLIC_URL = "https://app.example"
SP = ServiceProvider(
    entity_id=f"{PUBLIC_URL}/saml/acme/metadata",
    acs_url=f"{PUBLIC_URL}/saml/acme/acs",
    metadata_url=f"{PUBLIC_URL}/saml/acme/metadata",
    login_url=f"{PUBLIC_URL}/saml/acme/login",
)

EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"

Found = tuple[str, str]

#: What every document without advertised attributes gets: the rule pbidentity
#: enforces, and that attributes wait for the test sign-in.
BASELINE: tuple[Found, ...] = (("algorithms.enforced", "info"), ("attributes.not_listed", "info"))


def at(year: int, month: int, day: int) -> datetime:
    """Noon UTC on that day: the moment a document is read at."""
    return datetime(year, month, day, 12, tzinfo=UTC)


@attrs.frozen(kw_only=True)
class Reading:
    """What pbidentity reads from one document."""

    entity_id: str
    sso_url: str
    sso_binding: str
    #: The common names of the signing certificates, in document order.
    signing: tuple[str, ...]
    nameid_formats: tuple[str, ...]
    attributes: int = 0
    valid_until: datetime | None = None
    cache_duration: str | None = None


READINGS: dict[str, Reading] = {
    "adfs-federation-metadata.xml": Reading(
        entity_id="http://fs.msidlab11.com/adfs/services/trust",
        sso_url="https://fs.msidlab11.com/adfs/ls/",
        sso_binding="redirect",
        # The encryption KeyDescriptor and the SP role's keys are not signing certificates.
        signing=("ADFS Signing - fs.msidlab11.com",),
        nameid_formats=(EMAIL, PERSISTENT, TRANSIENT),
        attributes=63,
    ),
    "entra-common-federation-metadata.xml": Reading(
        entity_id="https://sts.windows.net/{tenantid}/",
        sso_url="https://login.microsoftonline.com/common/saml2",
        sso_binding="redirect",
        signing=(
            "accounts.accesscontrol.windows.net",
            "accounts.accesscontrol.windows.net",
            "login.microsoftonline.us",
        ),
        nameid_formats=(),
    ),
    "onelogin-app-metadata.xml": Reading(
        entity_id="https://app.onelogin.com/saml/metadata/383123",
        # The HTTP-Redirect endpoint, although its URL says http-post.
        sso_url="https://app.onelogin.com/trust/saml2/http-post/sso/383123",
        sso_binding="redirect",
        signing=("app.onelogin.com",),
        nameid_formats=(EMAIL,),
    ),
    "shibboleth-idp-metadata.xml": Reading(
        entity_id="https://idp.msidlab13.com/idp/shibboleth",
        sso_url="https://idp.msidlab13.com/idp/profile/SAML2/Redirect/SSO",
        sso_binding="redirect",
        # The KeyDescriptor without "use" signs too.
        signing=("*.msidlab13.com",),
        nameid_formats=("urn:mace:shibboleth:1.0:nameIdentifier", TRANSIENT),
    ),
    "shibboleth-testshib-providers.xml": Reading(
        entity_id="https://idp.testshib.org/idp/shibboleth",
        sso_url="https://idp.testshib.org/idp/profile/SAML2/Redirect/SSO",
        sso_binding="redirect",
        # One: the attribute authority's certificate (same CN, long expired) is not a signing one.
        signing=("idp.testshib.org",),
        nameid_formats=("urn:mace:shibboleth:1.0:nameIdentifier", TRANSIENT),
    ),
    "okta-app-metadata.xml": Reading(
        entity_id="http://www.okta.com/exk9x2ab7cDEF3gh4i5j",
        sso_url="https://acme.okta.com/app/acme_pbidentity_1/exk9x2ab7cDEF3gh4i5j/sso/saml",
        # Redirect is preferred although Okta lists POST first.
        sso_binding="redirect",
        signing=("acme",),
        nameid_formats=(UNSPECIFIED, EMAIL),
    ),
    "google-workspace-metadata.xml": Reading(
        entity_id="https://accounts.google.com/o/saml2?idpid=C03xyz9ab",
        sso_url="https://accounts.google.com/o/saml2/idp?idpid=C03xyz9ab",
        sso_binding="redirect",
        signing=("Google",),
        nameid_formats=(EMAIL,),
        valid_until=datetime(2029, 9, 1, 8, 41, 7, tzinfo=UTC),
    ),
    "jumpcloud-app-metadata.xml": Reading(
        entity_id="JumpCloud",
        sso_url="https://sso.jumpcloud.com/saml2/acme-pbidentity",
        sso_binding="post",
        signing=("JumpCloud",),
        nameid_formats=("urn:oasis:names:tc:SAML:1.0:nameid-format:unspecified",),
    ),
    "pingfederate-idp-metadata.xml": Reading(
        entity_id="https://sso.acme.example:9031/idp",
        sso_url="https://sso.acme.example:9031/idp/SSO.saml2",
        sso_binding="redirect",
        signing=("pf-signing.acme.example",),
        nameid_formats=(UNSPECIFIED,),
        attributes=3,
        cache_duration="PT1440M",
    ),
    "keycloak-realm-descriptor.xml": Reading(
        entity_id="https://sso.acme.example/realms/acme",
        sso_url="https://sso.acme.example/realms/acme/protocol/saml",
        sso_binding="redirect",
        signing=("acme",),
        nameid_formats=(PERSISTENT, TRANSIENT, UNSPECIFIED, EMAIL),
    ),
    "keycloak-legacy-realm-descriptor.xml": Reading(
        entity_id="https://sso.acme.example/auth/realms/acme",
        sso_url="https://sso.acme.example/auth/realms/acme/protocol/saml",
        sso_binding="redirect",
        signing=("acme",),
        nameid_formats=(PERSISTENT, TRANSIENT, UNSPECIFIED, EMAIL),
    ),
}

#: Each document at each moment, and exactly the findings (code, severity) it gives.
FINDINGS = [
    pytest.param(
        "adfs-federation-metadata.xml",
        at(2017, 6, 1),
        [
            ("algorithms.enforced", "info"),
            # AD FS advertises the claim URIs: the mapping is suggested from them.
            ("attributes.alias", "warning"),
            ("attributes.alias", "warning"),
        ],
        id="adfs",
    ),
    pytest.param(
        "adfs-federation-metadata.xml",
        at(2018, 1, 10),
        [
            ("algorithms.enforced", "info"),
            ("attributes.alias", "warning"),
            ("attributes.alias", "warning"),
            ("cert.expiring", "warning"),
        ],
        id="adfs-before-its-yearly-renewal",
    ),
    pytest.param(
        "entra-common-federation-metadata.xml",
        at(2018, 6, 1),
        [*BASELINE, ("cert.rollover", "info"), ("entity.placeholder", "warning")],
        id="entra-common",
    ),
    pytest.param(
        "entra-common-federation-metadata.xml",
        at(2018, 12, 1),
        [
            *BASELINE,
            # One of three certificates has expired: a warning, no longer an error.
            ("cert.expired_ignored", "warning"),
            ("cert.rollover", "info"),
            ("entity.placeholder", "warning"),
        ],
        id="entra-common-one-certificate-expired",
    ),
    pytest.param(
        "entra-common-federation-metadata.xml",
        at(2019, 4, 1),
        [
            *BASELINE,
            ("cert.expired", "error"),
            ("cert.expired", "error"),
            ("cert.expired", "error"),
            ("cert.rollover", "info"),
            ("entity.placeholder", "warning"),
        ],
        id="entra-common-every-certificate-expired",
    ),
    pytest.param("onelogin-app-metadata.xml", at(2016, 6, 1), [*BASELINE], id="onelogin"),
    pytest.param(
        "shibboleth-idp-metadata.xml",
        at(2017, 6, 1),
        [*BASELINE, ("nameid.not_listed", "warning")],
        id="shibboleth",
    ),
    pytest.param(
        "shibboleth-testshib-providers.xml",
        NOW,
        # The SP's and the attribute authority's expired certificates play no part.
        [*BASELINE, ("nameid.not_listed", "warning")],
        id="shibboleth-testshib",
    ),
    pytest.param("okta-app-metadata.xml", NOW, [*BASELINE], id="okta"),
    pytest.param("google-workspace-metadata.xml", NOW, [*BASELINE], id="google"),
    pytest.param(
        "google-workspace-metadata.xml",
        at(2029, 8, 28),
        # Google's validUntil is its certificate's end: both warn together...
        [*BASELINE, ("cert.expiring", "warning"), ("metadata.expiring", "warning")],
        id="google-days-before-its-certificate-ends",
    ),
    pytest.param(
        "google-workspace-metadata.xml",
        at(2029, 9, 2),
        # ... and both block together.
        [*BASELINE, ("cert.expired", "error"), ("metadata.expired", "error")],
        id="google-after-its-certificate-ended",
    ),
    pytest.param(
        "jumpcloud-app-metadata.xml",
        NOW,
        [*BASELINE, ("entity.not_absolute", "warning"), ("nameid.not_listed", "warning")],
        id="jumpcloud",
    ),
    pytest.param(
        "pingfederate-idp-metadata.xml",
        NOW,
        [
            ("algorithms.enforced", "info"),
            ("attributes.alias", "warning"),
            ("attributes.alias", "warning"),
            ("metadata.cache_duration", "info"),
            ("nameid.not_listed", "warning"),
        ],
        id="pingfederate",
    ),
    pytest.param(
        "keycloak-realm-descriptor.xml",
        NOW,
        [*BASELINE, ("sso.wants_signed_requests", "warning")],
        id="keycloak",
    ),
    pytest.param(
        "keycloak-legacy-realm-descriptor.xml",
        NOW,
        [*BASELINE, ("sso.wants_signed_requests", "warning")],
        id="keycloak-legacy",
    ),
]


def document(name: str) -> bytes:
    """A corpus document's bytes, exactly as stored."""
    return (CORPUS / name).read_bytes()


def common_name(pem: str) -> str:
    """The certificate's CN, as the table names it."""
    certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def checked(name: str, moment: datetime) -> tuple[IdentityProvider, Report]:
    """The document read and checked at ``moment``, as the admin page does."""
    idp, report = read_metadata(document(name), now=moment)
    assert idp is not None, report.render()
    return idp, report.plus(check_connection(idp, sp=SP, now=moment).findings)


def found(report: Report) -> list[Found]:
    """The findings as sorted (code, severity) pairs: repeats kept."""
    return sorted((f.code, f.severity) for f in report.findings)


@pytest.mark.parametrize("name", sorted(READINGS))
def test_each_document_reads_as_its_vendor_publishes_it(name: str) -> None:
    """Entity ID, the SSO URL and binding chosen, signing certificates, NameID formats."""
    idp, _ = read_metadata(document(name), now=at(2017, 6, 1))
    assert idp is not None
    expected = READINGS[name]
    assert idp.entity_id == expected.entity_id
    assert idp.sso_url == expected.sso_url
    assert idp.sso_binding == expected.sso_binding
    assert tuple(common_name(pem) for pem in idp.certificates) == expected.signing
    assert idp.nameid_formats == expected.nameid_formats
    assert len(idp.attributes) == expected.attributes
    assert idp.valid_until == expected.valid_until
    assert idp.cache_duration == expected.cache_duration


@pytest.mark.parametrize(("name", "moment", "expected"), FINDINGS)
def test_each_document_gives_exactly_its_findings(
    name: str, moment: datetime, expected: list[Found]
) -> None:
    """No crash, no missing finding, no extra one: the table is the validator's whole answer."""
    _, report = checked(name, moment)
    assert found(report) == sorted(expected), report.render()


@pytest.mark.parametrize(("name", "moment", "expected"), FINDINGS)
def test_each_document_saves_unless_an_error_blocks_it(
    name: str, moment: datetime, expected: list[Found], tmp_path: Path
) -> None:
    """Through the SAML service on a SQLite file: warnings never stop saving, errors always do."""
    storage = open_storage(f"sqlite:///{tmp_path / 'pbidentity.db'}")
    try:
        Admin(storage).create_tenant("acme", "Acme")
        service = SamlService(storage, SamlConfig(public_url=PUBLIC_URL), clock=lambda: moment)
        saved = service.save_metadata_xml("acme", document(name))
        blocked = any(severity == "error" for _, severity in expected)
        assert saved.saved is not blocked, saved.report.render()
        if saved.saved:
            assert found(saved.report) == sorted(expected), saved.report.render()
        else:
            # An error in the document itself stops before the connection is checked.
            assert set(found(saved.report)) <= set(expected), saved.report.render()
            assert saved.report.errors
        if saved.connection is not None:
            # Kept as published, expired certificates included: see test_service's rollover.
            stored = service.connections("acme").pending
            assert stored is not None
            assert len(stored.idp.certificates) == len(READINGS[name].signing)
    finally:
        storage.close()


def test_every_moment_in_the_table_names_a_known_document() -> None:
    """Each document has its reading and at least one moment; no row names a missing one."""
    named = {param.values[0] for param in FINDINGS}
    assert named == set(READINGS)


def _sources() -> dict[str, str]:
    """SOURCES.md's section for each document it lists: file name -> section text."""
    sections = re.split(r"^## (.*)$", SOURCES.read_text(encoding="utf-8"), flags=re.MULTILINE)
    listed = {}
    for heading, text in zip(sections[1::2], sections[2::2], strict=True):
        named = re.match(r"`([^`]+)`", heading)
        if named is not None:
            listed[named.group(1)] = text
    return listed


def test_every_document_has_its_source_licence_and_checksum() -> None:
    """SOURCES.md lists exactly the documents there are, each with where it came from."""
    on_disk = {path.name for path in CORPUS.glob("*.xml")}
    sources = _sources()
    assert set(sources) == on_disk == set(READINGS)
    for name, section in sources.items():
        assert "- Licence:" in section, name
        assert "- Source:" in section or "- Built from" in section, name
        listed = re.search(r"SHA-256: `([0-9a-f]{64})`", section)
        assert listed is not None, name
        # An editor that adds a final newline or strips a space changes a verbatim document.
        assert hashlib.sha256(document(name)).hexdigest() == listed.group(1), name
