"""The portal in Chromium: a large workspace's members, the certificate banner, set-up links.

The host apps of :mod:`tests.e2e.portal_hosts` (Flask and FastAPI),
this time with the host's own admin signed in (a header the browser sends
stands for the host app's session). The workspace holds tens of thousands
of members written straight through the storage, as years of provisioning
would leave them. The admin searches and filters them and pages on; opens
the SSO page whose IdP certificate expires in ten days, after a failed and
a successful test sign-in; issues a set-up link (shown once, copied),
watches it opened by the IT admin, and revokes it. Screenshots under
``$PBIDENTITY_SCREENSHOTS`` (default ``artifacts/browser``),
``portal-members-<framework>/``.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from pbidentity.domain import Member
from pbidentity.http import Request
from pbidentity.portal import Portal
from pbidentity.portal import PortalAccess
from pbidentity.saml import Authorized
from pbidentity.saml import SignInFailure
from tests.e2e.portal_hosts import HOSTS
from tests.e2e.portal_hosts import SCREENSHOTS
from tests.e2e.test_browser import Screenshots
from tests.e2e.test_browser import _text_of
from tests.e2e.test_browser import browser
from tests.saml.idp import CertificateSpec
from tests.saml.idp import TestIdp

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["browser"]

#: How many members the workspace holds.
MEMBERS = 30_000
GIVEN = ("Ada", "Alan", "Grace", "Katherine", "Edsger", "Barbara", "Donald", "Frances")
FAMILY = ("Lovelace", "Turing", "Hopper", "Johnson", "Dijkstra", "Liskov", "Knuth", "Allen")
ENTITY = "http://www.okta.com/exk-browser"


def _role(index: int) -> str:
    if index % 500 == 0:
        return "admin"
    return ("viewer", "maker", "contributor", "viewer")[index % 4]


def _email(index: int) -> str:
    given, family = GIVEN[index % len(GIVEN)], FAMILY[(index // 8) % len(FAMILY)]
    return f"{given}.{family}.{index:05d}@demo.test".lower()


def _seed(portal: Portal) -> None:
    """Tens of thousands of members, written through the storage in batches, varied."""
    identity = portal.identity
    tenant = identity.admin.get_tenant("demo")
    now = datetime.now(UTC)
    for first in range(0, MEMBERS, 5000):
        batch = []
        for i in range(first, first + 5000):
            given, family = GIVEN[i % len(GIVEN)], FAMILY[(i // 8) % len(FAMILY)]
            email = _email(i)
            batch.append(
                Member(
                    tenant_id=tenant.id,
                    id=f"seed-{i:05d}",
                    attributes={
                        "userName": email,
                        "active": i % 7 != 3,
                        "name": {"givenName": given, "familyName": family},
                        "displayName": f"{given} {family}",
                        "emails": [{"value": email, "primary": True}],
                    },
                    role=_role(i),
                    role_source="default",
                    role_rule=f"the default role {_role(i)}",
                    scim_managed=i % 5 != 0,
                    created=now,
                    last_modified=now,
                )
            )
        with identity.storage.transaction() as tx:
            tx.add_members(batch)


def _host_admin(request: Request) -> PortalAccess | None:
    """The host app's hook: its signed-in admin, whom the browser's header stands for."""
    if request.header("x-host-admin") != "demo":
        return None
    return PortalAccess(admin_id="owner-1", admin_name="Olivia Owner", workspace="demo")


def _certificate_expiring_in_ten_days(portal: Portal) -> None:
    """An IdP whose only certificate ends in ten days: one failed test sign-in, then one passed."""
    saml = portal.identity.saml
    ends = datetime.now(UTC) + timedelta(days=10, hours=1)
    idp = TestIdp(entity_id=ENTITY, certificates=[CertificateSpec(not_after=ends)])
    forger = TestIdp(entity_id=ENTITY, certificates=[CertificateSpec(key="forger")])
    for signer, outcome in ((forger, SignInFailure), (idp, Authorized)):
        saved = saml.save_metadata_xml("demo", idp.metadata_xml())
        assert saved.saved, saved.report.render()
        redirect = saml.begin_authorize("demo")
        request = TestIdp.read_authn_request(
            parse_qs(urlsplit(redirect.url).query)["SAMLRequest"][0]
        )
        response = signer.response(
            sp=saml.service_provider("demo"), name_id="it@demo.test", in_response_to=request.id
        )
        assert isinstance(saml.consume("demo", response), outcome)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(HOSTS))
def test_host_admin_searches_a_large_workspace_sees_the_banner_and_manages_links(
    kind: str, browser: Browser, tmp_path: Path
) -> None:
    """Search and filters over 30,000 members, the expiry banner, a link issued once and revoked."""
    from playwright.sync_api import expect

    shot = Screenshots(SCREENSHOTS / f"portal-members-{kind}")
    with HOSTS[kind](f"sqlite:///{tmp_path / 'host.db'}") as (app, portal):
        portal.authorize = _host_admin
        _seed(portal)
        _certificate_expiring_in_ten_days(portal)
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, extra_http_headers={"X-Host-Admin": "demo"}
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        try:
            # -- 1. The members list: the first 50 of 30,000, by userName.
            page.goto(f"{app}/portal/w/demo/members")
            rows = page.locator("#members tr.member")
            expect(rows).to_have_count(50)
            first = min(_email(i) for i in range(MEMBERS))
            expect(rows.first).to_have_attribute("data-user-name", first)
            expect(page.locator("#q-hint")).to_contain_text("starts with")
            shot(page, "members-large")

            # -- 2. A name's start with every filter, from the keyboard and the lists.
            page.get_by_label("Name or email starts with").fill("hop")
            page.get_by_label("Role").select_option("maker")
            page.get_by_label("Status").select_option("active")
            page.get_by_label("Managed by").select_option("no")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r"q=hop.*role=maker.*status=active.*managed=no"))
            expect(rows).to_have_count(50)
            for row in rows.all()[:10]:
                expect(row.locator(".role")).to_have_text("maker")
                expect(row.locator(".status")).to_have_text("Active")
                expect(row).to_contain_text("the app")
                expect(row.locator(".name")).to_contain_text("Hopper")
            first_page = [r.get_attribute("data-user-name") for r in rows.all()]
            shot(page, "members-filtered")
            page.click("#next-page")
            page.wait_for_url(re.compile(r"cursor="))
            assert "managed=no" in page.url
            second = [r.get_attribute("data-user-name") for r in rows.all()]
            assert second
            assert min(filter(None, second)) > max(filter(None, first_page))
            expect(page.get_by_label("Role")).to_have_value("maker")
            shot(page, "members-filtered-next")

            # -- 3. A search that matches nobody says so.
            page.get_by_label("Name or email starts with").fill("nobody.at.all")
            page.click("#search")
            expect(page.locator("#no-members")).to_have_text("No member matches.")

            # -- 4. The SSO page: the certificate banner, and the test sign-ins.
            page.get_by_role("link", name="Single sign-on (SAML)").click()
            banner = page.locator("#cert-banner")
            expect(banner).to_be_visible()
            expect(banner).to_contain_text("expires in 10 days")
            expect(banner).to_contain_text("add the IdP's next certificate")
            attempts = page.locator("#attempts tr.attempt")
            expect(attempts).to_have_count(2)
            expect(attempts.nth(0)).to_contain_text("Succeeded")
            expect(attempts.nth(1)).to_contain_text("Failed")
            expect(attempts.nth(1).locator(".suggestion")).to_contain_text("Fix:")
            shot(page, "sso-banner-and-history")

            # -- 5. A set-up link for the IT admin: issued, shown once, copied.
            page.get_by_role("link", name="Set-up links").click()
            expect(page.locator("#no-links")).to_be_visible()
            page.get_by_label("Provisioning (SCIM)").uncheck()
            page.get_by_label("Valid for").select_option("3d")
            page.click("#issue")
            url = _text_of(page, "#new-link-url").strip()
            assert url.startswith(f"{app}/portal/setup?token=")
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app)
            page.click("button.copy[data-copy-target='#new-link-url']")
            assert page.evaluate("navigator.clipboard.readText()") == url
            row = page.locator("#links tr.link")
            expect(row).to_have_count(1)
            expect(row.locator(".sections")).to_have_text("Single sign-on (SAML)")
            expect(row.locator(".created-by")).to_have_text("Olivia Owner")
            expect(row.locator(".state")).to_contain_text("Not opened yet")
            shot(page, "link-issued")
            page.get_by_role("link", name="Set-up links").click()
            expect(page.locator("#new-link")).to_have_count(0)
            assert url.split("token=")[1] not in page.content()

            # -- 6. The IT admin opens it (no host session); the list says so; revoked.
            holder = browser.new_context().new_page()
            holder.goto(url)
            holder.click("#setup-continue")
            holder.wait_for_url(f"{app}/portal/w/demo/sso")
            expect(holder.locator("#nav")).not_to_contain_text("Set-up links")
            page.reload()
            expect(row.locator(".state")).to_contain_text("Opened")
            page.get_by_role("button", name=re.compile("Revoke the link")).click()
            expect(page.locator("#links-notice")).to_contain_text("revoked")
            expect(row.locator(".state")).to_contain_text("Revoked")
            shot(page, "link-revoked")
            holder.reload()
            expect(holder.locator("#error")).to_be_visible()
            shot(holder, "link-session-ended")
        except BaseException:
            with contextlib.suppress(Exception):
                shot(page, "failed")
            raise
        finally:
            for open_context in browser.contexts:
                open_context.close()
    print(f"portal-members-{kind}: {len(shot.taken)} screenshots in {shot.directory}")
