"""Fixtures for every test in the repository."""

from __future__ import annotations

import os

import pytest

from propdesk.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the real stack `make test` started (PROPDESK_* variables)."""
    if not os.environ.get("PROPDESK_DATABASE_URL"):
        pytest.skip("integration test: needs the real stack (run `make test`)")
    return Settings()


@pytest.fixture(scope="session")
async def bus_schema(settings: Settings) -> str:
    """The `bus_test` schema (bus tables + RLS tables), created once per test session."""
    from propdesk.testing.bus_schema import SCHEMA, create_bus_test_schema

    await create_bus_test_schema(settings)
    return SCHEMA
