"""Reporting's activity read model on the real PostgreSQL: counting, local days, isolation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from propdesk.auth.tokens import issue_token
from propdesk.bus.consumer import ConsumerRunner
from propdesk.events import new_event
from propdesk.events.contracts.tenant import ProjectUpserted
from propdesk.events.envelope import Envelope
from propdesk.service.resources import ServiceResources
from propdesk.testing.fetched_message import FetchedMessage
from reporting.api.activity import default_range
from reporting.service import ACTIVITY_CONSUMER

from .conftest import get_activity


def _complaint_event(tenant, project, at: datetime) -> Envelope:
    cid = uuid4()
    return Envelope(
        type="complaint.received",
        schema_version=1,
        tenant_id=tenant,
        project_id=project,
        aggregate_type="complaint",
        aggregate_id=cid,
        aggregate_seq=1,
        occurred_at=at,
        producer="test",
        payload={},
    )


def _project_upserted(tenant, project, code: str, name: str, zone: str) -> Envelope:
    return new_event(
        ProjectUpserted(project_id=project, code=code, name=name, time_zone=zone),
        tenant_id=tenant,
        project_id=project,
        aggregate_id=project,
        producer="test",
    )


async def _apply(res: ServiceResources, env: Envelope) -> bool:
    return await ConsumerRunner(ACTIVITY_CONSUMER, res.settings, res.sessions).apply(env)


async def _get(res, token: str, now: datetime | None = None, **params):
    return await get_activity(res, token, params, now=now)


async def test_events_are_counted_once_per_local_day_and_tenants_see_only_their_own(res):
    a, b, project = uuid4(), uuid4(), uuid4()
    await _apply(
        res,
        _project_upserted(a, project, "EAST", "东苑", "Asia/Urumqi"),
    )
    late = datetime(2026, 11, 26, 17, 30, tzinfo=UTC)  # still the 26th in Urumqi
    events = [_complaint_event(a, project, late) for _ in range(3)]
    for env in events:
        assert await _apply(res, env) is True
    assert await _apply(res, events[0]) is False  # redelivery: inbox says already applied
    # A project reporting has not heard of yet counts in the default zone (Shanghai, where
    # 17:30 UTC is 01:30 the next day).
    unknown = uuid4()
    assert await _apply(res, _complaint_event(a, unknown, late)) is True

    token_a = issue_token(res.settings, tenant_id=a, subject="s-a", roles=["cs_supervisor"])
    resp = await _get(res, token_a, **{"from": "2026-11-01", "to": "2026-11-30"})
    assert resp.status_code == 200
    rows = resp.json()
    assert rows == [
        {
            "project_id": str(project),
            "project_code": "EAST",
            "day": "2026-11-26",
            "event_type": "complaint.received",
            "count": 3,
        },
        {
            "project_id": str(unknown),
            "project_code": None,
            "day": "2026-11-27",
            "event_type": "complaint.received",
            "count": 1,
        },
    ]
    token_b = issue_token(res.settings, tenant_id=b, subject="s-b", roles=["cs_supervisor"])
    resp_b = await _get(res, token_b, **{"from": "2026-11-01", "to": "2026-11-30"})
    assert resp_b.status_code == 200 and resp_b.json() == []
    # Project scope: a token for another project of tenant A sees nothing either.
    scoped = issue_token(
        res.settings, tenant_id=a, subject="s-a2", roles=["cs_supervisor"], project_ids=[uuid4()]
    )
    assert (await _get(res, scoped, **{"from": "2026-11-01", "to": "2026-11-30"})).json() == []


async def test_bad_ranges_are_precise_problems(res):
    token = issue_token(res.settings, tenant_id=uuid4(), subject="s", roles=["cs_supervisor"])
    resp = await _get(res, token, **{"from": "2026-12-01", "to": "2026-11-01"})
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["errors"][0]["field"] == "query.from"
    resp = await _get(res, token, **{"from": "yesterday"})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "query.from"
    resp = await _get(res, token, **{"from": "2020-01-01", "to": "2026-01-01"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["rule"] == "max_days"
    unauth = await _get(res, "not-a-token")
    assert unauth.status_code == 401


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        # The default `from` (30 days before `to`) would be before year 1: once a 500.
        ({"to": "0001-01-15"}, "query.to", "greater_than_equal"),
        ({"to": "0001-01-01"}, "query.to", "greater_than_equal"),
        ({"to": "9999-12-31"}, "query.to", "less_than_equal"),
        ({"from": "0001-01-01", "to": "0001-01-02"}, "query.from", "greater_than_equal"),
        ({"from": "1999-12-31", "to": "2000-01-10"}, "query.from", "greater_than_equal"),
        ({"from": "9999-12-31"}, "query.from", "less_than_equal"),
        ({"from": "2101-01-01", "to": "2101-01-02"}, "query.from", "less_than_equal"),
    ],
)
async def test_days_outside_the_platform_calendar_are_precise_problems(res, params, field, rule):
    token = issue_token(res.settings, tenant_id=uuid4(), subject="s", roles=["cs_supervisor"])
    resp = await _get(res, token, **params)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert (field, rule) in [(e["field"], e["rule"]) for e in resp.json()["errors"]]


async def test_the_default_range_stops_at_the_first_day_of_the_calendar(res):
    token = issue_token(res.settings, tenant_id=uuid4(), subject="s", roles=["cs_supervisor"])
    resp = await _get(res, token, to="2000-01-15")
    assert resp.status_code == 200, resp.text
    resp = await _get(res, token, **{"from": "2000-01-01", "to": "2100-12-31"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["rule"] == "max_days"
    assert default_range(datetime.now(UTC), None, date(2000, 1, 15)) == (
        date(2000, 1, 1),
        date(2000, 1, 15),
    )


async def test_a_batch_counts_like_one_event_at_a_time(res):
    """One fetched batch: the zone a project.upserted sets applies to the events after it,
    a repeated event counts once, and the sums land on the same rows."""
    tenant, project, other = uuid4(), uuid4(), uuid4()
    late = datetime(2026, 11, 26, 17, 30, tzinfo=UTC)  # the 26th in Urumqi, 27th in Shanghai
    before = _complaint_event(tenant, project, late)  # counted in the default zone
    upserted = _project_upserted(tenant, project, "WEST", "西苑", "Asia/Urumqi")
    after = [_complaint_event(tenant, project, late) for _ in range(3)]
    elsewhere = [_complaint_event(tenant, other, late) for _ in range(2)]
    batch = [before, upserted, after[0], elsewhere[0], after[1], after[0], after[2], elsewhere[1]]
    msgs = [FetchedMessage(e) for e in batch]
    runner = ConsumerRunner(ACTIVITY_CONSUMER, res.settings, res.sessions)
    await runner.handle_batch(msgs)  # type: ignore[arg-type]
    assert [m.outcome for m in msgs] == [["ack"]] * len(batch)
    assert (runner.handled, runner.duplicates) == (len(batch) - 1, 1)

    token = issue_token(res.settings, tenant_id=tenant, subject="s", roles=["cs_supervisor"])
    rows = (await _get(res, token, **{"from": "2026-11-01", "to": "2026-11-30"})).json()
    got = {(r["project_id"], r["day"], r["count"]) for r in rows}
    assert got == {
        (str(project), "2026-11-27", 1),
        (str(project), "2026-11-26", 3),
        (str(other), "2026-11-27", 2),
    }
    # Redelivered (a crash before the acks): counted zero more times.
    await runner.handle_batch([FetchedMessage(e) for e in batch])  # type: ignore[arg-type]
    rows = (await _get(res, token, **{"from": "2026-11-01", "to": "2026-11-30"})).json()
    assert {(r["project_id"], r["day"], r["count"]) for r in rows} == got


def test_the_default_days_end_with_the_latest_date_anywhere() -> None:
    """At 17:00 UTC on the 27th it is the 28th in Shanghai (and in Kiribati): the default
    range ends on the 28th, not on the server's date, and covers the 30 days before."""
    at = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    assert default_range(at, None, None) == (date(2026, 10, 29), date(2026, 11, 28))
    assert default_range(at, date(2026, 11, 1), None) == (date(2026, 11, 1), date(2026, 11, 28))
    assert default_range(at, None, date(2026, 11, 2)) == (date(2026, 10, 3), date(2026, 11, 2))
    morning = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, 15:00 in Kiribati
    assert default_range(morning, None, None)[1] == date(2026, 11, 27)


