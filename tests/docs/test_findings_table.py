"""The findings table of ``docs/explanation/saml.md`` lists exactly the codes the SAML code uses.

The codes are read from the source, not from a list kept by hand: every call
that makes a finding (``Finding(code=..., severity=...)``, and the helpers
``_error``, ``error_finding``, ``_fail``, ``_finding`` and ``_check_method``)
is found in the syntax tree of ``pbidentity/saml/*.py``, with the severities
it gives. Any other ``word.word`` string in those modules must be a known
non-code (an event type, a logger name), so that a code made some new way
cannot slip past.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAML = ROOT / "src" / "pbidentity" / "saml"
PAGE = ROOT / "docs" / "explanation" / "saml.md"

_CODE = re.compile(r"[a-z]+\.[a-z_]+")
_ROW = re.compile(r"^\|\s*`(?P<code>[a-z]+\.[a-z_]+)`\s*\|\s*(?P<severity>[^|]+?)\s*\|")

#: ``word.word`` strings in the SAML modules that are not finding codes.
NOT_CODES = frozenset(
    {
        "pbidentity.saml",  # the logger
        "user.email",  # the Okta attribute statement value shown to the admin
        "member.signed_in",  # event types
        "saml.activated",
        "saml.activation_failed",
        "saml.discarded",
        "saml.options_changed",
        "saml.rolled_back",
        "saml.saved",
    }
)

#: The helpers that make an error finding from a code given as their first argument.
_ERROR_HELPERS = {"_error": 0, "error_finding": 0, "_fail": 0, "_check_method": 2}


def _strings(node: ast.AST) -> list[str]:
    return [
        n.value
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and _CODE.fullmatch(n.value)
    ]


def _called(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def codes_in_source() -> tuple[dict[str, set[str]], set[str]]:
    """Each finding code with the severities the code gives it; and every ``word.word`` string."""
    codes: dict[str, set[str]] = defaultdict(set)
    literals: set[str] = set()
    for path in sorted(SAML.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        literals.update(_strings(tree))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if name == "Finding":
                keywords = {k.arg: k.value for k in node.keywords}
                severities = _strings_any(keywords["severity"])
                for code in _strings(keywords["code"]):
                    codes[code].update(severities)
            elif name in _ERROR_HELPERS and len(node.args) > _ERROR_HELPERS[name]:
                for code in _strings(node.args[_ERROR_HELPERS[name]]):
                    codes[code].add("error")
            elif name == "_finding" and len(node.args) >= 2:
                for code in _strings(node.args[0]):
                    codes[code].update(_strings_any(node.args[1]))
    return dict(codes), literals


def _strings_any(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def codes_in_page() -> dict[str, set[str]]:
    """Each code of the page's tables with the severities its row names."""
    rows: dict[str, set[str]] = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        found = _ROW.match(line)
        if found is None:
            continue
        code = found["code"]
        assert code not in rows, f"{code} has two rows"
        rows[code] = {s.strip() for s in found["severity"].split(",")}
    return rows


def test_every_code_the_saml_code_uses_is_in_the_table_with_its_severities() -> None:
    """Codes and severities match both ways: no code missing, none documented that is gone."""
    source, _ = codes_in_source()
    page = codes_in_page()
    assert sorted(set(source) - set(page)) == [], "codes missing from the table"
    assert sorted(set(page) - set(source)) == [], "codes in the table the code no longer uses"
    wrong = {code: (page[code], source[code]) for code in source if page[code] != source[code]}
    assert wrong == {}, "severities differ (table, source)"


def test_no_code_is_made_some_other_way() -> None:
    """Every ``word.word`` string in the SAML modules is a code found above, or a known non-code."""
    source, literals = codes_in_source()
    assert sorted(literals - set(source) - NOT_CODES) == []
    assert sorted(NOT_CODES - literals) == [], "NOT_CODES lists strings the code no longer has"


def test_the_reader_finds_the_codes_the_collector_finds() -> None:
    """The collector sees codes given each way: keyword, helper, a choice between two."""
    source, _ = codes_in_source()
    assert source["cert.rollover"] == {"info"}  # Finding(code=..., severity=...)
    assert source["response.replay"] == {"error"}  # _error(...)
    assert source["response.transform"] == {"error"}  # _check_method(..., code, ...)
    assert source["metadata.schema"] == {"warning"}  # _finding(code, severity, ...)
    assert source["sp.dev_http"] == {"warning"}  # "sso.dev_http" if sso else "sp.dev_http"
    assert source["test.clock"] == {"warning", "error"}
