"""Two replicas of reporting's consumer applying events at the same moment, on the real
PostgreSQL.

Each race is made deterministic by holding the counter rows from another connection (the
holder) until every contender waits behind them, then letting them go. Whatever order the
contenders then take, every event is counted exactly once, every message is acked, and no
transaction is rolled back (a deadlock between two replicas' batches was: each cost a
second's stall and a batch applied again one event per transaction)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from propdesk.bus.consumer import ConsumerRunner
from propdesk.events.envelope import Envelope
from propdesk.service.resources import ServiceResources
from propdesk.testing.fetched_message import FetchedMessage
from propdesk.testing.lock_waits import in_turn, lock_holder
from reporting.service import ACTIVITY_CONSUMER

from .test_reporting_activity import _complaint_event, _project_upserted

# Noon in Shanghai, ten in Urumqi: the same local day in either zone.
AT = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
ROWS_LOCK = (
    "SELECT 1 FROM reporting.daily_activity WHERE project_id = ANY($1::uuid[])"
    " ORDER BY project_id FOR UPDATE"
)


def _runner(res: ServiceResources) -> ConsumerRunner:
    """One replica's runner (each replica has its own)."""
    return ConsumerRunner(ACTIVITY_CONSUMER, res.settings, res.sessions)


def _same_lane_tenants() -> tuple[UUID, UUID]:
    """Two tenants the consumer puts in one lane, so that one transaction holds both."""
    a = uuid4()
    while True:
        b = uuid4()
        if hash(b) % ACTIVITY_CONSUMER.lanes == hash(a) % ACTIVITY_CONSUMER.lanes:
            return a, b


async def while_held(
    res: ServiceResources,
    lock_sql: str,
    args: tuple[Any, ...],
    contenders: list[Callable[[], Awaitable[Any]]],
    *,
    release: str = "COMMIT",
) -> list[Any]:
    """Run the contenders while `lock_sql` (on `args`) holds rows elsewhere, each started
    once the previous ones wait, and end the holder's transaction (`release`) once all
    wait."""
    return await in_turn(res.settings.database_url, lock_sql, args, contenders, release=release)


async def two_replicas(
    res: ServiceResources,
    one: list[FetchedMessage],
    two: list[FetchedMessage],
    lock_sql: str,
    args: tuple[Any, ...],
    *,
    release: str = "COMMIT",
) -> None:
    """Two replicas' runners apply a batch each, the first queued before the second,
    while `lock_sql` holds rows elsewhere."""
    runners = [_runner(res), _runner(res)]
    await while_held(
        res,
        lock_sql,
        args,
        [
            lambda: runners[0].handle_batch(one),  # type: ignore[arg-type]
            lambda: runners[1].handle_batch(two),  # type: ignore[arg-type]
        ],
        release=release,
    )


async def counts(res: ServiceResources, projects: list[UUID]) -> dict[UUID, int]:
    async with lock_holder(res.settings.database_url) as conn:
        rows = await conn.fetch(
            "SELECT project_id, sum(count) AS n FROM reporting.daily_activity"
            " WHERE project_id = ANY($1::uuid[]) GROUP BY 1",
            projects,
        )
    return {r["project_id"]: r["n"] for r in rows}


def _batch(envs: list[Envelope]) -> list[FetchedMessage]:
    return [FetchedMessage(e) for e in envs]


async def _seed(res: ServiceResources, tenant: UUID, project: UUID) -> None:
    """The project's counter row exists (count 1), so that the holder can lock it."""
    assert await _runner(res).apply(_complaint_event(tenant, project, AT)) is True


