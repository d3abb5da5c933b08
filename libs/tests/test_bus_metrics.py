"""The bus's Prometheus metrics move as events flow (read from the default registry, which
/metrics serves): relay published/failed and outbox backlog, consumer handled, duplicates,
redeliveries, dead letters, unparseable messages."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY

from propdesk.bus import Consumer, Outbox
from propdesk.bus.consumer import ConsumerRunner
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.bus_schema import SCHEMA, applied_recorder, note_event
from propdesk.testing.dead_letters import refused_dead_letters
from propdesk.testing.fetched_message import FetchedMessage
from propdesk.testing.waiting import eventually


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Unparseable(FetchedMessage):
    @property
    def data(self) -> bytes:
        return b"{not an envelope"


@pytest.fixture
async def sessions(settings: Settings, bus_schema: str):
    engine = create_engine(settings)
    yield session_factory(engine)
    await engine.dispose()


async def test_consumer_counters_move(settings: Settings, sessions):
    name = f"t-metrics-{uuid4().hex[:8]}"
    record = applied_recorder(name)

    async def handler(session, env) -> None:
        if env.payload["body"] == "bad":
            raise ValueError("never works")
        await record(session, env)

    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{name}.>"], handler), settings, sessions
    )

    def counts() -> dict[str, float]:
        return {
            what: sample(f"propdesk_bus_consumer_{what}_total", consumer=name)
            for what in (
                "handled",
                "duplicates",
                "redeliveries",
                "dead_lettered",
                "dead_letter_failures",
                "unparseable",
            )
        }

    tenant = uuid4()
    envs = [note_event(tenant, None) for _ in range(3)]
    await runner.handle_batch([FetchedMessage(e) for e in envs])
    assert counts() == {**dict.fromkeys(counts(), 0.0), "handled": 3.0}
    # Each applied event's age, from its occurred_at (a moment ago) to the commit.
    age = "propdesk_bus_consumer_event_age_seconds"
    assert sample(f"{age}_count", consumer=name) == 3.0
    assert 0 < sample(f"{age}_sum", consumer=name) < 3 * 5.0
    fresh = note_event(tenant, None)
    old = fresh.model_copy(update={"occurred_at": fresh.occurred_at - timedelta(minutes=2)})
    await runner.handle_batch([FetchedMessage(old)])
    assert sample(f"{age}_bucket", consumer=name, le="60.0") == 3.0
    assert sample(f"{age}_bucket", consumer=name, le="300.0") == 4.0
    assert counts()["handled"] == 4.0

    await runner.handle_batch([FetchedMessage(e, deliveries=2) for e in envs[:2]])
    assert counts()["duplicates"] == 2 and counts()["redeliveries"] == 2

    limit = settings.consumer_max_deliver
    bad = note_event(tenant, None, body="bad")
    async with refused_dead_letters(settings, name):
        await runner.handle_batch([FetchedMessage(bad, deliveries=limit)])
    assert counts()["dead_letter_failures"] == 1 and counts()["dead_lettered"] == 0
    await runner.handle_batch([FetchedMessage(bad, deliveries=limit + 1)])
    await runner.handle_batch([Unparseable(note_event(tenant, None))])
    assert counts() == {
        "handled": 4.0,
        "duplicates": 2.0,
        "redeliveries": 4.0,
        "dead_lettered": 2.0,  # the failing event and the unparseable message
        "dead_letter_failures": 1.0,
        "unparseable": 1.0,
    }


async def _unpublished(settings: Settings) -> int:
    rows = await admin_fetch(
        settings, f"SELECT count(*) AS n FROM {SCHEMA}.outbox WHERE published_at IS NULL"
    )
    return rows[0]["n"]


async def test_relay_counters_and_outbox_backlog_move(settings: Settings, sessions):
    nc = await connect(settings, "metrics-test")
    await ensure_stream(nc.jetstream(), settings)
    relay = Relay(SCHEMA, settings, nc)
    tenant = uuid4()
    try:
        # Whatever earlier tests left waiting (e.g. a row JetStream refuses) stays counted.
        while await relay.publish_batch():
            pass
        published = sample("propdesk_bus_relay_published_total", schema=SCHEMA)
        failures = sample("propdesk_bus_relay_publish_failures_total", schema=SCHEMA)
        envs = [note_event(tenant, None) for _ in range(5)]
        async with tenant_transaction(sessions, TenantContext.for_tenant(tenant)) as s:
            await Outbox(SCHEMA).add(s, *envs)
        await asyncio.sleep(0.05)

        await relay.refresh_backlog()
        waiting = await _unpublished(settings)
        assert waiting >= 5
        assert sample("propdesk_bus_outbox_backlog", schema=SCHEMA) == waiting
        assert sample("propdesk_bus_outbox_oldest_unpublished_age_seconds", schema=SCHEMA) > 0

        while await relay.publish_batch():
            pass
        assert sample("propdesk_bus_relay_published_total", schema=SCHEMA) == published + 5
        # Rows JetStream refuses are counted as failures each time they are tried.
        refused = waiting - 5
        assert (
            sample("propdesk_bus_relay_publish_failures_total", schema=SCHEMA) >= failures + refused
        )
        await relay.refresh_backlog()
        assert sample("propdesk_bus_outbox_backlog", schema=SCHEMA) == refused

        # The relay's loop refreshes the gauges on its own.
        relay.backlog_interval = 0.1
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            async with tenant_transaction(sessions, TenantContext.for_tenant(tenant)) as s:
                await Outbox(SCHEMA).add(s, note_event(tenant, None))

            async def published_one_more() -> bool:
                total = sample("propdesk_bus_relay_published_total", schema=SCHEMA)
                return total == published + 6

            await eventually(published_one_more, "the relay published the new event")
            from propdesk.bus.metrics import OUTBOX_BACKLOG

            OUTBOX_BACKLOG.labels(SCHEMA).set(-1)

            async def refreshed() -> bool:
                return sample("propdesk_bus_outbox_backlog", schema=SCHEMA) >= 0

            await eventually(refreshed, "the backlog gauge refreshed by the loop")
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await task
    finally:
        await relay.close()
        await nc.close()
