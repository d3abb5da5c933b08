"""Test support: a fresh database of a test module's own on the real server."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.engine import make_url

from propdesk.db.bootstrap import bootstrap
from propdesk.db.migrations import upgrade
from propdesk.settings import SERVICE_NAMES, Settings, asyncpg_dsn


async def fresh_database(
    settings: Settings, suffix: str, services: tuple[str, ...] = SERVICE_NAMES
) -> Settings:
    """Drop and create `<database>_<suffix>`, bootstrap roles and schemas, migrate
    `services`; returns settings pointing at it (the app role derived again)."""
    url = make_url(settings.database_url)
    name = f"{url.database}_{suffix}"
    admin = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    ours = settings.model_copy(
        update={
            "database_url": url.set(database=name).render_as_string(hide_password=False),
            "app_database_url": None,
        }
    )
    await bootstrap(ours, schemas=services)
    for service in services:
        await asyncio.to_thread(upgrade, service, ours)
    return ours
