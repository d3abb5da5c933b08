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
