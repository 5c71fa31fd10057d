"""The SCIM section's link import over HTTP: upload, plan, apply in batches, conflicts as CSV."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import httpx
import pytest

from pbidentity.link_imports import LinkImports
from pbidentity.portal import _imports
from tests.portal.conftest import World
from tests.portal.conftest import admin
from tests.portal.conftest import csrf_of

IMPORT = "/portal/w/acme/scim/import"
HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
# A file name keeps no folder: the slashes of HOSTILE would cut it.
HOSTILE_NAME = "<img src=x onerror=alert(2)>"

# Two members the app has; the export: one of them (by email), a new hire, and a
# person who is two members at once (a conflict).
EXPORT = (
    "Username,First name,Last name,Primary email,Status,Okta ID\r\n"
    "grace@acme.test,Grace,Hopper,grace@acme.test,ACTIVE,00u1\r\n"
    "new.hire@acme.test,New,Hire,new.hire@acme.test,ACTIVE,00u2\r\n"
    "jane@acme.test,Jane,Doe,jane.doe@acme.test,ACTIVE,00u3\r\n"
)


@pytest.fixture
def acme(world: World) -> World:
    """Acme's members before the import: Grace by a short login, Jane twice."""
    world.identity.members.add("acme", "ghopper", email="grace@acme.test")
    world.identity.members.add("acme", "jane@acme.test")
    world.identity.members.add("acme", "jd", email="jane.doe@acme.test")
    return world


def upload(
    browser: httpx.Client, data: bytes | str, name: str = "okta-users.csv", **headers: str
) -> httpx.Response:
    """The upload form, sent with the page's CSRF token."""
    page = browser.get(IMPORT, headers={**admin(), **headers})
    assert page.status_code == 200, page.text
    content = data.encode() if isinstance(data, str) else data
    return browser.post(
        IMPORT,
        data={"csrf": csrf_of(page)},
        files={"export": (name, content, "text/csv")},
        headers={**admin(), **headers},
    )


def import_id(answer: httpx.Response) -> str:
    """The import an upload answered with (its redirect)."""
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r".*/scim/import/([^/]+)", answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


def apply(browser: httpx.Client, iid: str) -> httpx.Response:
    """Press Apply on the plan page, then follow the progress until the result page."""
    page = browser.get(f"{IMPORT}/{iid}", headers=admin())
    answer = browser.post(f"{IMPORT}/{iid}/apply", data={"csrf": csrf_of(page)}, headers=admin())
    assert answer.status_code == 303, answer.text
    for _ in range(100):
        answer = browser.get(answer.headers["location"], headers=admin())
        if answer.status_code != 303:
            return answer
    raise AssertionError("the progress never ended")


def user_names(world: World) -> list[str]:
    """The userNames of acme's members, sorted."""
    return sorted(m.user_name for m in world.identity.members.all("acme"))


def test_the_scim_page_leads_to_the_import(acme: World) -> None:
    """The SCIM page links to the link import, which states its limits."""
    with acme.client() as browser:
        scim = browser.get("/portal/w/acme/scim", headers=admin())
        assert 'href="/portal/w/acme/scim/import"' in scim.text
        page = browser.get(IMPORT, headers=admin())
        assert page.status_code == 200
        assert "at most 32 MiB and 200,000 identities" in page.text
        assert 'aria-current="page">Provisioning (SCIM)' in page.text


def test_upload_shows_the_plan_and_changes_nothing(acme: World) -> None:
    """The plan page counts creates, links and conflicts, lists the conflicts first; no write."""
    before = user_names(acme)
    with acme.client() as browser:
        iid = import_id(upload(browser, EXPORT))
        page = browser.get(f"{IMPORT}/{iid}", headers=admin())
        changes = browser.get(f"{IMPORT}/{iid}", params={"list": "changes"}, headers=admin())
        listed = browser.get(IMPORT, headers=admin())
    assert page.status_code == 200
    counts = dict(re.findall(r'id="count-(\w+)">([\d,]+)<', page.text))
    assert counts == {
        "create": "1",
        "link": "1",
        "reactivate": "0",
        "unchanged": "0",
        "conflict": "1",
    }
    assert 'data-list="conflicts"' in page.text
    assert "merge or fix them in the app first" in page.text
    assert "Apply 2 changes" in page.text
    assert 'href="/portal/w/acme/scim/import/' + iid + '/conflicts.csv"' in page.text
    assert re.findall(r'class="step" data-action="(\w+)"', changes.text) == ["link", "create"]
    assert user_names(acme) == before
    assert "okta-users.csv" in listed.text
    assert "Planned, not applied" in listed.text


