"""Test support: make PostgreSQL refuse one consumer's dead letters for a while, as an
outage would (a trigger raises), to check that a message is not lost meanwhile."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from propdesk.settings import Settings, asyncpg_dsn
from propdesk.testing.bus_schema import SCHEMA


@contextlib.asynccontextmanager
async def refused_dead_letters(settings: Settings, consumer: str) -> AsyncIterator[None]:
    """While inside, every insert into bus_test.dead_letters for `consumer` fails; on
    leaving, they are accepted again."""
    trigger = "refuse_" + "".join(ch if ch.isalnum() else "_" for ch in consumer)
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute(
            f"CREATE OR REPLACE FUNCTION {SCHEMA}.refuse_dead_letter() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'dead letters refused (test)'; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON {SCHEMA}.dead_letters FOR EACH ROW"
            f" WHEN (NEW.consumer = '{consumer}')"
            f" EXECUTE FUNCTION {SCHEMA}.refuse_dead_letter()"
        )
        yield
    finally:
        await conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {SCHEMA}.dead_letters")
        await conn.close()
