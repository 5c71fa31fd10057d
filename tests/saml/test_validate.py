"""The validator an admin's SAML configuration goes through: one test (at least) per finding."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from pbidentity.domain import IdentityProvider
from pbidentity.saml import EMAIL_NAMEID
from pbidentity.saml import ServiceProvider
from pbidentity.saml._metadata import read_metadata
from pbidentity.saml._validate import check_connection
from pbidentity.saml._validate import check_service_provider
from tests.saml.certs import DSA_CERTIFICATE
from tests.saml.certs import NOW
from tests.saml.certs import KeyType
from tests.saml.certs import expired_certificate
from tests.saml.certs import expiring_certificate
from tests.saml.certs import make_certificate
from tests.saml.test_metadata import entra_metadata
from tests.saml.test_metadata import okta_metadata

SP = ServiceProvider(
    entity_id="https://app.test/saml/acme",
    acs_url="https://app.test/saml/acme/acs",
    metadata_url="https://app.test/saml/acme/metadata",
    login_url="https://app.test/saml/acme/login",
)
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
GOOD = make_certificate(cn="idp.test")[1]
#: The findings every sound configuration gets: what pbidentity enforces, and
#: that attributes wait for the test sign-in.
BASELINE = {"algorithms.enforced", "attributes.not_listed"}


def idp(**changes: Any) -> IdentityProvider:
    """A sound IdP, with ``changes``."""
    base = IdentityProvider(
        entity_id="https://idp.test/saml",
        sso_url="https://idp.test/sso",
        certificates=(GOOD,),
        nameid_formats=(EMAIL_NAMEID,),
    )
    return attrs.evolve(base, **changes)


def codes(provider: IdentityProvider, **kwargs: Any) -> set[str]:
    """The codes of the findings beyond the baseline."""
    report = check_connection(provider, sp=SP, now=NOW, **kwargs)
    return report.codes() - BASELINE


def finding(provider: IdentityProvider, code: str, **kwargs: Any) -> str:
    """The message and suggestion of the one finding with ``code``."""
    report = check_connection(provider, sp=SP, now=NOW, **kwargs)
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, report.render()
    return f"{found[0].severity}: {found[0].message} {found[0].suggestion}"


def test_a_sound_configuration_has_only_information() -> None:
    """Nothing to fix: the algorithms rule and the attribute note, both information."""
    report = check_connection(idp(), sp=SP, now=NOW)
    assert report.codes() == BASELINE
    assert report.ok
    assert not report.warnings
    assert "SHA-1" in finding(idp(), "algorithms.enforced")
    assert "strict mode" in finding(idp(), "algorithms.enforced")


@pytest.mark.parametrize(
    ("document", "certificate"),
    [("okta", make_certificate(cn="okta")[1]), ("entra", make_certificate(cn="entra")[1])],
)
def test_real_world_metadata_passes(document: str, certificate: str) -> None:
    """Okta's and Entra's metadata, read and checked, give no warning and no error."""
    xml = okta_metadata(certificate) if document == "okta" else entra_metadata([certificate])
    provider, report = read_metadata(xml, now=NOW)
    assert provider is not None
    report = report.plus(check_connection(provider, sp=SP, now=NOW).findings)
    assert not report.errors
    assert not report.warnings, report.render()


# --- identity -----------------------------------------------------------------------------------


def test_entity_id_missing_is_an_error() -> None:
    """No issuer to check responses against."""
    assert codes(idp(entity_id="  ")) == {"entity.missing"}
    assert finding(idp(entity_id=""), "entity.missing").startswith("error:")


@pytest.mark.parametrize("entity_id", ["Okta SAML app", "idp", "urn:", "https://"])
def test_entity_id_not_absolute_is_a_warning(entity_id: str) -> None:
    """A display name or a fragment instead of a URI."""
    assert codes(idp(entity_id=entity_id)) == {"entity.not_absolute"}


@pytest.mark.parametrize(
    "entity_id",
    [
        "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        "http://www.okta.com/exk1abcd2EFGH3ijk4l5",
        "urn:amazon:webservices",
        "urn:dev-123.us.auth0.com",
    ],
)
def test_real_entity_ids_pass(entity_id: str) -> None:
    """URLs and URNs as real IdPs use them."""
    assert codes(idp(entity_id=entity_id)) == set()


def test_entity_id_too_long_is_a_warning() -> None:
    """SAML caps an entityID at 1024 characters."""
    assert codes(idp(entity_id="https://idp.test/" + "a" * 1100)) == {"entity.too_long"}


@pytest.mark.parametrize(
    "entity_id",
    [
        "http://www.okta.com/${org.externalKey}",
        "https://example.com/saml",
        "https://idp.example.org/metadata",
        "https://{{tenant}}.idp.test/",
        "https://idp.test/your-org/saml",
        "https://sts.windows.net/{tenantid}/",
    ],
)
def test_placeholder_entity_id_is_a_warning(entity_id: str) -> None:
    """Template markers and documentation hosts."""
    assert codes(idp(entity_id=entity_id)) == {"entity.placeholder"}
    assert finding(idp(entity_id=entity_id), "entity.placeholder").startswith("warning:")


def test_entra_common_metadata_is_told_apart() -> None:
    """Entra's multi-tenant metadata has a template issuer: the admin is sent to the app's own."""
    text = finding(idp(entity_id="https://sts.windows.net/{tenantid}/"), "entity.placeholder")
    assert "multi-tenant (common) metadata" in text
    assert "App Federation Metadata Url" in text
    other = finding(idp(entity_id="https://{tenant}.idp.test/"), "entity.placeholder")
    assert "multi-tenant" not in other


def test_changed_entity_id_is_a_warning() -> None:
    """A different issuer from the active one is pointed out, naming both."""
    text = finding(idp(entity_id="https://other.test/saml"), "entity.changed", active=idp())
    assert "'https://idp.test/saml'" in text
    assert "'https://other.test/saml'" in text
    assert codes(idp(), active=idp()) == set()


def test_the_apps_own_values_in_the_idp_fields_are_errors() -> None:
    """The two sides mixed up: our entity ID as the issuer, our ACS URL as the SSO URL."""
    swapped = idp(entity_id=SP.entity_id, sso_url=SP.acs_url)
    assert codes(swapped) == {"entity.is_ours", "sso.is_ours"}
    assert "this app's own SP entity ID" in finding(swapped, "entity.is_ours")


# --- SSO endpoint -------------------------------------------------------------------------------


def test_sso_url_missing_is_an_error() -> None:
    """Nowhere to send members."""
    assert codes(idp(sso_url="")) == {"sso.missing"}


@pytest.mark.parametrize(
    "url", ["idp.test/sso", "ftp://idp.test/sso", "https:///sso", "https://idp.test:x/"]
)
def test_sso_url_not_a_url_is_an_error(url: str) -> None:
    """Not an absolute http(s) URL."""
    assert codes(idp(sso_url=url)) == {"sso.invalid"}


def test_sso_url_over_http_is_an_error() -> None:
    """Plain http sends sign-ins unencrypted."""
    assert codes(idp(sso_url="http://idp.test/sso")) == {"sso.not_https"}
    assert codes(idp(sso_url="http://idp.test/sso"), dev_hosts=frozenset({"other"})) == {
        "sso.not_https"
    }


def test_sso_url_over_http_on_a_dev_host_is_a_warning() -> None:
    """Allowed on a development host, and said to be for development."""
    provider = idp(sso_url="http://LOCALHOST:8080/sso")
    assert codes(provider, dev_hosts=frozenset({"localhost"})) == {"sso.dev_http"}
    assert "development" in finding(provider, "sso.dev_http", dev_hosts=frozenset({"localhost"}))


def test_placeholder_sso_url_is_a_warning() -> None:
    """An SSO URL copied from an example."""
    assert codes(idp(sso_url="https://example.com/sso")) == {"sso.placeholder"}


# --- certificates ------------------------------------------------------------------------------


def test_no_certificate_is_an_error() -> None:
    """Nothing to verify responses with."""
    assert codes(idp(certificates=())) == {"cert.missing"}


def test_unreadable_certificate_is_an_error() -> None:
    """Garbage instead of a certificate, alone or beside a good one, is named by position."""
    garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    assert codes(idp(certificates=(garbage,))) == {"cert.unreadable"}
    report = check_connection(idp(certificates=(GOOD, garbage)), sp=SP, now=NOW)
    assert [f.where for f in report.errors] == ["signing certificate 2"]


def test_expired_certificate_is_an_error() -> None:
    """Named by its CN, with the day it expired."""
    expired = expired_certificate(cn="okta")[1]
    text = finding(idp(certificates=(expired,)), "cert.expired")
    assert text.startswith("error: The signing certificate 'CN=okta' expired on 2026-05-31.")
    assert "Sign On tab" in text


def test_expired_certificate_beside_a_valid_one_is_a_warning_it_will_be_ignored() -> None:
    """A rollover the IdP has not cleaned up: saving is not blocked; the valid one is named."""
    expired = expired_certificate(cn="old")[1]
    provider = idp(certificates=(expired, GOOD))
    report = check_connection(provider, sp=SP, now=NOW)
    assert report.ok, report.render()
    assert codes(provider) == {"cert.expired_ignored", "cert.rollover"}
    text = finding(provider, "cert.expired_ignored")
    assert text.startswith(
        "warning: The signing certificate 'CN=old' expired on 2026-05-31 and will be ignored; "
        "the IdP signs with 'CN=idp.test' (valid until 2027-06-01)."
    )
    assert "has not expired is accepted" in finding(provider, "cert.rollover")
    # The order in the metadata does not matter.
    assert codes(idp(certificates=(GOOD, expired))) == {"cert.expired_ignored", "cert.rollover"}


def test_every_certificate_expired_is_still_an_error() -> None:
    """Nothing left to verify a response with: each expired certificate blocks."""
    old = expired_certificate(cn="old")[1]
    older = make_certificate(
        cn="older", not_before=NOW - timedelta(days=900), not_after=NOW - timedelta(days=400)
    )[1]
    report = check_connection(idp(certificates=(older, old)), sp=SP, now=NOW)
    assert [f.code for f in report.errors] == ["cert.expired", "cert.expired"]
    assert "cert.expired_ignored" not in report.codes()


@pytest.mark.parametrize(
    "unusable",
    [
        pytest.param(make_certificate(cn="weak", key_size=1024)[1], id="weak-key"),
        pytest.param(
            make_certificate(cn="future", not_before=NOW + timedelta(days=2))[1], id="not-yet-valid"
        ),
        pytest.param(
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            id="unreadable",
        ),
    ],
)
def test_an_expired_certificate_is_not_excused_by_one_that_cannot_sign(unusable: str) -> None:
    """Only a certificate the IdP can sign with today turns the expired one into a warning."""
    report = check_connection(
        idp(certificates=(expired_certificate(cn="old")[1], unusable)), sp=SP, now=NOW
    )
    assert "cert.expired" in {f.code for f in report.errors}
    assert "cert.expired_ignored" not in report.codes()


def test_certificate_expiring_within_30_days_is_a_warning_with_days_left() -> None:
    """Ten days left are shown as ten days."""
    soon = expiring_certificate(cn="okta", days=10)[1]
    text = finding(idp(certificates=(soon,)), "cert.expiring")
    assert text.startswith("warning: The signing certificate 'CN=okta' expires in 10 days,")
    assert "next certificate" in text
    assert codes(idp(certificates=(expiring_certificate(days=31)[1],))) == set()


def test_expiring_certificate_with_a_successor_says_so() -> None:
    """During a rollover, the warning names the certificate that takes over."""
    soon = expiring_certificate(cn="old", days=5)[1]
    text = finding(idp(certificates=(soon, GOOD)), "cert.expiring")
    assert "'CN=idp.test'" in text


def test_certificate_not_yet_valid_is_a_warning() -> None:
    """A certificate from the future."""
    future = make_certificate(not_before=NOW + timedelta(days=2))[1]
    assert codes(idp(certificates=(future,))) == {"cert.not_yet_valid"}


@pytest.mark.parametrize(
    ("weak", "words"),
    [
        (make_certificate(key_size=1024)[1], "has a 1024-bit RSA key"),
        (DSA_CERTIFICATE, "has a DSA key, which pbidentity does not accept"),
    ],
    ids=["rsa-1024", "dsa"],
)
def test_weak_keys_are_errors(weak: str, words: str) -> None:
    """RSA under 2048 bits and DSA of any size, named without touching cryptography's DSA."""
    assert codes(idp(certificates=(weak,))) == {"cert.weak_key"}
    assert words in finding(idp(certificates=(weak,)), "cert.weak_key")