def test_apply_shows_the_result_and_the_conflicts_download(acme: World) -> None:
    """Apply creates and links; the result counts and names what was skipped; the CSV lists it."""
    with acme.client() as browser:
        iid = import_id(upload(browser, EXPORT))
        result = apply(browser, iid)
        assert result.status_code == 200
        got = dict(re.findall(r'id="result-(\w+)">([\d,]+)<', result.text))
        assert got == {
            "created": "1",
            "linked": "1",
            "reactivated": "0",
            "unchanged": "0",
            "skipped": "1",
        }
        assert 'id="skipped"' in result.text
        download = browser.get(f"{IMPORT}/{iid}/conflicts.csv", headers=admin())
    assert user_names(acme) == ["grace@acme.test", "jane@acme.test", "jd", "new.hire@acme.test"]
    grace = next(m for m in acme.identity.members.all("acme") if m.user_name == "grace@acme.test")
    assert (grace.scim_managed, grace.external_id) == (True, "00u1")
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert download.headers["content-disposition"] == (
        f'attachment; filename="conflicts-acme-{iid}.csv"'
    )
    assert download.headers["x-content-type-options"] == "nosniff"
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert rows[0] == ["identity", "externalId", "email", "reason", "candidates"]
    [(identity, external_id, email, reason, candidates)] = rows[1:]
    assert (identity, external_id, email) == ("jane@acme.test", "00u3", "jane.doe@acme.test")
    assert "merge or fix them" in reason
    assert len(candidates.split(" ")) == 2
    events = acme.identity.members.audit_trail("acme", limit=500)
    assert {e.actor for e in events if e.type in ("member.linked", "member.created")} >= {
        "portal:user-acme"
    }


def test_a_large_plan_applies_one_batch_per_request_with_progress(acme: World) -> None:
    """Each request applies one batch and says N of M; it refreshes itself; reloads are safe."""
    acme.portal.link_imports = LinkImports(acme.identity.members, chunk=2)
    export = "userName\n" + "".join(f"p{i}@acme.test\n" for i in range(5))
    with acme.client() as browser:
        iid = import_id(upload(browser, export))
        page = browser.get(f"{IMPORT}/{iid}", headers=admin())
        started = browser.post(
            f"{IMPORT}/{iid}/apply", data={"csrf": csrf_of(page)}, headers=admin()
        )
        assert started.headers["location"] == f"{IMPORT}/{iid}/progress"
        assert len(user_names(acme)) == 3 + 2
        progress = browser.get(started.headers["location"], headers=admin())
        assert progress.status_code == 200
        assert "<strong>4 of 5</strong> changes applied" in progress.text
        assert f'<meta http-equiv="refresh" content="0; url={IMPORT}/{iid}/progress">' in (
            progress.text
        )
        # A closed tab: the import's page offers to continue, and applies nothing by itself.
        resumed = browser.get(f"{IMPORT}/{iid}", headers=admin())
        assert "Continue applying" in resumed.text
        assert "http-equiv" not in resumed.text
        assert len(user_names(acme)) == 3 + 4
        head = browser.head(f"{IMPORT}/{iid}/progress", headers=admin())
        assert head.status_code == 200
        assert len(user_names(acme)) == 3 + 4
        done = browser.get(f"{IMPORT}/{iid}/progress", headers=admin())
        assert done.headers["location"] == f"{IMPORT}/{iid}"
        again = browser.get(f"{IMPORT}/{iid}/progress", headers=admin())
        assert again.headers["location"] == f"{IMPORT}/{iid}"
        result = browser.get(f"{IMPORT}/{iid}", headers=admin())
    assert 'id="result-created">5<' in result.text
    assert len(user_names(acme)) == 3 + 5


def test_two_tabs_applying_one_import_create_each_member_once(acme: World) -> None:
    """Two tabs press Apply and follow their progress: every member once, the counts exact."""
    acme.portal.link_imports = LinkImports(acme.identity.members, chunk=2)
    export = "userName\n" + "".join(f"p{i}@acme.test\n" for i in range(7))
    with acme.client() as browser:
        iid = import_id(upload(browser, export))
        page = browser.get(f"{IMPORT}/{iid}", headers=admin())
        csrf = csrf_of(page)
        tabs = [
            browser.post(f"{IMPORT}/{iid}/apply", data={"csrf": csrf}, headers=admin())
            for _ in range(2)
        ]
        for _ in range(10):
            for tab in tabs:
                browser.get(tab.headers["location"], headers=admin())
        result = browser.get(f"{IMPORT}/{iid}", headers=admin())
    assert 'id="result-created">7<' in result.text
    assert 'id="result-unchanged">0<' in result.text
    names = user_names(acme)
    assert len(names) == len(set(names)) == 3 + 7


