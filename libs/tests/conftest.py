from __future__ import annotations

import pytest
from propdesk.settings import Settings
from propdesk.testing.bus_schema import SCHEMA, create_bus_test_schema


@pytest.fixture(scope="session")
async def bus_schema(settings: Settings) -> str:
    await create_bus_test_schema(settings)
    return SCHEMA
