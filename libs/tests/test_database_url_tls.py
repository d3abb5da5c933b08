"""One `PROPDESK_DATABASE_URL` for every connection: libpq's TLS parameters (`sslmode`,
`sslrootcert`, ...) in it reach asyncpg on the SQLAlchemy engines, the migrations and the
plain asyncpg connections alike.

The stack's PostgreSQL (the PyPI build) has no TLS, so these tests use that: `sslmode`
`disable` and `prefer` connect in plain text, and `require` is refused by the server, which
proves the parameter reached asyncpg. Before, the engines handed it to `asyncpg.connect`
as a keyword argument it does not take (TypeError)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url

from propdesk.db.migrations import alembic_config
from propdesk.db.session import create_engine, session_factory
from propdesk.settings import Settings, asyncpg_dsn


def with_query(url: str, **query: str) -> str:
    return make_url(url).update_query_dict(query).render_as_string(hide_password=False)


async def select_one(settings: Settings, url: str) -> int:
    engine = create_engine(settings, url=url)
    try:
        async with session_factory(engine)() as session:
            return (await session.execute(text("SELECT 1"))).scalar_one()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("mode", ["disable", "prefer"])
async def test_a_url_with_an_sslmode_connects_on_every_path(settings: Settings, mode: str) -> None:
    url = with_query(settings.app_db_url, sslmode=mode)
    assert await select_one(settings, url) == 1
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_sslmode_require_reaches_the_server_from_the_engine(settings: Settings) -> None:
    """The server has no TLS: asyncpg asks for it and is turned away, on the engine as on
    a plain connection (not a TypeError before any connection is tried)."""
    url = with_query(settings.app_db_url, sslmode="require")
    for attempt in (select_one(settings, url), asyncpg.connect(asyncpg_dsn(url))):
        with pytest.raises(ConnectionError, match="SSL"):
            await attempt


def test_migrations_connect_with_an_sslmode(settings: Settings) -> None:
    """`propdesk-migrate` runs through the same engine factory: the schemas are at head
    already, so the upgrade only connects, reads the version and returns."""
    ssl_settings = settings.model_copy(
        update={"database_url": with_query(settings.database_url, sslmode="prefer")}
    )
    command.upgrade(alembic_config("reporting", ssl_settings), "head")

    async def version() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            return await conn.fetchval("SELECT version_num FROM reporting.alembic_version")
        finally:
            await conn.close()

    assert asyncio.run(version())


def test_the_engine_still_names_its_database(settings: Settings) -> None:
    """Spans and logs read `engine.url` (server, port, database, user): the engine made
    from the DSN keeps them, without the query only asyncpg reads."""
    engine = create_engine(settings, url=with_query(settings.app_db_url, sslmode="disable"))
    shown, expected = engine.url, make_url(settings.app_db_url)
    assert (shown.host, shown.port, shown.database, shown.username) == (
        expected.host,
        expected.port,
        expected.database,
        expected.username,
    )
    assert shown.drivername == "postgresql+asyncpg" and not shown.query