@pytest.fixture
def rollbacks(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What the consumer logged of transactions it rolled back and applied apart."""
    caplog.set_level(logging.INFO, logger="propdesk.bus.consumer")

    def failed() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "propdesk.bus.consumer" and "failed" in r.getMessage()
        ]

    return failed


@pytest.mark.parametrize("path", ["one event", "batch"])
async def test_the_same_events_twice_at_once_are_counted_once(res, rollbacks, path: str):
    """Two replicas get the same delivery at once (a redelivery after ack_wait): the second
    waits on the first one's inbox rows and skips them; each event counted once, each
    message acked."""
    tenant, project = uuid4(), uuid4()
    await _seed(res, tenant, project)
    envs = [_complaint_event(tenant, project, AT) for _ in range(2)]
    batches = [_batch(envs), _batch(envs)]
    runners = [_runner(res), _runner(res)]
    if path == "one event":
        envs = envs[:1]
        contenders = [lambda r=r: r.apply(envs[0]) for r in runners]
    else:
        contenders = [
            lambda r=r, b=b: r.handle_batch(b)  # type: ignore[arg-type]
            for r, b in zip(runners, batches, strict=True)
        ]
    results = await while_held(res, ROWS_LOCK, ([project],), contenders)
    assert await counts(res, [project]) == {project: 1 + len(envs)}
    if path == "one event":
        assert sorted(results) == [False, True]
    else:
        assert [m.outcome for b in batches for m in b] == [["ack"]] * 4
        assert sorted((r.handled, r.duplicates) for r in runners) == [(0, 2), (2, 0)]
    assert rollbacks() == []


@pytest.mark.parametrize("release", ["COMMIT", "ROLLBACK"])
async def test_different_events_on_one_counter_at_once_lose_no_count(res, rollbacks, release):
    """Two replicas count different events on one counter row at once: no count is lost,
    whether the row existed (COMMIT: the holder locked it) or both insert it at once
    (ROLLBACK: both wait on the holder's own insert of the key, which then goes away)."""
    tenant, project = uuid4(), uuid4()
    envs = [_complaint_event(tenant, project, AT) for _ in range(5)]
    if release == "COMMIT":
        await _seed(res, tenant, project)
        lock_sql, args = ROWS_LOCK, ([project],)
    else:
        lock_sql = (
            "INSERT INTO reporting.daily_activity VALUES ($1::uuid, $2::uuid, '2026-11-26',"
            " 'complaint.received', 100)"
        )
        args = (tenant, project)
    one, two = _batch(envs[:3]), _batch(envs[3:])
    await two_replicas(res, one, two, lock_sql, args, release=release)
    seeded = 1 if release == "COMMIT" else 0
    assert await counts(res, [project]) == {project: seeded + len(envs)}
    assert [m.outcome for m in [*one, *two]] == [["ack"]] * len(envs)
    assert rollbacks() == []


async def test_two_replicas_batches_over_the_same_tenants_do_not_deadlock(res, rollbacks):
    """Two replicas' batches carry events of the same two tenants (busy projects, the same
    day), first seen in opposite orders. Each transaction counts tenant by tenant; in the
    order of first appearance, each took one tenant's counter and waited for the other's:
    a deadlock, one batch rolled back after deadlock_timeout and applied again one event
    per transaction."""
    a, b = _same_lane_tenants()
    pa, pb = uuid4(), uuid4()
    await _seed(res, a, pa)
    await _seed(res, b, pb)
    one = _batch([_complaint_event(a, pa, AT), _complaint_event(b, pb, AT)])
    two = _batch([_complaint_event(b, pb, AT), _complaint_event(a, pa, AT)])
    await two_replicas(res, one, two, ROWS_LOCK, ([pa, pb],))
    assert await counts(res, [pa, pb]) == {pa: 3, pb: 3}
    assert [m.outcome for m in [*one, *two]] == [["ack"]] * 4
    assert rollbacks() == []


async def test_a_project_upserted_between_counts_does_not_deadlock_two_replicas(res, rollbacks):
    """One tenant, two projects: each replica's batch counts one project, learns its zone
    (project.upserted), then counts the other. Counted statement by statement between the
    upserts, each took one counter and waited for the other's: a deadlock."""
    tenant, pa, pb = uuid4(), uuid4(), uuid4()
    await _seed(res, tenant, pa)
    await _seed(res, tenant, pb)
    one = _batch(
        [
            _complaint_event(tenant, pa, AT),
            _project_upserted(tenant, pa, "PA", "甲苑", "Asia/Urumqi"),
            _complaint_event(tenant, pb, AT),
        ]
    )
    two = _batch(
        [
            _complaint_event(tenant, pb, AT),
            _project_upserted(tenant, pb, "PB", "乙苑", "Asia/Urumqi"),
            _complaint_event(tenant, pa, AT),
        ]
    )
    await two_replicas(res, one, two, ROWS_LOCK, ([pa, pb],))
    assert await counts(res, [pa, pb]) == {pa: 3, pb: 3}
    assert [m.outcome for m in [*one, *two]] == [["ack"]] * 6
    assert rollbacks() == []
