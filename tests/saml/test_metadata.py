"""Reading IdP metadata: the IdP it describes, and what is wrong with the document.

The documents are built here, shaped like what Okta and Microsoft Entra
publish (the Entra one with its WS-Federation roles and a ds:Signature).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509

from pbidentity.saml._metadata import BINDING_POST
from pbidentity.saml._metadata import BINDING_REDIRECT
from pbidentity.saml._metadata import MAX_METADATA_BYTES
from pbidentity.saml._metadata import idp_from_fields
from pbidentity.saml._metadata import pem_certificates
from pbidentity.saml._metadata import read_metadata
from tests.saml.certs import NOW
from tests.saml.certs import base64_body
from tests.saml.certs import make_certificate

UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"

OKTA_ENTITY = "http://www.okta.com/exk1abcd2EFGH3ijk4l5"
OKTA_SSO = "https://acme.okta.com/app/acme_pbidentity_1/exk1abcd2EFGH3ijk4l5/sso/saml"
ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENTRA_ENTITY = f"https://sts.windows.net/{ENTRA_TENANT}/"
ENTRA_SSO = f"https://login.microsoftonline.com/{ENTRA_TENANT}/saml2"


def cert(cn: str = "idp.test", *, serial: int | None = None) -> str:
    """A certificate's PEM (valid for a year either side of NOW)."""
    return make_certificate(cn=cn, serial=serial)[1]


def key_descriptor(pem: str, use: str | None = "signing") -> str:
    """An md:KeyDescriptor holding ``pem`` as metadata carries it."""
    use_attr = f' use="{use}"' if use else ""
    return (
        f'<md:KeyDescriptor{use_attr}><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
        f"<ds:X509Data><ds:X509Certificate>{base64_body(pem)}</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
    )


