"""The Core table objects match what the migrations created, and every table is under
forced row-level security (the app role owns nothing)."""

from __future__ import annotations

import pytest

from intake.store.tables import metadata

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_tables_match_migrations(db_rows):
    rows = await db_rows(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'intake'"
    )
    in_db: dict[str, set[str]] = {}
    for r in rows:
        in_db.setdefault(r["table_name"], set()).add(r["column_name"])
    for table in metadata.tables.values():
        assert {c.name for c in table.columns} == in_db.get(table.name), table.name


async def test_every_table_forces_rls_and_is_not_owned_by_the_app(db_rows, intake_settings):
    rows = await db_rows(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, r.rolname AS owner"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_roles r ON r.oid = c.relowner"
        " WHERE n.nspname = 'intake' AND c.relkind = 'r' AND c.relname <> 'alembic_version'"
    )
    assert len(rows) >= 17
    for r in rows:
        assert r["relrowsecurity"] and r["relforcerowsecurity"], r["relname"]
        assert r["owner"] != intake_settings.app_db_user


async def test_the_hot_paths_indexes(db_rows):
    """The directory cache loads a project's units by project; the search index merges
    its pending list in small steps (no insert pays for a 4 MB merge)."""
    [units] = await db_rows(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'intake'"
        " AND indexname = 'units_by_project'"
    )
    assert "(project_id)" in units["indexdef"]
    [search] = await db_rows(
        "SELECT reloptions FROM pg_class WHERE oid = 'intake.complaints_search_trgm'::regclass"
    )
    assert "gin_pending_list_limit=256" in search["reloptions"]
