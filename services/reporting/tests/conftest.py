"""Reporting's test resources and the one read its API has."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

import httpx
import pytest

from propdesk.service.resources import ServiceResources
from propdesk.settings import Settings
from reporting.api.activity import utc_now
from reporting.service import create_app


@pytest.fixture
async def res(settings: Settings) -> AsyncIterator[ServiceResources]:
    r = await ServiceResources.open("reporting", settings, nats=False)
    yield r
    await r.close()


async def get_activity(
    res: ServiceResources,
    token: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    *,
    now: datetime | None = None,
) -> httpx.Response:
    """`GET /v1/activity` with a bearer token; `now` stands in for the clock. `params` as
    pairs may repeat a name."""
    app = create_app(res)
    if now is not None:
        app.dependency_overrides[utc_now] = lambda: now
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        return await client.get(
            "/v1/activity", params=params, headers={"Authorization": f"Bearer {token}"}
        )
