"""Schema migrations: what a new database gets, what an old one becomes, and what is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from pbidentity.cli import main
from pbidentity.exceptions import SchemaVersionError
from pbidentity.query import Query
from pbidentity.storage import MemberSearch
from pbidentity.storage import open_storage
from pbidentity.storage.sql import _REVISIONS
from pbidentity.storage.sql import SCHEMA_REVISION
from pbidentity.storage.sql import SqlStorage
from pbidentity.storage.sql import metadata
from pbidentity.storage.sql import schema_revision
from pbidentity.storage.sql import upgrade_schema


def _config(connection: sqlalchemy.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "pbidentity.storage:migrations")
    config.attributes["connection"] = connection
    return config


def _drop_everything(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        saml = (
            "link_import_chunks",
            "link_imports",
            "scim_activity",
            "setup_links",
            "saml_outcomes",
            "saml_sp_keys",
            "saml_keys",
            "saml_assertions",
            "saml_requests",
            "saml_connections",
        )
        for table in saml:
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        for table in ("events", "tenant_counts", "memberships", "member_values", "members"):
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        for table in ("groups",):
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        for table in ("api_tokens", "tenants", "alembic_version", "schema_version"):
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


@pytest.fixture
def empty_url(database_url: str) -> Iterator[str]:
    """An empty database on each backend (the shared PostgreSQL one wiped before and after)."""
    _drop_everything(database_url)
    yield database_url
    _drop_everything(database_url)


def _foundation_database(url: str) -> None:
    """A database as the first release left it: revision 0001 and its schema_version row."""
    from alembic import command

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        command.upgrade(_config(connection), "0001")
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text("INSERT INTO schema_version (version) VALUES (1)"))
        connection.execute(
            text(
                "INSERT INTO tenants (id, slug, name, scim_enabled, created, version) "
                "VALUES ('t1', 'acme', 'Acme', true, '2026-11-01T00:00:00.000000+00:00', 1)"
            )
        )
        for member_id, external_id, role in (("m1", "00u1", "admin"), ("m2", None, None)):
            connection.execute(
                text(
                    "INSERT INTO members (tenant_id, id, document, scim_managed, version, "
                    "created, last_modified, values_digest, external_id, user_name, "
                    "user_name_folded, role, active) VALUES ('t1', :id, :doc, true, 1, "
                    "'2026-11-01T00:00:00.000000+00:00', '2026-11-01T00:00:00.000000+00:00', "
                    "'x', :ext, :un, :un, :role, true)"
                ),
                {
                    "id": member_id,
                    "doc": json.dumps(
                        {"userName": f"{member_id}@x.com", "active": True}
                        | ({"externalId": external_id} if external_id else {})
                        | {"emails": [{"value": f"{member_id.upper()}@Corp.example"}]}
                        | {"phoneNumbers": [{"value": "+1 555 0100"}]}
                    ),
                    "ext": external_id,
                    "un": f"{member_id}@x.com",
                    "role": role,
                },
            )
            for attribute, position, value in (
                ("emails", 0, f"{member_id.upper()}@Corp.example"),
                ("phoneNumbers", 0, "+1 555 0100"),
            ):
                connection.execute(
                    text(
                        "INSERT INTO member_values (tenant_id, member_id, attribute, position, "
                        "value, value_folded) VALUES ('t1', :id, :attribute, :position, "
                        ":value, :folded)"
                    ),
                    {
                        "id": member_id,
                        "attribute": attribute,
                        "position": position,
                        "value": value,
                        "folded": value.lower(),
                    },
                )
    engine.dispose()


def _revision_of(url: str) -> str | None:
    engine = sqlalchemy.create_engine(url)
    try:
        return schema_revision(engine)
    finally:
        engine.dispose()


def _schema_differences(url: str) -> list[object]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences: list[object] = compare_metadata(context, metadata)
    engine.dispose()
    return differences


def test_the_revisions_listed_in_code_are_the_migrations() -> None:
    """Opening a database never imports Alembic, so the code keeps its own list: it must agree."""
    script = ScriptDirectory.from_config(_config(None))  # type: ignore[arg-type]
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert tuple(revisions) == _REVISIONS
    assert script.get_current_head() == SCHEMA_REVISION


def test_a_new_database_equals_one_built_by_the_migrations(empty_url: str, tmp_path: Path) -> None:
    """The direct schema of a new database and the migrated one do not differ."""
    storage = open_storage(empty_url)
    with storage.transaction():
        pass
    storage.close()
    assert _revision_of(empty_url) == SCHEMA_REVISION
    assert _schema_differences(empty_url) == []
    _drop_everything(empty_url)
    engine = sqlalchemy.create_engine(empty_url)
    assert upgrade_schema(engine) == ("", SCHEMA_REVISION)
    engine.dispose()
    assert _schema_differences(empty_url) == []


def test_a_first_release_database_is_refused_then_upgraded_keeping_its_data(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Older: refused with the command to run; `db upgrade` migrates it and keeps every row."""
    _foundation_database(empty_url)
    storage = open_storage(empty_url)
    with (
        pytest.raises(SchemaVersionError, match="run: pbidentity db upgrade"),
        storage.transaction(),
    ):
        pass
    storage.close()
    assert main(["--database", empty_url, "db", "status"]) == 0
    assert "revision 0001" in capsys.readouterr().out
    assert main(["--database", empty_url, "db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"upgraded the database from schema revision 0001 to {SCHEMA_REVISION}"
    )
    assert _schema_differences(empty_url) == []
    storage = open_storage(empty_url)
    with storage.transaction() as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        assert tenant.settings == {}
        first = tx.get_member("t1", "m1")
        assert first is not None
        assert (first.external_id, first.role_attribute, first.role) == ("00u1", "admin", None)
        tx.add_events([])
        page = tx.query_members("t1", Query(count=1))
        assert page.total == 2
    storage.close()
    # Revision 0010 gave each email row its member's userName, and no other row.
    engine = sqlalchemy.create_engine(empty_url)
    with engine.connect() as connection:
        carried = connection.execute(
            text(
                "SELECT member_id, attribute, user_name_folded FROM member_values "
                "ORDER BY member_id, attribute"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in carried] == [
        ("m1", "emails", "m1@x.com"),
        ("m1", "phoneNumbers", None),
        ("m2", "emails", "m2@x.com"),
        ("m2", "phoneNumbers", None),
    ]
    assert main(["--database", empty_url, "db", "upgrade"]) == 0
    assert "already at schema revision" in capsys.readouterr().out


def test_serve_upgrades_a_sqlite_file_itself(tmp_path: Path) -> None:
    """The embedded default keeps working across versions: upgrade=True migrates on first use."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _foundation_database(url)
    storage = open_storage(url, upgrade=True)
    with storage.transaction() as tx:
        assert tx.find_tenant("acme") is not None
    storage.close()
    assert _revision_of(url) == SCHEMA_REVISION


def test_duplicate_external_ids_stop_the_upgrade_and_change_nothing(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An externalId on two members cannot become unique by itself: the admin decides."""
    _foundation_database(empty_url)
    engine = sqlalchemy.create_engine(empty_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE members SET external_id = '00u1'"))
    assert main(["--database", empty_url, "db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pbidentity: error: cannot upgrade")
    assert "'00u1' on 2 members" in err
    assert schema_revision(engine) == "0001"
    engine.dispose()


def test_a_newer_database_is_refused(empty_url: str) -> None:
    """A revision this pbidentity does not know was written by a newer one: refused, not touched."""
    storage = open_storage(empty_url)
    with storage.transaction():
        pass
    storage.close()
    engine = sqlalchemy.create_engine(empty_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    for upgrade in (False, True):
        newer = SqlStorage.from_url(empty_url, upgrade=upgrade)
        with pytest.raises(SchemaVersionError, match="0099, newer"), newer.transaction():
            pass
        newer.close()
    with pytest.raises(SchemaVersionError, match="newer"):
        upgrade_schema(engine)
    engine.dispose()


def test_a_foreign_database_is_refused(empty_url: str) -> None:
    """Tables pbidentity did not create, without a revision: refused with a clear message."""
    engine = sqlalchemy.create_engine(empty_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE members (id INTEGER)"))
    engine.dispose()
    storage = open_storage(empty_url)
    with (
        pytest.raises(SchemaVersionError, match="no pbidentity schema revision"),
        storage.transaction(),
    ):
        pass
    storage.close()


def test_revision_0010_carries_short_user_names_only(empty_url: str) -> None:
    """The upgrade to 0010 fills the email rows' userName, but none over 256 bytes."""
    from alembic import command

    long_name = "w" + "é" * 200 + "@x.com"  # 409 bytes
    engine = sqlalchemy.create_engine(empty_url)
    with engine.begin() as connection:
        command.upgrade(_config(connection), "0009")
        connection.execute(
            text(
                "INSERT INTO tenants (id, slug, name, scim_enabled, created, version) "
                "VALUES ('t1', 'acme', 'Acme', true, '2026-11-01T00:00:00.000000+00:00', 1)"
            )
        )
        for member_id, user_name in (("short", "ann@x.com"), ("long", long_name)):
            connection.execute(
                text(
                    "INSERT INTO members (tenant_id, id, document, scim_managed, version, "
                    "created, last_modified, values_digest, user_name, user_name_folded, "
                    "active) VALUES ('t1', :id, :doc, true, 1, "
                    "'2026-11-01T00:00:00.000000+00:00', '2026-11-01T00:00:00.000000+00:00', "
                    "'x', :un, :un, true)"
                ),
                {
                    "id": member_id,
                    "un": user_name,
                    "doc": json.dumps({"userName": user_name, "emails": [{"value": "a@y.com"}]}),
                },
            )
            connection.execute(
                text(
                    "INSERT INTO member_values (tenant_id, member_id, attribute, position, "
                    "value, value_folded) VALUES ('t1', :id, 'emails', 0, 'a@y.com', 'a@y.com')"
                ),
                {"id": member_id},
            )
    engine.dispose()
    engine = sqlalchemy.create_engine(empty_url)
    assert upgrade_schema(engine) == ("0009", SCHEMA_REVISION)
    with engine.connect() as connection:
        carried = connection.execute(
            text("SELECT member_id, user_name_folded FROM member_values ORDER BY member_id")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in carried] == [("long", None), ("short", "ann@x.com")]
    assert _schema_differences(empty_url) == []
    storage = open_storage(empty_url)
    with storage.transaction(write=False) as tx:
        found = tx.search_members("t1", MemberSearch(prefix="a@y"))
    storage.close()
    assert sorted(m.user_name for m in found) == ["ann@x.com", long_name]