@pytest.mark.parametrize("key_type", ["ec", "ed25519"])
def test_ec_and_ed25519_keys_are_accepted(key_type: KeyType) -> None:
    """An EC P-256 or Ed25519 signing certificate is fine."""
    assert codes(idp(certificates=(make_certificate(key_type=key_type)[1],))) == set()


def test_several_certificates_are_a_rollover_with_each_expiry() -> None:
    """Information, listing each certificate and its end."""
    second = make_certificate(cn="next", not_after=NOW + timedelta(days=700))[1]
    provider = idp(certificates=(GOOD, second))
    assert codes(provider) == {"cert.rollover"}
    text = finding(provider, "cert.rollover")
    assert text.startswith("info:")
    assert "'CN=idp.test' valid until 2027-06-01" in text
    assert "'CN=next' valid until 2028-05-01" in text


def test_changed_certificate_is_a_warning() -> None:
    """No certificate in common with the active configuration; a shared one is no change."""
    other = make_certificate(cn="new", serial=42)[1]
    text = finding(idp(certificates=(other,)), "cert.changed", active=idp())
    assert "'CN=idp.test'" in text
    rollover = idp(certificates=(other, GOOD))
    assert "cert.changed" not in codes(rollover, active=idp())


def test_same_idp_active_for_another_tenant_is_a_warning_naming_none() -> None:
    """The caller found the same entity and certificate active elsewhere; which one stays unsaid."""
    text = finding(idp(), "cert.shared", shared_elsewhere=True)
    assert "another workspace" in text
    assert text.startswith("warning:")


