"""The portal's link import clicked through in a real browser, in a Flask and a FastAPI host app.

The workspace used the app before SCIM: Grace is a member under a short
login, Alan was deactivated, and Jane is two members at once (her login and
an older account with her email). The IT admin opens a set-up link, goes from
the SCIM page to the link import, uploads Okta's users report, reads the plan
(three new hires, a link, a reactivation, a conflict), applies it in batches
(the page refreshes itself; a tab closed half-way resumes), reads the result
and downloads the conflicts. Screenshots go under ``$PBIDENTITY_SCREENSHOTS``
(default ``artifacts/browser``), ``import-<framework>/``.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pbidentity.link_imports import LinkImports
from tests.e2e.okta import picked_file
from tests.e2e.okta import users_report
from tests.e2e.portal_hosts import HOSTS
from tests.e2e.portal_hosts import SCREENSHOTS
from tests.e2e.test_browser import Screenshots
from tests.e2e.test_browser import _path
from tests.e2e.test_browser import browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser
    from playwright.sync_api import Response

__all__ = ["browser"]

OKTA_REPORT = users_report(
    [
        (f"{login}@demo.test", first, last, f"{login}@demo.test", status, okta_id)
        for login, first, last, status, okta_id in (
            ("grace.hopper", "Grace", "Hopper", "ACTIVE", "00u1grace"),
            ("alan.turing", "Alan", "Turing", "ACTIVE", "00u2alan"),
            ("jane.doe", "Jane", "Doe", "ACTIVE", "00u3jane"),
            ("ada.lovelace", "Ada", "Lovelace", "ACTIVE", "00u4ada"),
            ("edsger.dijkstra", "Edsger", "Dijkstra", "ACTIVE", "00u5edsger"),
            ("barbara.liskov", "Barbara", "Liskov", "STAGED", "00u6barbara"),
        )
    ]
)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(HOSTS))
def test_it_admin_links_the_existing_members_from_an_okta_export(
    kind: str, browser: Browser, tmp_path: Path
) -> None:
    """Upload, plan with a conflict, apply in batches (and resume), result, conflicts as CSV."""
    from playwright.sync_api import expect

    shot = Screenshots(SCREENSHOTS / f"import-{kind}")
    with HOSTS[kind](f"sqlite:///{tmp_path / 'host.db'}") as (app, portal):
        members = portal.identity.members
        grace = members.add("demo", "ghopper", email="grace.hopper@demo.test", given_name="Grace")
        alan = members.add("demo", "alan.turing@demo.test", given_name="Alan", active=False)
        members.add("demo", "jane.doe@demo.test", given_name="Jane")
        members.add("demo", "jdoe", email="jane.doe@demo.test", given_name="Jane")
        # One change a batch: five changes take five requests, as 100,000 take 200.
        portal.link_imports = LinkImports(members, chunk=1)
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        try:
            # -- 1. A set-up link for SCIM; the SCIM page leads to the link import.
            link = portal.links.issue("demo", created_by="owner", sections=["scim", "members"]).url(
                f"{app}/portal"
            )
            page.goto(link)
            page.click("#setup-continue")
            page.wait_for_url(f"{app}/portal/w/demo/scim")
            expect(page.locator("#link-import")).to_contain_text("People the app already has")
            page.click("#link-import-link")
            page.wait_for_url(f"{app}/portal/w/demo/scim/import")
            expect(page.locator("#export-help")).to_contain_text("200,000 identities")
            shot(page, "upload")

            # -- 2. A file that is no export: the error names what is wrong, nothing is kept.
            page.set_input_files("#export", files=[picked_file("notes.csv", b"Notes\nhello\n")])
            page.click("#upload")
            expect(page.locator("#import-error")).to_contain_text("no userName or email column")
            shot(page, "upload-error")

            # -- 3. Okta's report: the plan, conflicts first; nothing changed yet.
            page.set_input_files("#export", files=[picked_file("okta-users.csv", OKTA_REPORT)])
            page.click("#upload")
            page.wait_for_url(f"{app}/portal/w/demo/scim/import/*")
            here = page.url
            expect(page.locator("#plan")).to_have_attribute("data-state", "planned")
            for action, count in {
                "create": "3",
                "link": "1",
                "reactivate": "1",
                "unchanged": "0",
                "conflict": "1",
            }.items():
                expect(page.locator(f"#count-{action}")).to_have_text(count)
            conflict = page.locator("#plan-steps tr.step[data-action=conflict]")
            expect(conflict).to_contain_text("jane.doe@demo.test")
            expect(conflict).to_contain_text("merge or fix them in the app first")
            shot(page, "plan-conflicts")
            page.click("#list-changes")
            expect(page.locator("#plan-steps tr.step")).to_have_count(5)
            expect(page.locator("#plan-steps tr.step[data-action=link]")).to_contain_text(
                "by email"
            )
            shot(page, "plan-changes")
            assert members.get("demo", grace.id).user_name == "ghopper"

            # -- 4. Apply, from a tab closed as soon as the first batch is done: the form
            # is sent with this browser's cookie and token, its redirect never followed.
            csrf = page.locator("#apply").locator("xpath=..").locator("input[name=csrf]")
            pressed = page.request.post(
                f"{here}/apply", form={"csrf": csrf.input_value()}, max_redirects=0
            )
            assert pressed.status == 303
            page.goto(here)
            expect(page.locator("#progress")).to_have_attribute("data-state", "applying")
            expect(page.locator("#progress-text")).to_have_text("1 of 5 changes applied.")
            shot(page, "progress-resume")

            # -- 5. Continue: each refresh applies a batch and says how far it is.
            # Continue applies the second batch; each progress page applies one more and
            # refreshes itself, until the last one, which answers with the result.
            progress: list[int] = []

            def progress_of(response: Response) -> None:
                if response.url.endswith("/progress"):
                    progress.append(response.status)

            page.on("response", progress_of)
            page.click("#apply")
            expect(page.locator("#result")).to_have_attribute("data-state", "applied")
            assert _path(page) == here.removeprefix(app)
            assert progress == [200, 200, 303], progress
            for name, count in {
                "created": "3",
                "linked": "1",
                "reactivated": "1",
                "unchanged": "0",
                "skipped": "1",
            }.items():
                expect(page.locator(f"#result-{name}")).to_have_text(count)
            expect(page.locator("#skipped")).to_contain_text("jane.doe@demo.test")
            shot(page, "result")
            linked = members.get("demo", grace.id)
            assert (linked.user_name, linked.external_id) == ("grace.hopper@demo.test", "00u1grace")
            assert members.get("demo", alan.id).active

            # -- 6. The conflicts, as a CSV for the IdP admin.
            with page.expect_download() as download:
                page.click("#download-conflicts")
            assert download.value.suggested_filename.startswith("conflicts-demo-")
            rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text("utf-8-sig"))))
            assert rows[0] == ["identity", "externalId", "email", "reason", "candidates"]
            assert [row[0] for row in rows[1:]] == ["jane.doe@demo.test"]
            assert len(rows[1][4].split()) == 2

            # -- 7. The member the import linked, as the members page shows it.
            page.goto(f"{app}/portal/w/demo/members/{grace.id}")
            expect(page.locator(".facts .scim-managed")).to_have_text("SCIM-managed")
            shot(page, "member-linked")
            page.goto(f"{app}/portal/w/demo/scim/import")
            expect(page.locator("#imports tr.import").first).to_have_attribute(
                "data-state", "applied"
            )
            shot(page, "imports")
        except BaseException:
            with contextlib.suppress(Exception):
                shot(page, "failed")
            raise
        finally:
            for open_context in browser.contexts:
                open_context.close()
    print(f"import-{kind}: {len(shot.taken)} screenshots in {shot.directory}")
