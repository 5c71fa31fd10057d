"""The package's public surface and import-time behaviour."""

from __future__ import annotations

import subprocess
import sys

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


def test_version_is_the_static_one() -> None:
    """The installed version is the one in pyproject.toml."""
    assert pbidentity.__version__ == "0.1.0"