# --- NameID ----------------------------------------------------------------------------------


def test_email_nameid_not_listed_is_a_warning() -> None:
    """The IdP lists formats, none of them emailAddress."""
    provider = idp(nameid_formats=(UNSPECIFIED, PERSISTENT))
    assert codes(provider) == {"nameid.not_listed"}
    assert "unspecified, persistent" in finding(provider, "nameid.not_listed")


def test_no_listed_formats_say_nothing() -> None:
    """Many IdPs list no NameID format: nothing to conclude."""
    assert codes(idp(nameid_formats=())) == set()


def test_transient_only_is_an_error() -> None:
    """A NameID that changes at every sign-in cannot identify a member."""
    assert codes(idp(nameid_formats=(TRANSIENT,))) == {"nameid.transient"}
    assert codes(idp(nameid_formats=(TRANSIENT, EMAIL_NAMEID))) == set()


# --- attributes (details in test_attributes) ------------------------------------------------


def test_advertised_attributes_are_checked() -> None:
    """Listed attributes replace the "checked at sign-in" note with real checks."""
    provider = idp(attributes=("mail", "givenName", "sn"))
    report = check_connection(provider, sp=SP, now=NOW)
    assert "attributes.not_listed" not in report.codes()
    assert {"attributes.alias"} <= report.codes()
    mapped = check_connection(
        provider, sp=SP, now=NOW, attribute_mapping={"firstName": "givenName", "lastName": "sn"}
    )
    assert mapped.codes() == {"algorithms.enforced"}


