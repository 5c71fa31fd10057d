"""Provisioning activity in a real browser, to answer "why did Okta say the push failed?".

The host apps of :mod:`tests.e2e.portal_hosts` (Flask and FastAPI, the portal under
``/portal``, nobody signed in: a set-up link is the way in). The IT admin
switches SCIM on and creates a token; Okta pushes over HTTP and, as it does
when a person is assigned to the app twice or an attribute mapping is
wrong, one user is refused (409, the userName is taken) and one PATCH is
refused (400, a bad path). In Chromium, the admin opens Provisioning
activity, filters it to the failures and reads the detail Okta got, word for
word. Screenshots under ``$PBIDENTITY_SCREENSHOTS`` (default
``artifacts/browser``), ``portal-activity-<framework>/``.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.okta import ALAN
from tests.e2e.okta import okta_assigns_again
from tests.e2e.okta import okta_patches_a_bad_path
from tests.e2e.okta import provision_like_okta
from tests.e2e.portal_hosts import HOSTS
from tests.e2e.portal_hosts import SCREENSHOTS
from tests.e2e.test_browser import Screenshots
from tests.e2e.test_browser import _text_of
from tests.e2e.test_browser import browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["browser"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(HOSTS))
def test_it_admin_finds_why_okta_said_the_push_failed(
    kind: str, browser: Browser, tmp_path: Path
) -> None:
    """SCIM on, a token, Okta's push with two refusals; the failures and their details shown."""
    from playwright.sync_api import expect

    shot = Screenshots(SCREENSHOTS / f"portal-activity-{kind}")
    with HOSTS[kind](f"sqlite:///{tmp_path / 'host.db'}") as (app, portal):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        page = context.new_page()
        try:
            # -- 1. A set-up link for provisioning; before any push, the page says what to do.
            link = portal.links.issue("demo", created_by="owner", sections=["scim"]).url(
                f"{app}/portal"
            )
            page.goto(link)
            page.click("#setup-continue")
            page.wait_for_url(f"{app}/portal/w/demo/scim")
            page.click("#scim-toggle")
            expect(page.locator("#scim-state")).to_have_attribute("data-state", "on")
            page.get_by_label("Name of a new token").fill("okta")
            page.press("#token-name", "Enter")
            token = _text_of(page, "#new-token")
            page.get_by_role("link", name="Provisioning activity").click()
            page.wait_for_url(f"{app}/portal/w/demo/scim/activity")
            expect(page.locator("#no-requests")).to_contain_text("Test API Credentials")
            shot(page, "activity-empty")

            # -- 2. Okta pushes; two of its requests are refused.
            ids = provision_like_okta(f"{app}/scim/v2", token)
            taken = okta_assigns_again(f"{app}/scim/v2", token, ALAN)
            bad_path = okta_patches_a_bad_path(f"{app}/scim/v2", token, ids[ALAN.email])

            # -- 3. Every request, newest first; the failures stand out.
            page.reload()
            rows = page.locator("#requests tr.request")
            expect(rows.first).to_have_attribute("data-status", "400")
            assert rows.count() >= 12
            expect(page.locator("#requests tr.request.failed")).to_have_count(2)
            shot(page, "activity-all")

            # -- 4. Failures only, from the keyboard: the two, with what Okta was told.
            page.get_by_label("Failures only").check()
            page.get_by_role("button", name="Filter").press("Enter")
            page.wait_for_url(re.compile(r"/scim/activity\?failures=on"))
            expect(rows).to_have_count(2)
            patch_row, create_row = rows.nth(0), rows.nth(1)
            expect(patch_row).to_have_attribute("data-method", "PATCH")
            expect(patch_row.locator(".scim-type")).to_have_text("invalidPath")
            expect(patch_row.locator(".detail")).to_have_text(bad_path)
            expect(patch_row.locator(".path")).to_have_text(f"/Users/{ids[ALAN.email]}")
            expect(create_row).to_have_attribute("data-status", "409")
            expect(create_row.locator(".scim-type")).to_have_text("uniqueness")
            expect(create_row.locator(".detail")).to_have_text(taken)
            expect(create_row.locator(".token")).to_have_text("okta")
            assert token not in page.content()
            shot(page, "activity-failures")

            # -- 5. The SCIM page links here too.
            page.goto(f"{app}/portal/w/demo/scim")
            page.click("#activity-link")
            page.wait_for_url(f"{app}/portal/w/demo/scim/activity")
        except BaseException:
            with contextlib.suppress(Exception):
                shot(page, "failed")
            raise
        finally:
            for open_context in browser.contexts:
                open_context.close()
    print(f"portal-activity-{kind}: {len(shot.taken)} screenshots in {shot.directory}")
