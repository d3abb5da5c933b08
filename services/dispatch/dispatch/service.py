"""What `propdesk-service dispatch` runs: API, outbox relay, consumers, periodic jobs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from dispatch.api.calendars import coverage_report, platform_dates
from dispatch.app import create_app
from dispatch.flows.overnight import run_overnight_handover
from dispatch.handlers import consumers
from dispatch.store import routing_cache
from dispatch.store.calendars import platform_overrides
from propdesk.db.session import tenant_transaction
from propdesk.service.resources import ServiceResources
from propdesk.service.spec import PeriodicTask, ServiceSpec
from propdesk.tenancy import system_context

log = logging.getLogger("dispatch")


async def warn_uncovered_years(res: ServiceResources) -> list[int]:
    """Say loudly at start-up when this or next year has no holiday data."""
    async with tenant_transaction(res.sessions, system_context("dispatch:startup")) as session:
        platform = await platform_overrides(session)
    report = coverage_report(platform, *platform_dates(datetime.now(UTC)))
    for warning in report["warnings"]:
        log.warning("calendar: %s", warning)
    return report["uncovered"]


async def _overnight(res: ServiceResources) -> None:
    await run_overnight_handover(res.sessions)


async def _on_start(res: ServiceResources) -> None:
    assert res.nc is not None
    await routing_cache.CACHE.connect(res.nc)
    await warn_uncovered_years(res)


SPEC = ServiceSpec(
    name="dispatch",
    create_app=create_app,
    consumers=lambda _res: consumers(),
    periodic=(PeriodicTask("overnight-handover", 60.0, _overnight),),
    on_start=_on_start,
)
