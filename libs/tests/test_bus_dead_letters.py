"""Dead letters on the real PostgreSQL and NATS: an event is terminated in JetStream only
after its dead letter committed; a dead letter that cannot be written sends the message
back (nak with delay) without stopping the consumer; the consumer's failure logs carry the
event's tenant."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from uuid import uuid4

import asyncpg
import pytest

from propdesk.bus import Consumer
from propdesk.bus.consumer import ConsumerRunner
from propdesk.bus.outbox import Outbox
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect, consumer_config, ensure_consumer, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.service.logging import ContextFilter
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.bus_schema import SCHEMA, applied_recorder, count_applied, note_event
from propdesk.testing.dead_letters import refused_dead_letters
from propdesk.testing.fetched_message import FetchedMessage
from propdesk.testing.waiting import eventually


async def _dead_letters(settings: Settings, consumer: str) -> list[asyncpg.Record]:
    return await admin_fetch(
        settings,
        f"SELECT event_id, deliveries, error FROM {SCHEMA}.dead_letters WHERE consumer = $1",
        consumer,
    )


@pytest.mark.parametrize(
    "batching",
    [
        pytest.param({}, id="one by one"),
        pytest.param({"per_transaction": 8, "lanes": 2}, id="batched"),
    ],
)
async def test_a_dead_letter_that_cannot_be_written_is_retried_and_the_consumer_lives_on(
    settings: Settings, bus_schema: str, batching: dict
):
    fast = settings.model_copy(
        update={"consumer_backoff_seconds": [0.05], "consumer_max_deliver": 2}
    )
    name, tenant = f"t-dlfail-{uuid4().hex[:8]}", uuid4()
    record = applied_recorder(name)
    calls: dict[str, int] = {}

    async def handler(session, env) -> None:
        calls[str(env.id)] = calls.get(str(env.id), 0) + 1
        if env.payload["body"] == "hopeless":
            raise ValueError("never works")
        await record(session, env)

    engine = create_engine(fast)
    sessions = session_factory(engine)
    nc = await connect(fast, "dead-letter-test")
    await ensure_stream(nc.jetstream(), fast)
    stop = asyncio.Event()
    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], handler, **batching),
        fast,
        sessions,
        nc,
    )
    relay = asyncio.create_task(Relay(SCHEMA, fast, nc).run(stop))
    consumer = asyncio.create_task(runner.run(stop))
    hopeless = note_event(tenant, None, body="hopeless")
    try:
        async with refused_dead_letters(settings, name):
            async with tenant_transaction(sessions, TenantContext.for_tenant(tenant)) as s:
                await Outbox(SCHEMA).add(s, hopeless)
            # The last allowed delivery (2) failed and so did its dead letter: the message
            # must come back rather than be terminated or dropped by the server.
            await eventually(
                lambda: _at_least(calls, str(hopeless.id), 4),
                "the event delivered again after its dead letter was refused",
            )
            assert not consumer.done(), consumer
            assert await _dead_letters(settings, name) == []
        # PostgreSQL accepts dead letters again: the next delivery records it, once.
        rows = await eventually(
            lambda: _dead_letters(settings, name), "the event dead-lettered", within=20
        )
        seen = calls[str(hopeless.id)]
        await asyncio.sleep(0.5)
        assert calls[str(hopeless.id)] == seen, "terminated after its dead letter committed"
        rows = await _dead_letters(settings, name)
        assert [r["event_id"] for r in rows] == [hopeless.id]
        assert rows[0]["deliveries"] > fast.consumer_max_deliver
        assert runner.dead_lettered == 1
        # And the consumer still applies what comes next.
        good = note_event(tenant, None)
        async with tenant_transaction(sessions, TenantContext.for_tenant(tenant)) as s:
            await Outbox(SCHEMA).add(s, good)
        got = await eventually(
            lambda: _applied(settings, name, str(good.id)), "the next event applied"
        )
        assert got[str(good.id)] == 1
        assert not consumer.done()
    finally:
        stop.set()
        for task in (consumer, relay):
            with contextlib.suppress(Exception):
                await task
        await nc.close()
        await engine.dispose()


async def _at_least(calls: dict[str, int], key: str, n: int) -> bool:
    return calls.get(key, 0) >= n


async def _applied(settings: Settings, name: str, event_id: str):
    got = await count_applied(settings, name)
    return got if event_id in got else None


class _Records(logging.Handler):
    """The consumer's log records, with the context a service's log handler adds."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter("test"))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def matching(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if text in r.getMessage()]


