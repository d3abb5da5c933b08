"""Every table of every service schema is under FORCE row-level security, and the role
the services connect as owns nothing: a guard that fails the day a migration forgets."""

from __future__ import annotations

import asyncpg

from propdesk.settings import SERVICE_NAMES, Settings, asyncpg_dsn

# Tables that hold no tenant data, each with the reason it may skip RLS.
NOT_TENANT_DATA = {
    "alembic_version": "migration bookkeeping",
    "platform_calendar_years": "the State Council's holiday schedule, the same for everyone",
}


async def test_every_service_table_forces_row_level_security(settings: Settings) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await conn.fetch(
            "SELECT n.nspname AS schema, c.relname AS name,"
            " c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,"
            " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1::text[])",
            list(SERVICE_NAMES),
        )
    finally:
        await conn.close()
    assert {r["schema"] for r in rows} == set(SERVICE_NAMES), "every service has migrated"
    unprotected = [
        f"{r['schema']}.{r['name']}"
        for r in rows
        if r["name"] not in NOT_TENANT_DATA
        and not (r["enabled"] and r["forced"] and r["policies"] > 0)
    ]
    assert unprotected == []


async def test_the_app_role_owns_nothing_and_bypasses_nothing(settings: Settings) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = $1",
            settings.app_db_user,
        )
        owned = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname = $1"
            " UNION ALL SELECT n.nspname FROM pg_namespace n JOIN pg_roles r"
            " ON r.oid = n.nspowner WHERE r.rolname = $1"
            " UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_roles r"
            " ON r.oid = p.proowner WHERE r.rolname = $1",
            settings.app_db_user,
        )
    finally:
        await conn.close()
    assert dict(role) == {
        "rolsuper": False,
        "rolbypassrls": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
    }
    assert [r[0] for r in owned] == []
