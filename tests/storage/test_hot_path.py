"""The hot path's compiled statements are found by what determines their SQL."""

from __future__ import annotations

import pytest
import sqlalchemy

from pbidentity.storage.sql import _execute
from pbidentity.storage.sql._statements import _GET_MEMBER


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache of this test's own, so that its statements do not linger in the process."""
    monkeypatch.setattr(_execute, "_FAST", {})


def dialect(url: str, **options: str) -> sqlalchemy.Dialect:
    """The dialect of an engine on ``url`` (nothing connects)."""
    return sqlalchemy.create_engine(url, **options).dialect


def test_the_same_statement_is_compiled_once_per_dialect_driver_and_parameter_style() -> None:
    """SQLite's qmark, its named style and PostgreSQL's psycopg each get their own SQL."""
    qmark = _execute._fast(_GET_MEMBER, dialect("sqlite://"))
    named = _execute._fast(_GET_MEMBER, dialect("sqlite://", paramstyle="named"))
    psycopg = _execute._fast(_GET_MEMBER, dialect("postgresql+psycopg://u@h/db"))
    assert "?" in qmark.sql
    assert ":b_tenant_id" in named.sql
    assert "%(b_tenant_id)s" in psycopg.sql
    assert _execute._fast(_GET_MEMBER, dialect("sqlite://")) is qmark