@pytest.fixture
def consumer_logs():
    logger = logging.getLogger("propdesk.bus.consumer")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
async def sessions(settings: Settings, bus_schema: str):
    engine = create_engine(settings)
    yield session_factory(engine)
    await engine.dispose()


async def test_the_consumers_failure_logs_carry_the_events_tenant(
    settings: Settings, sessions, consumer_logs
):
    name = f"t-logs-{uuid4().hex[:8]}"
    limit = settings.consumer_max_deliver

    async def handler(session, env) -> None:
        if env.payload["body"] == "bad":
            raise ValueError("never works")

    def runner(**options) -> ConsumerRunner:
        c = Consumer(name, SCHEMA, [f"pd.bustest.*.{name}.>"], handler, **options)
        return ConsumerRunner(c, settings, sessions)

    retried, dead, refused = uuid4(), uuid4(), uuid4()
    await runner().handle_batch([FetchedMessage(note_event(retried, None, body="bad"))])
    await runner().handle_batch(
        [FetchedMessage(note_event(dead, None, body="bad"), deliveries=limit)]
    )
    async with refused_dead_letters(settings, name):
        msg = FetchedMessage(note_event(refused, None, body="bad"), deliveries=limit)
        await runner().handle_batch([msg])
    assert msg.outcome == ["nak"]
    grouped = uuid4()
    envs = [note_event(grouped, None), note_event(grouped, None, body="bad")]
    await runner(per_transaction=8).handle_batch([FetchedMessage(e) for e in envs])

    def tenants(text: str) -> list[str | None]:
        found = consumer_logs.matching(text)
        assert found, (
            f"no log record with {text!r}: {[r.getMessage() for r in consumer_logs.records]}"
        )
        return [r.tenant_id for r in found]

    assert tenants("failed (delivery") == [str(retried), str(grouped)]
    assert tenants("times, dead-lettered") == [str(dead)]
    assert set(tenants("could not be dead-lettered")) == {str(refused)}
    assert tenants("a transaction of 2 events failed") == [str(grouped)]
    assert all(
        r.actor == f"consumer:{name}" for r in consumer_logs.records if r.levelno >= logging.INFO
    )


async def test_an_existing_durable_gets_unlimited_redelivery_when_its_service_starts(
    settings: Settings, bus_schema: str
):
    """Durables created before the fix have the server give up after max_deliver tries:
    `ensure_consumer`, which every consumer runs at start, updates them in place."""
    name = f"t-update-{uuid4().hex[:8]}"
    subjects = [f"pd.bustest.*.{name}.>"]
    nc = await connect(settings, "consumer-update-test")
    js = nc.jetstream()
    try:
        await ensure_stream(js, settings)
        old = dataclasses.replace(consumer_config(settings, name, subjects), max_deliver=8)
        await js.add_consumer(settings.stream_name, config=old)
        assert (await js.consumer_info(settings.stream_name, name)).config.max_deliver == 8
        await ensure_consumer(js, settings, name, subjects)
        config = (await js.consumer_info(settings.stream_name, name)).config
        assert config.max_deliver == -1
        assert config.ack_wait == settings.consumer_ack_wait_seconds
        assert not config.backoff
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(settings.stream_name, name)
        await nc.close()