async def test_a_complaint_of_shanghais_today_is_in_the_default_answer(res):
    """Recorded at 17:00 UTC in a Shanghai project: it is counted on Shanghai's date, the
    next day's, which the default range asked at that hour includes."""
    tenant, project = uuid4(), uuid4()
    await _apply(
        res,
        _project_upserted(tenant, project, "NOW", "今苑", "Asia/Shanghai"),
    )
    now = datetime.now(UTC).replace(hour=17, minute=0, second=0, microsecond=0)
    assert await _apply(res, _complaint_event(tenant, project, now)) is True
    token = issue_token(res.settings, tenant_id=tenant, subject="s", roles=["cs_supervisor"])
    rows = (await _get(res, token, now=now)).json()
    shanghai_today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    assert shanghai_today == now.date() + timedelta(days=1)
    assert [(r["day"], r["count"]) for r in rows] == [(shanghai_today.isoformat(), 1)], rows


async def test_a_batch_counts_each_event_in_the_zone_its_project_had_at_that_point(res):
    """One counting statement per tenant's run (rows in key order, then the projects): an
    event before its project's project.upserted counts in the stored zone, one after it in
    the zone it set, one after a second upsert in that one's; another project is untouched;
    the last upsert is what is stored."""
    tenant, project, other = uuid4(), uuid4(), uuid4()
    late = datetime(2026, 11, 26, 17, 30, tzinfo=UTC)  # the 26th in Urumqi, 27th in Shanghai
    await _apply(res, _project_upserted(tenant, project, "P", "甲苑", "Asia/Urumqi"))
    batch = [
        _complaint_event(tenant, project, late),  # stored zone: Urumqi, the 26th
        _project_upserted(tenant, project, "P", "甲苑", "Asia/Shanghai"),
        _complaint_event(tenant, project, late),  # Shanghai, the 27th
        _complaint_event(tenant, other, late),  # unknown project: default zone, the 27th
        _project_upserted(tenant, project, "P2", "甲苑二期", "Asia/Urumqi"),
        _complaint_event(tenant, project, late),  # Urumqi again, the 26th
    ]
    msgs = [FetchedMessage(e) for e in batch]
    await ConsumerRunner(ACTIVITY_CONSUMER, res.settings, res.sessions).handle_batch(msgs)  # type: ignore[arg-type]
    assert [m.outcome for m in msgs] == [["ack"]] * len(batch)
    token = issue_token(res.settings, tenant_id=tenant, subject="s", roles=["cs_supervisor"])
    rows = (await _get(res, token, **{"from": "2026-11-01", "to": "2026-11-30"})).json()
    assert {(r["project_code"], r["day"], r["count"]) for r in rows} == {
        ("P2", "2026-11-26", 2),
        ("P2", "2026-11-27", 1),
        (None, "2026-11-27", 1),
    }