def idp_descriptor(
    *,
    entity_id: str = "https://idp.test/saml",
    certs: Sequence[str] = (),
    keys: str = "",
    sso: Sequence[tuple[str, str]] = ((BINDING_REDIRECT, "https://idp.test/sso"),),
    nameid_formats: Sequence[str] = (),
    attributes: Sequence[str] = (),
    entity_attrs: str = "",
    role_attrs: str = "",
    protocol: str = "urn:oasis:names:tc:SAML:2.0:protocol",
    root: bool = True,
) -> str:
    """An EntityDescriptor with one IDPSSODescriptor, as text."""
    ns = ' xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"' if root else ""
    saml_ns = ' xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"' if attributes else ""
    return (
        f'<md:EntityDescriptor{ns}{saml_ns} entityID="{entity_id}"{entity_attrs}>'
        f'<md:IDPSSODescriptor protocolSupportEnumeration="{protocol}"{role_attrs}>'
        + "".join(key_descriptor(pem) for pem in certs)
        + keys
        + "".join(f"<md:NameIDFormat>{f}</md:NameIDFormat>" for f in nameid_formats)
        + "".join(
            f'<md:SingleSignOnService Binding="{binding}" Location="{location}"/>'
            for binding, location in sso
        )
        + "".join(
            f'<saml:Attribute Name="{name}" '
            'NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"/>'
            for name in attributes
        )
        + "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def idp_metadata(**kwargs: Any) -> bytes:
    """A metadata document of one IdP (see :func:`idp_descriptor` for the options)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>' + idp_descriptor(**kwargs)).encode()


def okta_metadata(cert_pem: str, *, entity_id: str = OKTA_ENTITY) -> bytes:
    """Metadata shaped like an Okta SAML app's (POST listed before Redirect, as Okta does)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<md:EntityDescriptor entityID="{entity_id}" '
        'xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
        '<md:IDPSSODescriptor WantAuthnRequestsSigned="false" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{key_descriptor(cert_pem)}"
        f"<md:NameIDFormat>{UNSPECIFIED}</md:NameIDFormat>"
        f"<md:NameIDFormat>{EMAIL}</md:NameIDFormat>"
        f'<md:SingleSignOnService Binding="{BINDING_POST}" Location="{OKTA_SSO}"/>'
        f'<md:SingleSignOnService Binding="{BINDING_REDIRECT}" Location="{OKTA_SSO}"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    ).encode()


def entra_metadata(signing: Sequence[str]) -> bytes:
    """Metadata shaped like Microsoft Entra's federation metadata.

    It opens with a ds:Signature (not verified: pbidentity trusts the https
    fetch, not a signature key it has no anchor for), carries two
    WS-Federation RoleDescriptors with their own KeyDescriptors and claim
    types, and then the SAML IDPSSODescriptor.
    """
    keys = "".join(
        '<KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#">'
        f"<X509Data><X509Certificate>{base64_body(pem)}</X509Certificate></X509Data>"
        "</KeyInfo></KeyDescriptor>"
        for pem in signing
    )
    claim = (
        '<auth:ClaimType Uri="http://schemas.xmlsoap.org/ws/2005/05/identity/claims/{0}" '
        'xmlns:auth="http://docs.oasis-open.org/wsfed/authorization/200706">'
        "<auth:DisplayName>{0}</auth:DisplayName>"
        "<auth:Description>The {0} of the subject.</auth:Description></auth:ClaimType>"
    )
    claims = "".join(claim.format(name) for name in ("name", "givenname", "surname"))
    endpoint = (
        '<wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        f"<wsa:Address>https://login.microsoftonline.com/{ENTRA_TENANT}/wsfed</wsa:Address>"
        "</wsa:EndpointReference>"
    )
    fed = (
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:fed="http://docs.oasis-open.org/wsfed/federation/200706" '
        'protocolSupportEnumeration="http://docs.oasis-open.org/wsfed/federation/200706"'
    )
    signature = (
        '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>'
        '<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        '<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
        '<Reference URI="#_5a3b1c9e-0f2d-4e8a-9b6c-1d2e3f4a5b6c"><Transforms>'
        '<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        '<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></Transforms>'
        '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        "<DigestValue>3q2+7w==</DigestValue></Reference></SignedInfo>"
        "<SignatureValue>c2lnbmF0dXJl</SignatureValue>"
        f"<KeyInfo><X509Data><X509Certificate>{base64_body(signing[0])}</X509Certificate>"
        "</X509Data></KeyInfo></Signature>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<EntityDescriptor ID="_5a3b1c9e-0f2d-4e8a-9b6c-1d2e3f4a5b6c" '
        f'entityID="{ENTRA_ENTITY}" xmlns="urn:oasis:names:tc:SAML:2.0:metadata">'
        f"{signature}"
        f'<RoleDescriptor xsi:type="fed:SecurityTokenServiceType" {fed}>{keys}'
        f"<fed:ClaimTypesOffered>{claims}</fed:ClaimTypesOffered>"
        f"<fed:SecurityTokenServiceEndpoint>{endpoint}</fed:SecurityTokenServiceEndpoint>"
        f"<fed:PassiveRequestorEndpoint>{endpoint}</fed:PassiveRequestorEndpoint>"
        "</RoleDescriptor>"
        f'<RoleDescriptor xsi:type="fed:ApplicationServiceType" {fed}>{keys}'
        f"<fed:TargetScopes>{endpoint}</fed:TargetScopes>"
        f"<fed:ApplicationServiceEndpoint>{endpoint}</fed:ApplicationServiceEndpoint>"
        f"<fed:PassiveRequestorEndpoint>{endpoint}</fed:PassiveRequestorEndpoint>"
        "</RoleDescriptor>"
        '<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{keys}"
        f'<SingleLogoutService Binding="{BINDING_REDIRECT}" Location="{ENTRA_SSO}"/>'
        f'<SingleSignOnService Binding="{BINDING_REDIRECT}" Location="{ENTRA_SSO}"/>'
        f'<SingleSignOnService Binding="{BINDING_POST}" Location="{ENTRA_SSO}"/>'
        "</IDPSSODescriptor></EntityDescriptor>"
    ).encode()


def _same_certificate(a: str, b: str) -> bool:
    return x509.load_pem_x509_certificate(a.encode()) == x509.load_pem_x509_certificate(b.encode())


# --- real-world shapes ----------------------------------------------------------------------


def test_okta_metadata_reads_cleanly() -> None:
    """Okta's shape: Redirect chosen although POST comes first, both NameID formats kept."""
    pem = cert("okta")
    idp, report = read_metadata(okta_metadata(pem), now=NOW)
    assert report.findings == ()
    assert idp is not None
    assert idp.entity_id == OKTA_ENTITY
    assert (idp.sso_binding, idp.sso_url) == ("redirect", OKTA_SSO)
    assert len(idp.certificates) == 1
    assert _same_certificate(idp.certificates[0], pem)
    assert idp.nameid_formats == (UNSPECIFIED, EMAIL)
    assert idp.attributes == ()
    assert idp.valid_until is None
    assert idp.cache_duration is None


def test_entra_federation_metadata_reads_cleanly() -> None:
    """Entra's WS-Federation roles and signature neither break the read nor fail the schema.

    Only the IDPSSODescriptor's certificates count, so a rollover shows as two.
    """
    current, next_one = cert("Microsoft Azure Federated SSO Certificate"), cert("next", serial=7)
    idp, report = read_metadata(entra_metadata([current, next_one]), now=NOW)
    assert report.findings == ()
    assert idp is not None
    assert idp.entity_id == ENTRA_ENTITY
    assert (idp.sso_binding, idp.sso_url) == ("redirect", ENTRA_SSO)
    assert len(idp.certificates) == 2
    assert _same_certificate(idp.certificates[1], next_one)


def test_certificates_are_normalised_pem_and_kept_in_order() -> None:
    """Base64 wrapped any which way becomes the same 64-column PEM; repeats are dropped."""
    first, second = cert("a"), cert("b")
    body = base64_body(first)
    messy = "\n   ".join(body[i : i + 50] for i in range(0, len(body), 50))
    keys = (
        '<md:KeyDescriptor><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data>'
        f"<ds:X509Certificate>\n  {messy}\n</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
        "</md:KeyDescriptor>"
        + key_descriptor(second, use="encryption")
        + key_descriptor(first)
        + key_descriptor(second)
    )
    idp, _ = read_metadata(idp_metadata(keys=keys), now=NOW)
    assert idp is not None
    assert len(idp.certificates) == 2
    assert idp.certificates[0] == pem_certificates(body)[0]
    assert all(len(line) <= 64 for line in idp.certificates[0].splitlines())
    assert _same_certificate(idp.certificates[0], first)
    assert _same_certificate(idp.certificates[1], second)


def test_encryption_only_keys_give_no_signing_certificate() -> None:
    """A KeyDescriptor for encryption is not a signing certificate."""
    keys = key_descriptor(cert(), use="encryption")
    idp, _ = read_metadata(idp_metadata(keys=keys), now=NOW)
    assert idp is not None
    assert idp.certificates == ()


def test_nameid_formats_and_advertised_attributes_are_read() -> None:
    """NameID formats keep the IdP's order; saml:Attribute children give the attribute names."""
    idp, report = read_metadata(
        idp_metadata(
            nameid_formats=(TRANSIENT, EMAIL), attributes=("mail", "givenName", "sn", "mail")
        ),
        now=NOW,
    )
    assert report.ok
    assert idp is not None
    assert idp.nameid_formats == (TRANSIENT, EMAIL)
    assert idp.attributes == ("mail", "givenName", "sn")


def test_entities_descriptor_with_one_idp_among_service_providers() -> None:
    """An EntitiesDescriptor is fine when exactly one of its entities is an IdP."""
    sp = (
        '<md:EntityDescriptor entityID="https://sp.test"><md:SPSSODescriptor '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<md:AssertionConsumerService index="0" Binding="urn:oasis:names:tc:SAML:2.0:bindings:'
        'HTTP-POST" Location="https://sp.test/acs"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )
    xml = (
        '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
        + sp
        + idp_descriptor(entity_id="https://idp.one", certs=[cert()], root=False)
        + "</md:EntitiesDescriptor>"
    ).encode()
    idp, report = read_metadata(xml, now=NOW)
    assert report.findings == ()
    assert idp is not None
    assert idp.entity_id == "https://idp.one"


# --- the SSO endpoint -------------------------------------------------------------------------


def test_post_only_metadata_uses_the_post_binding() -> None:
    """POST-only metadata is usable (python3-saml's parser would have failed on it)."""
    idp, report = read_metadata(
        idp_metadata(sso=[(SOAP, "https://idp.test/soap"), (BINDING_POST, "https://idp.test/p")]),
        now=NOW,
    )
    assert report.ok
    assert idp is not None
    assert (idp.sso_binding, idp.sso_url) == ("post", "https://idp.test/p")


def test_soap_and_artifact_only_is_an_error() -> None:
    """Only SOAP and Artifact bindings: nothing pbidentity can send a browser to."""
    idp, report = read_metadata(
        idp_metadata(sso=[(SOAP, "https://idp.test/soap"), (ARTIFACT, "https://idp.test/a")]),
        now=NOW,
    )
    assert idp is None
    assert report.codes() == {"sso.unsupported_binding"}
    assert "HTTP-Artifact, SOAP" in report.errors[0].message


def test_no_sso_service_is_an_error() -> None:
    """No SingleSignOnService at all."""
    idp, report = read_metadata(idp_metadata(sso=()), now=NOW)
    assert idp is None
    assert [f.code for f in report.errors] == ["sso.missing"]
    assert report.codes() == {"sso.missing", "metadata.schema"}  # the schema requires one


# --- the document ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "xml",
    [
        b"",
        b"<md:EntityDescriptor",
        b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"></md:Entity>',
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "truncated", "mismatched", "pem"],
)
def test_not_well_formed(xml: bytes) -> None:
    """Broken XML is an error naming where it broke."""
    idp, report = read_metadata(xml, now=NOW)
    assert idp is None
    assert report.codes() == {"metadata.not_well_formed"}
    assert "line 1" in report.errors[0].message


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE md:EntityDescriptor ['
    b'<!ENTITY a "aaaaaaaaaaaaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    b'<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&d;"/>'
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE md:EntityDescriptor ['
    b'<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&xxe;"/>'
)
PARAMETER_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd">'
    b"%remote;]><x/>"
)


@pytest.mark.parametrize(
    "xml",
    [
        BILLION_LAUGHS,
        XXE,
        PARAMETER_ENTITY,
        b"<!DOCTYPE md:EntityDescriptor>" + idp_metadata(certs=[cert()]).split(b"?>", 1)[1],
    ],
    ids=["billion-laughs", "xxe", "parameter-entity", "plain-doctype"],
)
def test_doctype_is_refused_as_unsafe(xml: bytes) -> None:
    """Any DOCTYPE, harmless-looking or not, is refused before anything is read."""
    idp, report = read_metadata(xml, now=NOW)
    assert idp is None
    assert report.codes() == {"metadata.unsafe"}
    assert "root:" not in report.render()  # nothing of /etc/passwd made it anywhere


def test_oversized_document_is_refused() -> None:
    """More than a megabyte is no one IdP's metadata."""
    xml = idp_metadata(certs=[cert()]) + b" " * MAX_METADATA_BYTES
    idp, report = read_metadata(xml, now=NOW)
    assert idp is None
    assert report.codes() == {"metadata.too_large"}


def test_not_metadata_at_all() -> None:
    """Well-formed XML that is not SAML metadata."""
    idp, report = read_metadata(b"<html><body>Sign in</body></html>", now=NOW)
    assert idp is None
    assert report.codes() == {"metadata.no_idp"}
    assert "<html>" in report.errors[0].message


def test_service_provider_metadata_is_no_idp() -> None:
    """An SP's metadata (pbidentity's own, pasted by mistake) describes no IdP."""
    xml = (
        b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        b'entityID="https://app.test/saml/acme"><md:SPSSODescriptor '
        b'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/>'
        b"</md:EntityDescriptor>"
    )
    idp, report = read_metadata(xml, now=NOW)
    assert idp is None
    assert report.codes() == {"metadata.no_idp"}


def test_saml1_only_idp_is_no_saml2_idp() -> None:
    """An IdP role for SAML 1.1 only is named as such."""
    xml = idp_metadata(protocol="urn:oasis:names:tc:SAML:1.1:protocol")
    idp, report = read_metadata(xml, now=NOW)
    assert idp is None
    assert report.codes() == {"metadata.no_idp"}
    assert "SAML 1.1" in report.errors[0].message


def test_several_idps_are_an_error_listing_them() -> None:
    """A federation aggregate: the admin must pick their own IdP's metadata."""
    xml = (
        '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
        + idp_descriptor(entity_id="https://idp.one", root=False)
        + "<md:EntitiesDescriptor>"
        + idp_descriptor(entity_id="https://idp.two", root=False)
        + "</md:EntitiesDescriptor></md:EntitiesDescriptor>"
    ).encode()
    idp, report = read_metadata(xml, now=NOW)
    assert idp is None
    assert report.codes() == {"metadata.several_idps"}
    assert "'https://idp.one', 'https://idp.two'" in report.errors[0].message
    many = (
        '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
        + "".join(idp_descriptor(entity_id=f"https://idp{n}", root=False) for n in range(8))
        + "</md:EntitiesDescriptor>"
    ).encode()
    _, report = read_metadata(many, now=NOW)
    assert "'https://idp4' and 3 more)" in report.errors[0].message


def test_valid_until_past_is_an_error() -> None:
    """Expired metadata blocks; the IdP is still returned so the rest can be checked."""
    xml = idp_metadata(entity_attrs=' validUntil="2026-05-31T12:00:00Z"')
    idp, report = read_metadata(xml, now=NOW)
    assert idp is not None
    assert report.codes() == {"metadata.expired"}
    assert "2026-05-31 12:00 UTC" in report.errors[0].message


def test_valid_until_within_a_week_is_a_warning() -> None:
    """The earliest validUntil of the document, entity and role counts; days left shown."""
    xml = idp_metadata(
        entity_attrs=' validUntil="2027-01-01T00:00:00Z"',
        role_attrs=' validUntil="2026-06-04T12:00:00.1234567Z"',
    )
    idp, report = read_metadata(xml, now=NOW)
    assert idp is not None
    assert idp.valid_until is not None
    assert idp.valid_until.isoformat() == "2026-06-04T12:00:00.123456+00:00"
    assert report.codes() == {"metadata.expiring"}
    assert "3 days" in report.warnings[0].message


def test_valid_until_far_away_says_nothing() -> None:
    """More than a week left: no finding, the date is kept."""
    idp, report = read_metadata(
        idp_metadata(entity_attrs=' validUntil="2026-07-01T00:00:00Z"'), now=NOW
    )
    assert report.findings == ()
    assert idp is not None
    assert idp.valid_until == NOW + timedelta(days=29, hours=12)


def test_unreadable_valid_until_is_a_warning() -> None:
    """A validUntil that is no date is reported (and fails the schema too)."""
    _, report = read_metadata(idp_metadata(entity_attrs=' validUntil="next tuesday"'), now=NOW)
    assert "metadata.bad_valid_until" in report.codes()


def test_cache_duration_is_noted() -> None:
    """The cacheDuration is information, kept on the IdP."""
    idp, report = read_metadata(idp_metadata(entity_attrs=' cacheDuration="PT8H"'), now=NOW)
    assert idp is not None
    assert idp.cache_duration == "PT8H"
    assert report.codes() == {"metadata.cache_duration"}
    assert report.findings[0].severity == "info"
    assert "PT8H" in report.findings[0].message


@pytest.mark.parametrize("value", ["true", "1", " true "])
def test_idp_asking_for_signed_requests_is_a_warning_that_blocks_nothing(value: str) -> None:
    """Unsigned requests may be refused: the admin learns what that means and what to do."""
    idp, report = read_metadata(
        idp_metadata(certs=[cert()], role_attrs=f' WantAuthnRequestsSigned="{value}"'), now=NOW
    )
    assert idp is not None
    assert report.ok
    assert report.codes() == {"sso.wants_signed_requests"}
    found = report.warnings[0]
    assert "this connection does not sign them" in found.message
    assert "refuses every sign-in" in found.message
    assert "Turn on signed sign-in requests for this connection" in found.suggestion
    assert "switch the requirement off" in found.suggestion
    assert "test sign-in" in found.suggestion


def test_idp_asking_for_signed_requests_says_nothing_when_the_connection_signs_them() -> None:
    """With signed requests on, the IdP's wish is met: the warning turns into nothing."""
    xml = idp_metadata(certs=[cert()], role_attrs=' WantAuthnRequestsSigned="true"')

    _, report = read_metadata(xml, now=NOW, signs_requests=True)

    assert report.codes() == set()


@pytest.mark.parametrize("attribute", ["", ' WantAuthnRequestsSigned="false"'])
def test_idp_not_asking_for_signed_requests_says_nothing(attribute: str) -> None:
    """Absent or false (Okta and Google publish false): no finding."""
    _, report = read_metadata(idp_metadata(certs=[cert()], role_attrs=attribute), now=NOW)
    assert report.codes() == set()


def test_schema_invalid_metadata_is_a_warning() -> None:
    """An element the schema does not allow: read anyway, with a warning naming the line."""
    xml = idp_metadata(
        keys="<md:Bogus/>",
        nameid_formats=(EMAIL,),
    )
    idp, report = read_metadata(xml, now=NOW)
    assert idp is not None
    assert report.codes() == {"metadata.schema"}
    assert report.warnings[0].severity == "warning"
    assert "line 1" in report.warnings[0].message
    assert "Bogus" in report.warnings[0].message


def test_ws_federation_roles_skip_the_schema_check_the_rest_does_not() -> None:
    """Only the WS-Federation roles are left out of the schema check, not the SAML role."""
    bad = entra_metadata([cert()]).replace(
        b"<SingleLogoutService", b"<Unexpected/><SingleLogoutService"
    )
    _, report = read_metadata(bad, now=NOW)
    assert report.codes() == {"metadata.schema"}
    untyped = idp_metadata().replace(
        b"<md:IDPSSODescriptor",
        b'<md:RoleDescriptor protocolSupportEnumeration="urn:x"/><md:IDPSSODescriptor',
    )
    _, report = read_metadata(untyped, now=NOW)
    assert report.codes() == {"metadata.schema"}


# --- typed by hand ------------------------------------------------------------------------------


def test_idp_from_fields_takes_pem_or_base64() -> None:
    """A pasted PEM (two blocks: a rollover) or a bare base64 body both become PEM."""
    first, second = cert("a"), cert("b")
    idp, report = idp_from_fields(
        "  https://idp.test/saml ", " https://idp.test/sso\n", first + "\n" + second, "post"
    )
    assert report.findings == ()
    assert idp is not None
    assert idp.entity_id == "https://idp.test/saml"
    assert idp.sso_url == "https://idp.test/sso"
    assert idp.sso_binding == "post"
    assert len(idp.certificates) == 2
    assert _same_certificate(idp.certificates[1], second)
    bare, _ = idp_from_fields("e", "u", base64_body(first))
    assert bare is not None
    assert bare.sso_binding == "redirect"
    assert _same_certificate(bare.certificates[0], first)


@pytest.mark.parametrize("binding", [BINDING_POST, "HTTP-Redirect", "REDIRECT"])
def test_idp_from_fields_accepts_binding_spellings(binding: str) -> None:
    """The short names, the SAML names and the URNs are all understood."""
    idp, _ = idp_from_fields("e", "u", "", binding)
    assert idp is not None


def test_idp_from_fields_refuses_other_bindings() -> None:
    """Artifact is not a binding pbidentity can use."""
    idp, report = idp_from_fields("e", "u", "", "artifact")
    assert idp is None
    assert report.codes() == {"sso.unsupported_binding"}
