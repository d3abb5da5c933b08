"""Dispatch integration fixtures: the dispatch schema migrated on the real PostgreSQL, a
seeded tenant directory, staff tokens, and an HTTP client on the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from dispatch.app import create_app
from dispatch.testing import Tenant, seed_tenant
from propdesk.db.bootstrap import bootstrap
from propdesk.db.migrations import upgrade
from propdesk.db.session import create_engine, session_factory
from propdesk.service.resources import ServiceResources
from propdesk.settings import Settings, asyncpg_dsn
from sqlalchemy.engine import make_url


@pytest.fixture(scope="session")
async def dispatch_db(settings: Settings) -> Settings:
    """A database of dispatch's own tests on the real server, bootstrapped and migrated."""
    url = make_url(settings.database_url)
    name = f"{url.database}_dispatch_tests"
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
    await bootstrap(ours, schemas=("dispatch",))
    await asyncio.to_thread(upgrade, "dispatch", ours)
    return ours


@pytest.fixture(scope="session")
async def res(dispatch_db: Settings) -> AsyncIterator[ServiceResources]:
    engine = create_engine(dispatch_db)
    import redis.asyncio as aioredis

    resources = ServiceResources(
        name="dispatch",
        settings=dispatch_db,
        engine=engine,
        sessions=session_factory(engine),
        redis=aioredis.from_url(dispatch_db.redis_url),
    )
    yield resources
    await resources.close()


@pytest.fixture(scope="session")
async def client(res: ServiceResources) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(res, configure_logs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as c:
        yield c


@pytest.fixture
async def tenant(res: ServiceResources) -> Tenant:
    return await seed_tenant(res)
