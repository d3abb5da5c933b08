"""Alembic wiring shared by every service: one history per service schema.

Each service keeps `<service>/migrations/` (env.py + versions/) inside its package. env.py
is two lines: `from propdesk.db.migrations import run_env; run_env("<service>")`.
Migrations run as the admin login switched to the owner role, so every object they
create is owned by `propdesk_owner` and never by the role services connect as.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from propdesk.db.bootstrap import OWNER_ROLE
from propdesk.db.session import async_engine
from propdesk.settings import Settings, async_url, get_settings


def migrations_dir(service: str) -> Path:
    spec = importlib.util.find_spec(service)
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"service package {service!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "migrations"


def alembic_config(service: str, settings: Settings | None = None) -> Config:
    settings = settings or get_settings()
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(service)))
    cfg.set_main_option("propdesk.schema", service)
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", async_url(settings.database_url).replace("%", "%%"))
    return cfg


LOCK_POLL_SECONDS = 0.2


async def _lock_schema(conn: AsyncConnection, schema: str) -> None:
    """Take the schema's migration lock (held by the session until it ends), waiting
    outside any transaction. A migrator blocked in `pg_advisory_lock` would sit in an
    open transaction with a snapshot, and a `CREATE INDEX CONCURRENTLY` of the migrator
    holding the lock waits for every older snapshot to go: each would wait for the other
    (PostgreSQL reports the deadlock and fails one of them). So poll, committing each try."""
    while True:
        got = (
            await conn.execute(
                text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": f"migrate:{schema}"}
            )
        ).scalar()
        await conn.commit()
        if got:
            return
        await asyncio.sleep(LOCK_POLL_SECONDS)


def run_env(schema: str) -> None:
    """Body of a service's migrations/env.py."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url") or async_url(get_settings().database_url)

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=None,
            version_table_schema=schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                await conn.execute(text(f'SET ROLE "{OWNER_ROLE}"'))
                await conn.execute(text(f'SET search_path TO "{schema}", public'))
                # Serialise concurrent upgrades of the same schema (replicas, test workers).
                await _lock_schema(conn, schema)
                await conn.run_sync(run)
                await conn.commit()
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported; run against a database")
    asyncio.run(main())


def upgrade(service: str, settings: Settings | None = None, revision: str = "head") -> None:
    """Blocking: call from a thread (asyncio.to_thread) when inside an event loop."""
    command.upgrade(alembic_config(service, settings), revision)
