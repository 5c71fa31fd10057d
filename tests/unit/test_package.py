"""The package's public surface and import-time behaviour."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import pbidentity


def test_import_pulls_no_framework_saml_or_driver() -> None:
    """`import pbidentity` imports no web framework, python3-saml, pydantic or database driver."""
    code = (
        "import sys, pbidentity\n"
        "banned = ('flask', 'fastapi', 'starlette', 'werkzeug', 'django', 'onelogin', 'xmlsec',"
        " 'lxml', 'psycopg', 'psycopg2', 'sqlalchemy', 'pydantic', 'scim2_models')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in banned)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists exactly the public names, sorted, and each exists."""
    assert list(pbidentity.__all__) == sorted(pbidentity.__all__)
    for name in pbidentity.__all__:
        assert hasattr(pbidentity, name), name
    public = {n for n in vars(pbidentity) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(pbidentity.__all__)


def test_every_exception_is_exported_from_the_package_and_its_module() -> None:
    """Each error pbidentity raises on purpose is importable from pbidentity and its exceptions."""
    import inspect

    import pbidentity.exceptions

    errors = {
        name
        for name, value in vars(pbidentity.exceptions).items()
        if inspect.isclass(value) and issubclass(value, pbidentity.exceptions.PbIdentityError)
    }
    assert {"LastAdminError", "PolicyChangedError"} <= errors
    assert errors == set(pbidentity.exceptions.__all__)
    for name in errors:
        assert getattr(pbidentity, name) is getattr(pbidentity.exceptions, name)
        assert name in pbidentity.__all__


def test_version_is_the_static_one() -> None:
    """The installed version is the one in pyproject.toml."""
    assert pbidentity.__version__ == "0.1.0"


#: What a reader of the docs, the examples or the benchmarks may import: never a private module.
_PRIVATE_IMPORT = re.compile(
    r"^\s*(?:from\s+pbidentity(?:\.\w+)*\._\w+|from\s+pbidentity(?:\.\w+)*\s+import\s+_\w+"
    r"|import\s+pbidentity(?:\.\w+)*\._\w+)",
    re.MULTILINE,
)


def test_docs_examples_and_benchmarks_import_only_public_modules() -> None:
    """bench/, docs/, examples/ and the README use pbidentity's public names only."""
    root = Path(__file__).resolve().parents[2]
    sources = [root / "README.md"]
    for folder in ("bench", "docs", "examples"):
        sources += [p for p in (root / folder).rglob("*") if p.suffix in (".py", ".md")]
    found = [
        f"{path.relative_to(root)}: {match.group(0).strip()}"
        for path in sources
        for match in _PRIVATE_IMPORT.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_saml_verification_is_public_and_loads_python3_saml_only_when_used() -> None:
    """pbidentity.saml.verify_response and its companions resolve; the import stays light."""
    import pbidentity.saml

    assert len(set(pbidentity.saml.__all__)) == len(pbidentity.saml.__all__)
    for name in ("Assertion", "SignInError", "settings_dict", "verify_response"):
        assert name in pbidentity.saml.__all__
        assert getattr(pbidentity.saml, name).__doc__, name
    with pytest.raises(AttributeError, match="no attribute 'verify'"):
        _ = pbidentity.saml.verify
    code = (
        "import sys, pbidentity.saml\n"
        "before = 'onelogin' in sys.modules\n"
        "from pbidentity.saml import verify_response\n"
        "print(before, 'onelogin' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True"]
