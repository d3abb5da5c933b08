"""Dispatching on New Year's Eve with no holiday data for the new year: the project's local
dates decide, the hand-over search is checked for every year it passes, and the guess is
said loudly (log, metric) and marked on the order and its dispatched event."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from dispatch.flows.dispatching import dispatch_classified
from dispatch.testing import Tenant, seed_tenant
from propdesk.auth.tokens import issue_token
from propdesk.db.session import tenant_transaction
from propdesk.service.resources import ServiceResources
from propdesk.settings import asyncpg_dsn

SH = ZoneInfo("Asia/Shanghai")
METRIC = "propdesk_dispatch_uncovered_calendar_orders_total"


async def _clear_loaded_years(res: ServiceResources) -> None:
    # Platform data, not a tenant's: reset as the admin.
    conn = await asyncpg.connect(asyncpg_dsn(res.settings.database_url))
    try:
        await conn.execute("DELETE FROM dispatch.platform_calendar_years")
    finally:
        await conn.close()


@pytest.fixture
async def no_2027(res: ServiceResources) -> AsyncIterator[None]:
    """chinese-calendar stops at 2026 and no operator has loaded 2027 (nor later)."""
    await _clear_loaded_years(res)
    yield
    await _clear_loaded_years(res)


async def dispatch_at(res: ServiceResources, t: Tenant, now: datetime) -> UUID:
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        wo = await dispatch_classified(session, t.tenant_id, t.classified(), now=now)
    assert wo is not None
    return wo


async def dispatched_payload(res: ServiceResources, t: Tenant, wo: UUID) -> dict:
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        envelope = await session.scalar(
            text(
                "SELECT envelope FROM dispatch.outbox WHERE envelope->>'aggregate_id' = :w"
                " AND event_type = 'work_order.dispatched'"
            ),
            {"w": str(wo)},
        )
    return envelope["payload"]


def guessed_2027() -> float:
    return REGISTRY.get_sample_value(METRIC, {"year": "2027"}) or 0.0


@pytest.mark.parametrize(
    "received",
    [
        # New Year's Eve: the receipt's year (2026) is covered, the morning is not.
        datetime(2026, 12, 31, 23, 0, tzinfo=SH),
        # 01:30 on New Year's Day in Shanghai, still 2026 in UTC.
        datetime(2027, 1, 1, 1, 30, tzinfo=SH),
    ],
    ids=["new-years-eve", "new-years-night"],
)
async def test_handover_into_an_uncovered_year_is_said_and_marked(
    res, tenant: Tenant, client, caplog, no_2027, received: datetime
) -> None:
    before = guessed_2027()
    with caplog.at_level(logging.WARNING, logger="dispatch.dispatching"):
        wo = await dispatch_at(res, tenant, received)

    # The guess itself: New Year's Day 08:30 counts as a working morning (weekdays only).
    view = (
        await client.get(f"/v1/work-orders/{wo}", headers=tenant.token(uuid4(), "cs_supervisor"))
    ).json()
    assert view["after_hours"] and view["handler_id"] == str(tenant.duty_leader)
    assert datetime.fromisoformat(view["overnight_handover_at"]) == datetime(
        2027, 1, 1, 8, 30, tzinfo=SH
    )
    # ... marked on the order (its reason and its dispatch step) and in the event,
    assert "no holiday data for 2027" in view["assignment_reason"]
    assert view["steps"][0]["details"]["calendar_uncovered_years"] == [2027]
    payload = await dispatched_payload(res, tenant, wo)
    assert payload["calendar_uncovered_years"] == [2027]
    assert "no holiday data for 2027" in payload["assignment_reason"]
    # ... logged loudly with the project (the tenant comes from the context),
    warned = [r for r in caplog.records if getattr(r, "uncovered_years", None) == [2027]]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert warned[0].project_id == str(tenant.project_id)
    assert "no holiday data for 2027" in warned[0].getMessage()
    # ... and counted.
    assert guessed_2027() == before + 1


async def test_covered_years_leave_no_mark(res, tenant: Tenant, caplog, no_2027) -> None:
    with caplog.at_level(logging.WARNING, logger="dispatch.dispatching"):
        wo = await dispatch_at(res, tenant, datetime(2026, 11, 24, 23, 0, tzinfo=SH))
    payload = await dispatched_payload(res, tenant, wo)
    # The optional field is left out: the event is what v1 readers have always read.
    assert "calendar_uncovered_years" not in payload
    assert "no holiday data" not in payload["assignment_reason"]
    assert not [r for r in caplog.records if hasattr(r, "uncovered_years")]


async def test_once_2027_is_loaded_new_years_day_is_a_day_off(res, client, no_2027) -> None:
    op = {
        "authorization": "Bearer "
        + issue_token(res.settings, tenant_id=None, subject="op", roles=["operator"])
    }
    body = {"holidays": {"2027-01-01": "元旦"}, "workdays": {}, "source": "test"}
    r = await client.put("/v1/calendars/years/2027", headers=op, json=body)
    assert r.status_code == 200 and r.json()["covered"]
    t = await seed_tenant(res)
    wo = await dispatch_at(res, t, datetime(2026, 12, 31, 23, 0, tzinfo=SH))
    payload = await dispatched_payload(res, t, wo)
    # Friday 2027-01-01 off, then the weekend: Monday morning.
    assert datetime.fromisoformat(payload["overnight_handover_at"]) == datetime(
        2027, 1, 4, 8, 30, tzinfo=SH
    )
    assert "calendar_uncovered_years" not in payload


@pytest.mark.parametrize(
    ("utc", "years"),
    [
        # Shanghai (UTC+8) entered 2027 at 16:00 UTC; Kiritimati (UTC+14) at 10:00.
        ("2026-12-31T16:30:00+00:00", [2026, 2027, 2028]),
        ("2026-12-31T10:30:00+00:00", [2026, 2027, 2028]),
        # Every place is in 2027 once UTC-12 is: 2027 and 2028.
        ("2027-01-01T12:30:00+00:00", [2027, 2028]),
        ("2026-07-01T00:00:00+00:00", [2026, 2027]),
    ],
)
def test_the_platform_coverage_reports_every_year_a_project_is_in_and_the_next(
    utc: str, years: list[int]
) -> None:
    """`GET /v1/calendars/coverage` and the start-up warning: on the UTC date alone, a
    Shanghai project already in 2027 would have been told nothing about 2028."""
    from dispatch.api.calendars import coverage_report, platform_dates
    from propdesk.calendar import HolidayOverrides

    report = coverage_report(HolidayOverrides(), *platform_dates(datetime.fromisoformat(utc)))
    assert [y["year"] for y in report["years"]] == years
