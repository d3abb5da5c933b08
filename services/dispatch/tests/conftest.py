"""Dispatch integration fixtures: the dispatch schema migrated on the real PostgreSQL, a
seeded tenant directory, staff tokens, and an HTTP client on the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from dispatch.app import create_app
from dispatch.testing import Tenant, seed_tenant
from propdesk.service.resources import ServiceResources
from propdesk.settings import Settings
from propdesk.testing.databases import fresh_database


@pytest.fixture(scope="session")
async def dispatch_db(settings: Settings) -> Settings:
    """A database of dispatch's own tests on the real server, bootstrapped and migrated."""
    return await fresh_database(settings, "dispatch_tests", ("dispatch",))


@pytest.fixture(scope="session")
async def res(dispatch_db: Settings) -> AsyncIterator[ServiceResources]:
    resources = await ServiceResources.open("dispatch", dispatch_db, nats=False)
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
