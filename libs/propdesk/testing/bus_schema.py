"""Test support: a throwaway service schema (`bus_test`) for exercising the shared library on
PostgreSQL: bus tables plus two tenant tables under row-level security."""

from __future__ import annotations

import asyncpg

from propdesk.bus.tables import (
    bus_tables_sql,
    dead_letters_once_sql,
    inbox_pruning_sql,
    open_dead_letters_index_sql,
    outbox_bell_sql,
)
from propdesk.db.bootstrap import OWNER_ROLE, bootstrap
from propdesk.db.rls import enable_rls_sql
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.testing.admin_reads import admin_fetch

SCHEMA = "bus_test"


async def create_bus_test_schema(settings: Settings) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    finally:
        await conn.close()
    await bootstrap(settings, schemas=(SCHEMA,))
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        async with conn.transaction():
            await conn.execute(f'SET LOCAL ROLE "{OWNER_ROLE}"')
            # What every service's migrations have built by now.
            for stmt in [
                *bus_tables_sql(SCHEMA),
                *outbox_bell_sql(SCHEMA),
                *dead_letters_once_sql(SCHEMA),
                *inbox_pruning_sql(SCHEMA),
                *open_dead_letters_index_sql(SCHEMA),
            ]:
                await conn.execute(stmt)
            await conn.execute(
                f"""CREATE TABLE {SCHEMA}.notes (
                    id uuid PRIMARY KEY,
                    tenant_id uuid NOT NULL,
                    project_id uuid,
                    body text NOT NULL)"""
            )
            for stmt in enable_rls_sql(SCHEMA, "notes"):
                await conn.execute(stmt)
            # What a consumer applied, to count side effects exactly.
            await conn.execute(
                f"""CREATE TABLE {SCHEMA}.applied (
                    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    consumer text NOT NULL,
                    event_id uuid NOT NULL,
                    tenant_id uuid NOT NULL,
                    project_id uuid)"""
            )
            for stmt in enable_rls_sql(SCHEMA, "applied"):
                await conn.execute(stmt)
    finally:
        await conn.close()


async def count_applied(settings: Settings, consumer: str) -> dict[str, int]:
    """Side effects per event id, read as the admin (bypassing RLS, test-only)."""
    rows = await admin_fetch(
        settings,
        f"SELECT event_id::text AS e, count(*) AS n FROM {SCHEMA}.applied"
        " WHERE consumer = $1 GROUP BY 1",
        consumer,
    )
    return {r["e"]: r["n"] for r in rows}


async def applied_tenants(settings: Settings, consumer: str) -> dict[str, str]:
    """The tenant each event was applied under, by event id, read as the admin."""
    rows = await admin_fetch(
        settings,
        f"SELECT event_id::text AS e, tenant_id::text AS t FROM {SCHEMA}.applied"
        " WHERE consumer = $1",
        consumer,
    )
    return {r["e"]: r["t"] for r in rows}


def note_event(tenant_id, project_id, body: str = "hello"):
    """An envelope of a test-only event type (`bustest.noted`), outside the contracts."""
    from datetime import UTC, datetime
    from uuid import uuid4

    from propdesk.events.envelope import Envelope

    note_id = uuid4()
    return Envelope(
        type="bustest.noted",
        schema_version=1,
        tenant_id=tenant_id,
        project_id=project_id,
        aggregate_type="note",
        aggregate_id=note_id,
        aggregate_seq=1,
        occurred_at=datetime.now(UTC),
        producer="bus-test",
        payload={"note_id": str(note_id), "body": body},
    )


def applied_recorder(consumer: str):
    """A consumer handler that records each application in bus_test.applied."""
    from sqlalchemy import text

    stmt = text(
        f"INSERT INTO {SCHEMA}.applied (consumer, event_id, tenant_id, project_id)"
        " VALUES (:c, :e, :t, :p)"
    )

    async def handler(session, env) -> None:
        await session.execute(
            stmt, {"c": consumer, "e": env.id, "t": env.tenant_id, "p": env.project_id}
        )

    return handler
