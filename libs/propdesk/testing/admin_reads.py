"""Test support: read the tables as the superuser, bypassing row-level security (what is
really stored, whatever a tenant's context would show)."""

from __future__ import annotations

import asyncpg

from propdesk.settings import Settings, asyncpg_dsn


async def admin_fetch(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    """Read as the superuser, bypassing RLS: what is really in the tables."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()