def test_no_email_anywhere_is_an_error() -> None:
    """Attributes listed without an email, and a NameID format that is no email."""
    provider = idp(attributes=("firstName", "lastName"), nameid_formats=(PERSISTENT,))
    assert "attributes.no_email" in codes(provider)
    email_nameid = idp(attributes=("firstName", "lastName"))
    assert codes(email_nameid) == {"attributes.email_from_nameid"}


# --- the SP side ----------------------------------------------------------------------------


def sp_codes(**changes: Any) -> set[str]:
    """The codes for the SP with ``changes``, for the tenant acme, localhost a dev host."""
    provider = attrs.evolve(SP, **changes)
    report = check_service_provider(
        provider, tenant_slug="acme", dev_hosts=frozenset({"localhost"})
    )
    return report.codes()


def test_sound_service_provider_passes() -> None:
    """Tenant in the path or in the host: both fine."""
    assert sp_codes() == set()
    assert (
        sp_codes(entity_id="https://acme.app.test/saml", acs_url="https://acme.app.test/acs")
        == set()
    )


@pytest.mark.parametrize("field", ["entity_id", "acs_url"])
@pytest.mark.parametrize("value", ["/saml/acme/acs", "acme", "urn:app:acme", ""])
def test_sp_urls_must_be_absolute(field: str, value: str) -> None:
    """A relative path (a misconfigured base URL) or a URN cannot be pasted into the IdP."""
    assert sp_codes(**{field: value}) == {"sp.not_absolute"}


def test_sp_urls_must_be_https() -> None:
    """Plain http is an error, but only a warning on a development host."""
    assert sp_codes(acs_url="http://app.test/saml/acme/acs") == {"sp.not_https"}
    assert sp_codes(entity_id="http://localhost:8000/saml/acme") == {"sp.dev_http"}


@pytest.mark.parametrize(
    "value", ["https://app.test/saml/acs", "https://app.test/saml/acme-corp/acs"]
)
def test_sp_urls_must_name_the_tenant(value: str) -> None:
    """The slug must be a whole path segment or host label, not just a substring."""
    assert sp_codes(acs_url=value) == {"sp.not_tenant_specific"}


def test_sp_tenant_check_skipped_without_a_tenant() -> None:
    """No tenant known (the command line without --tenant): only the URL checks."""
    provider = attrs.evolve(SP, acs_url="https://app.test/saml/acs")
    assert check_service_provider(provider, tenant_slug=None).codes() == set()
