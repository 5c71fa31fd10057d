"""The SSO page's certificate banner and its history of test sign-ins, over HTTP."""

from __future__ import annotations

import re
from datetime import datetime
from datetime import timedelta
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from markupsafe import escape

from pbidentity.saml import Authorized
from pbidentity.saml import SignInFailure
from pbidentity.saml import SignInOutcome
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.saml.idp import CertificateSpec
from tests.saml.idp import TestIdp

ENTITY = "http://www.okta.com/exk1"


def _request_id(redirect_url: str) -> str:
    query = parse_qs(urlsplit(redirect_url).query)
    return TestIdp.read_authn_request(query["SAMLRequest"][0]).id


def _test_sign_in(world: World, idp: TestIdp, *, signer: TestIdp | None = None) -> SignInOutcome:
    """Save the IdP's metadata and come back from its test sign-in (signed by ``signer``)."""
    saml = world.identity.saml
    saved = saml.save_metadata_xml("acme", idp.metadata_xml())
    assert saved.saved, saved.report.render()
    redirect = saml.begin_authorize("acme")
    response = (signer or idp).response(
        sp=saml.service_provider("acme"),
        name_id="jane@acme.test",
        in_response_to=_request_id(redirect.url),
        now=world.clock.now,
    )
    return saml.consume("acme", response)


def _idp(*ends: datetime) -> TestIdp:
    return TestIdp(entity_id=ENTITY, certificates=[CertificateSpec(not_after=end) for end in ends])


def _banner(world: World, workspace: str = "acme") -> str | None:
    with world.client() as browser:
        page = browser.get(f"/portal/w/{workspace}/sso", headers=admin(workspace))
    assert page.status_code == 200, page.text
    found = re.search(r'<section id="cert-banner".*?</section>', page.text, re.S)
    return found.group(0) if found else None


def test_no_banner_while_the_certificate_has_long_to_run(world: World) -> None:
    """A certificate valid for years: no banner, before or after the configuration is active."""
    assert _banner(world) is None
    assert isinstance(_test_sign_in(world, _idp(world.clock.now + timedelta(days=400))), Authorized)
    assert _banner(world) is None
    world.clock.advance(timedelta(days=369))
    assert _banner(world) is None
    world.clock.advance(timedelta(days=1))  # 30 days left: now it is worth saying
    assert _banner(world) is not None


def test_an_expiring_then_expired_certificate_says_what_to_do_at_the_idp(world: World) -> None:
    """Within 30 days: a warning with the validator's advice; after its end: an alert."""
    end = world.clock.now + timedelta(days=10)
    assert isinstance(_test_sign_in(world, _idp(end)), Authorized)
    banner = _banner(world)
    assert banner is not None
    assert 'role="status"' in banner
    assert 'data-code="cert.expiring"' in banner
    assert "expires in 10 days, on 2026-12-17" in banner
    assert "add the IdP&#39;s next certificate" in banner
    world.clock.advance(timedelta(days=11))
    banner = _banner(world)
    assert banner is not None
    assert 'role="alert"' in banner
    assert "has expired" in banner
    assert 'data-code="cert.expired"' in banner
    assert "expired on 2026-12-17" in banner
    # Another workspace's page says nothing about acme's certificate.
    assert _banner(world, "beta") is None


def test_a_rollover_says_the_next_certificate_takes_over(world: World) -> None:
    """The metadata lists the next certificate: expiring, then expired but ignored, in its words."""
    now = world.clock.now
    idp = _idp(now + timedelta(days=5), now + timedelta(days=700))
    assert isinstance(_test_sign_in(world, idp), Authorized)
    banner = _banner(world)
    assert banner is not None
    assert 'data-code="cert.expiring"' in banner
    assert re.search(r"The IdP also lists .*? \(valid until 2028-11-06\)", banner)
    world.clock.advance(timedelta(days=6))
    banner = _banner(world)
    assert banner is not None
    assert 'data-code="cert.expired_ignored"' in banner
    assert 'data-code="cert.expired"' not in banner
    assert re.search(r"will be ignored; the IdP signs with .*? \(valid until 2028-11-06\)", banner)
    assert 'role="status"' in banner


def test_the_history_lists_test_sign_ins_newest_first_with_each_failure_and_its_fix(
    world: World,
) -> None:
    """Failures show their finding and fix, the success its IdP; the last 20, per workspace."""
    idp = _idp(world.clock.now + timedelta(days=400))
    # The same IdP's name, another key: the signature fails.
    forger = TestIdp(entity_id=ENTITY, certificates=[CertificateSpec(key="forger")])
    failures = []
    for _ in range(21):
        outcome = _test_sign_in(world, idp, signer=forger)
        assert isinstance(outcome, SignInFailure)
        failures.append(outcome)
        world.clock.advance(timedelta(minutes=1))
    outcome = failures[-1]
    code = outcome.report.errors[0].code
    assert isinstance(_test_sign_in(world, idp), Authorized)
    with world.client() as browser:
        page = browser.get("/portal/w/acme/sso", headers=admin())
        other = browser.get("/portal/w/beta/sso", headers=admin("beta"))
    rows = re.findall(r'<tr class="attempt (\w+)">(.*?)</tr>', page.text, re.S)
    assert len(rows) == 20
    assert [kind for kind, _ in rows] == ["succeeded"] + ["failed"] * 19
    assert "2026-12-07 12:21 UTC" in rows[0][1]
    assert ENTITY in rows[0][1]
    failure = rows[1][1]
    assert "2026-12-07 12:20 UTC" in failure
    assert f'<code class="code">{code}</code>' in failure
    first = outcome.report.errors[0]
    assert f'<span class="message">{escape(first.message)}</span>' in failure
    assert f'<span class="suggestion">Fix: {escape(first.suggestion)}</span>' in failure
    assert 'id="no-attempts"' in other.text
    assert 'class="attempt' not in other.text
