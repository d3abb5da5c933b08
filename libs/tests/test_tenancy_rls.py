"""Row-level security on the real PostgreSQL, through the app role that owns nothing."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.tenancy import TenantContext

T = "bus_test.notes"


@pytest.fixture
async def sessions(settings: Settings, bus_schema: str):
    engine = create_engine(settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
    yield session_factory(engine)
    await engine.dispose()


async def _seed(sessions, tenant, project, body="a note") -> str:
    note = uuid4()
    async with tenant_transaction(sessions, TenantContext.for_tenant(tenant)) as s:
        await s.execute(
            text(f"INSERT INTO {T} (id, tenant_id, project_id, body) VALUES (:i, :t, :p, :b)"),
            {"i": note, "t": tenant, "p": project, "b": body},
        )
    return str(note)


async def _count(sessions, ctx) -> int:
    async with tenant_transaction(sessions, ctx) as s:
        return (await s.execute(text(f"SELECT count(*) FROM {T}"))).scalar_one()


async def test_no_context_sees_no_rows(sessions):
    await _seed(sessions, uuid4(), uuid4())
    async with sessions() as s, s.begin():
        assert (await s.execute(text(f"SELECT count(*) FROM {T}"))).scalar_one() == 0


async def test_no_context_cannot_insert(sessions):
    with pytest.raises(DBAPIError, match="row-level security"):
        async with sessions() as s, s.begin():
            await s.execute(
                text(f"INSERT INTO {T} (id, tenant_id, body) VALUES (:i, :t, 'x')"),
                {"i": uuid4(), "t": uuid4()},
            )


async def test_tenant_b_never_sees_reads_updates_or_deletes_tenant_a(sessions):
    a, b = uuid4(), uuid4()
    note = await _seed(sessions, a, uuid4(), "A's secret")
    ctx_b = TenantContext.for_tenant(b)
    assert await _count(sessions, ctx_b) == 0
    async with tenant_transaction(sessions, ctx_b) as s:
        upd = await s.execute(text(f"UPDATE {T} SET body = 'pwned' WHERE id = :i"), {"i": note})
        dele = await s.execute(text(f"DELETE FROM {T} WHERE id = :i"), {"i": note})
        assert upd.rowcount == 0
        assert dele.rowcount == 0
    async with tenant_transaction(sessions, TenantContext.for_tenant(a)) as s:
        body = (await s.execute(text(f"SELECT body FROM {T} WHERE id = :i"), {"i": note})).scalar()
    assert body == "A's secret"


async def test_tenant_cannot_write_rows_for_another_tenant(sessions):
    with pytest.raises(DBAPIError, match="row-level security"):
        async with tenant_transaction(sessions, TenantContext.for_tenant(uuid4())) as s:
            await s.execute(
                text(f"INSERT INTO {T} (id, tenant_id, body) VALUES (:i, :t, 'x')"),
                {"i": uuid4(), "t": uuid4()},
            )


async def test_project_scope_limits_rows_inside_a_tenant(sessions):
    tenant, p1, p2 = uuid4(), uuid4(), uuid4()
    await _seed(sessions, tenant, p1)
    await _seed(sessions, tenant, p2)
    await _seed(sessions, tenant, None)  # tenant-wide row
    assert await _count(sessions, TenantContext.for_tenant(tenant)) == 3
    assert await _count(sessions, TenantContext.for_tenant(tenant, {p1})) == 2
    assert await _count(sessions, TenantContext.for_tenant(tenant, {p1, p2})) == 3
    assert await _count(sessions, TenantContext.for_tenant(tenant, set())) == 1


async def test_context_does_not_outlive_its_transaction_on_a_pooled_connection(sessions):
    tenant = uuid4()
    await _seed(sessions, tenant, None)
    assert await _count(sessions, TenantContext.for_tenant(tenant)) == 1
    # Pool of one: the next transaction runs on the very same connection.
    async with sessions() as s, s.begin():
        leftover = (await s.execute(text("SELECT current_setting('app.tenant_id', true)"))).scalar()
        seen = (await s.execute(text(f"SELECT count(*) FROM {T}"))).scalar_one()
    assert leftover in (None, "")
    assert seen == 0


async def test_app_role_owns_nothing_and_cannot_bypass_rls(settings: Settings, bus_schema):
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", settings.app_db_user
        )
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname = $1",
            settings.app_db_user,
        )
        forced = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = $1::regnamespace"
            " AND relkind = 'r' AND NOT (relrowsecurity AND relforcerowsecurity)",
            bus_schema,
        )
    finally:
        await conn.close()
    assert role["rolsuper"] is False and role["rolbypassrls"] is False
    assert owned == 0
    assert [r["relname"] for r in forced] == []