def test_a_paged_plan_shows_a_bounded_page(acme: World) -> None:
    """A plan of 250 steps shows 100 a page, with a pager; a page past the end is a 400."""
    export = "userName\n" + "".join(f"p{i:03d}@acme.test\n" for i in range(250))
    with acme.client() as browser:
        iid = import_id(upload(browser, export))
        first = browser.get(f"{IMPORT}/{iid}", headers=admin())
        third = browser.get(
            f"{IMPORT}/{iid}", params={"list": "changes", "page": "3"}, headers=admin()
        )
        beyond = browser.get(f"{IMPORT}/{iid}", params={"page": "4"}, headers=admin())
        junk = browser.get(f"{IMPORT}/{iid}", params={"page": "x"}, headers=admin())
    assert first.text.count('class="step"') == 100
    assert "Page 1 of 3" in first.text
    assert third.text.count('class="step"') == 50
    assert "p249@acme.test" in third.text
    assert beyond.status_code == junk.status_code == 400


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("users.csv", "First name\nJane\n", "no userName or email column"),
        (
            "users.csv",
            "userName,Status\njane@acme.test,GONE\n",
            "users.csv: line 2: unknown status 'GONE'",
        ),
        (
            "users.json",
            '[{"userName": "a"}, 3]',
            "users.json: index 1: expected an object, not int",
        ),
        ("users.json", "[{", "users.json: not valid JSON"),
        (
            "users.json",
            '[{"userName": "a\\ud800"}]',
            "users.json: index 0: userName holds the surrogate",
        ),
        ("users.csv", b"userName\n\xff\xfe\n", "users.csv: not UTF-8 text (byte 9)"),
        ("users.csv", b"", "Choose the export file first"),
        (
            "C:\\fakepath\\users.csv",
            "userName\n" + "x" * 200_000,
            "users.csv: line 2: not a CSV row (field larger than field limit (131072))",
        ),
    ],
)
def test_a_bad_file_is_a_400_naming_the_line_and_the_problem(
    acme: World, name: str, data: bytes | str, message: str
) -> None:
    """A bad export is refused on the upload page with the error; no import is kept."""
    with acme.client() as browser:
        answer = upload(browser, data, name)
    assert answer.status_code == 400, answer.text
    assert message in html.unescape(answer.text)
    assert 'id="import-error"' in answer.text
    assert acme.portal.link_imports.recent("acme") == []


def test_the_limits_are_enforced(acme: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """One identity past the limit, or a body past the size limit, is refused with the limit."""
    monkeypatch.setattr(_imports, "MAX_IDENTITIES", 3)
    with acme.client() as browser:
        answer = upload(browser, "userName\na\nb\nc\nd\n")
        assert answer.status_code == 400
        assert "more than 3 identities" in answer.text
        monkeypatch.setattr(_imports, "MAX_UPLOAD_BYTES", 10)
        answer = upload(browser, "userName\na\nb\n")
        assert answer.status_code == 400
        assert "larger than 32 MiB" in answer.text
        page = browser.get(IMPORT, headers=admin())
        too_large = browser.post(
            IMPORT,
            data={"csrf": csrf_of(page)},
            files={"export": ("big.csv", b"x" * (acme.portal.max_body_bytes + 1), "text/csv")},
            headers=admin(),
        )
    assert too_large.status_code == 413
    assert "200,000 identities" in too_large.text
    assert acme.portal.link_imports.recent("acme") == []


def test_forms_without_this_browsers_csrf_token_change_nothing(acme: World) -> None:
    """Upload and apply without the token are 403s; the progress page never starts an import."""
    with acme.client() as browser:
        forged = browser.post(
            IMPORT, files={"export": ("x.csv", EXPORT.encode(), "text/csv")}, headers=admin()
        )
        assert forged.status_code == 403
        assert acme.portal.link_imports.recent("acme") == []
        iid = import_id(upload(browser, EXPORT))
        forged = browser.post(f"{IMPORT}/{iid}/apply", data={"csrf": "x"}, headers=admin())
        assert forged.status_code == 403
        progress = browser.get(f"{IMPORT}/{iid}/progress", headers=admin())
        assert progress.headers["location"] == f"{IMPORT}/{iid}"
    with acme.client() as other:
        # Another browser's page, this browser's cookie: refused.
        forged = other.post(f"{IMPORT}/{iid}/apply", data={"csrf": "x"}, headers=admin())
        assert forged.status_code == 403
    assert len(user_names(acme)) == 3
    assert acme.portal.link_imports.get("acme", iid).started is None


def test_another_workspaces_import_is_out_of_reach(acme: World) -> None:
    """Beta's admin gets 404 for acme's import, 403 for acme's pages; acme is unchanged."""
    with acme.client() as browser:
        iid = import_id(upload(browser, EXPORT))
    with acme.client() as beta:
        page = beta.get("/portal/w/beta/scim/import", headers=admin("beta"))
        csrf = csrf_of(page)
        for path in (
            IMPORT,
            f"{IMPORT}/{iid}",
            f"{IMPORT}/{iid}/progress",
            f"{IMPORT}/{iid}/conflicts.csv",
        ):
            refused = beta.get(path, headers=admin("beta"))
            assert refused.status_code == 403, path
            assert "grace@acme.test" not in refused.text
        refused = beta.post(f"{IMPORT}/{iid}/apply", data={"csrf": csrf}, headers=admin("beta"))
        assert refused.status_code == 403
        # Acme's import id through beta's own pages: not found, nothing shown or applied.
        for path in ("", "/progress", "/conflicts.csv"):
            missing = beta.get(f"/portal/w/beta/scim/import/{iid}{path}", headers=admin("beta"))
            assert missing.status_code == 404, path
            assert "jane" not in missing.text
        missing = beta.post(
            f"/portal/w/beta/scim/import/{iid}/apply", data={"csrf": csrf}, headers=admin("beta")
        )
        assert missing.status_code == 404
    assert len(user_names(acme)) == 3
    assert acme.portal.link_imports.get("acme", iid).started is None


def test_hostile_file_contents_are_text_on_the_pages_and_inert_in_the_csv(acme: World) -> None:
    """Names and file names from the export are escaped; formula-looking CSV cells get a quote."""
    # One externalId three times: three conflicts, each cell of them in the CSV.
    rows = [
        ["userName", "externalId", "First name", "email"],
        [f"x{HOSTILE}@acme.test", "+1", HOSTILE, "=cmd|' /C calc'!A0@acme.test"],
        ["=HYPERLINK(1)", "+1", "Eve", "-2@acme.test"],
        ["@SUM(A1)", "+1", "Eve", ""],
    ]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    with acme.client() as browser:
        iid = import_id(upload(browser, out.getvalue(), name=f"{HOSTILE_NAME}.csv"))
        pages = [
            browser.get(f"{IMPORT}/{iid}", headers=admin()),
            browser.get(f"{IMPORT}/{iid}", params={"list": "changes"}, headers=admin()),
            browser.get(IMPORT, headers=admin()),
        ]
        download = browser.get(f"{IMPORT}/{iid}/conflicts.csv", headers=admin())
    for page in pages:
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.text
        assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].text
    assert f"{HOSTILE_NAME}.csv" in html.unescape(pages[2].text)
    cells = [
        c for row in csv.reader(io.StringIO(download.content.decode("utf-8-sig"))) for c in row
    ]
    assert cells
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@")), cell
    assert "'=HYPERLINK(1)" in cells
    assert "'-2@acme.test" in cells
    assert "'+1" in cells
    assert "'@SUM(A1)" in cells


def test_an_expired_import_is_gone_with_a_sentence(acme: World) -> None:
    """A day after its upload the import is a 404 that says to upload again, and off the list."""
    with acme.client() as browser:
        iid = import_id(upload(browser, EXPORT))
        acme.clock.advance(timedelta(days=1))
        gone = browser.get(f"{IMPORT}/{iid}", headers=admin())
        listed = browser.get(IMPORT, headers=admin())
        page = browser.get(IMPORT, headers=admin())
        refused = browser.post(
            f"{IMPORT}/{iid}/apply", data={"csrf": csrf_of(page)}, headers=admin()
        )
    assert gone.status_code == 404
    assert "kept for 1 day" in gone.text
    assert "upload the file again" in gone.text
    assert 'id="no-imports"' in listed.text
    assert refused.status_code == 404
    assert len(user_names(acme)) == 3
