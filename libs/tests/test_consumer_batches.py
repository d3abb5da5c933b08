"""ConsumerRunner applying a fetched batch in shared transactions and lanes, on the real
PostgreSQL: each event applied once under its own tenant, duplicates skipped, a failing
event split off (nak or dead letter) without losing or doubling the others, and a batch
redelivered after its commit (a crash before the acks) applied zero more times."""

from __future__ import annotations

import asyncio
import logging
from uuid import uuid4

import asyncpg
import pytest

from propdesk.bus import Consumer, PermanentError
from propdesk.bus.consumer import ConsumerRunner
from propdesk.db.session import create_engine, session_factory
from propdesk.events.envelope import Envelope
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.testing.bus_schema import (
    SCHEMA,
    applied_recorder,
    applied_tenants,
    count_applied,
    note_event,
)
from propdesk.testing.fetched_message import FetchedMessage


@pytest.fixture
async def sessions(settings: Settings, bus_schema: str):
    engine = create_engine(settings)
    yield session_factory(engine)
    await engine.dispose()


def _runner(settings, sessions, name: str, handler, **options) -> ConsumerRunner:
    c = Consumer(name, SCHEMA, [f"pd.bustest.*.{name}.>"], handler, **options)
    return ConsumerRunner(c, settings, sessions)


@pytest.mark.parametrize("lanes", [1, 3])
async def test_a_batch_of_several_tenants_applies_each_event_once(settings, sessions, lanes):
    name = f"t-batch-{uuid4().hex[:8]}"
    a, b = uuid4(), uuid4()
    envs = [note_event(a if i % 3 else b, uuid4()) for i in range(12)]
    msgs = [FetchedMessage(e) for e in envs]
    msgs.insert(5, FetchedMessage(envs[2]))  # the same event twice in one batch
    runner = _runner(
        settings, sessions, name, applied_recorder(name), per_transaction=8, lanes=lanes
    )
    await runner.handle_batch(msgs)  # type: ignore[arg-type]
    assert all(m.outcome == ["ack"] for m in msgs)
    assert (runner.handled, runner.duplicates, runner.dead_lettered) == (12, 1, 0)
    got = await count_applied(settings, name)
    assert got == {str(e.id): 1 for e in envs}
    # Each handler ran under its own event's tenant (the RLS policy checks every row).
    assert await applied_tenants(settings, name) == {str(e.id): str(e.tenant_id) for e in envs}

    # Redelivered after the commit, before the acks (a crash): nothing is applied again.
    again = [FetchedMessage(e, deliveries=2) for e in envs]
    await runner.handle_batch(again)  # type: ignore[arg-type]
    assert all(m.outcome == ["ack"] for m in again)
    assert runner.duplicates == 1 + len(envs)
    assert await count_applied(settings, name) == got


@pytest.mark.parametrize("tenant_count", [1, 2])
async def test_a_failing_event_is_split_off_and_the_rest_applied_once(
    settings, sessions, tenant_count
):
    name = f"t-split-{uuid4().hex[:8]}"
    tenants = [uuid4() for _ in range(tenant_count)]
    record = applied_recorder(name)
    calls: dict[str, int] = {}

    async def handler(session, env: Envelope) -> None:
        calls[str(env.id)] = calls.get(str(env.id), 0) + 1
        await record(session, env)  # rolled back with the failure
        if env.payload["body"] == "flaky":
            raise ConnectionError("downstream hiccup")
        if env.payload["body"] == "poison":
            raise PermanentError("poison")

    bodies = ["ok", "ok", "flaky", "ok", "poison", "ok", "ok"]
    envs = [note_event(tenants[i % tenant_count], None, body=b) for i, b in enumerate(bodies)]
    msgs = [FetchedMessage(e) for e in envs]
    runner = _runner(settings, sessions, name, handler, per_transaction=64)
    await runner.handle_batch(msgs)  # type: ignore[arg-type]

    outcome = {body: [] for body in bodies}
    for body, m in zip(bodies, msgs, strict=True):
        outcome[body].append(m.outcome)
    assert outcome["flaky"] == [["nak"]]
    assert outcome["poison"] == [["term"]]
    assert outcome["ok"] == [["ack"]] * 5
    assert runner.handled == 5 and runner.dead_lettered == 1
    got = await count_applied(settings, name)
    assert got == {str(e.id): 1 for e, body in zip(envs, bodies, strict=True) if body == "ok"}
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        dead = await conn.fetch(
            f"SELECT event_id FROM {SCHEMA}.dead_letters WHERE consumer = $1", name
        )
    finally:
        await conn.close()
    assert [r["event_id"] for r in dead] == [envs[4].id]


async def test_batch_handler_gets_the_new_events_of_one_tenant_in_order(settings, sessions):
    name = f"t-bh-{uuid4().hex[:8]}"
    a, b = uuid4(), uuid4()
    seen: list[list[Envelope]] = []
    alone: list[Envelope] = []
    record = applied_recorder(name)

    async def per_event(session, env: Envelope) -> None:
        alone.append(env)  # only a transaction of one event takes the one-event path
        await record(session, env)

    async def batch_handler(session, envs) -> None:
        seen.append(list(envs))
        for env in envs:
            await record(session, env)

    envs = [note_event(a if i % 2 else b, None) for i in range(6)]
    runner = _runner(
        settings, sessions, name, per_event, per_transaction=64, batch_handler=batch_handler
    )
    first = [FetchedMessage(e) for e in envs[:3]]
    await runner.handle_batch(first)  # type: ignore[arg-type]
    # The first three again, with three new ones: only the new ones reach the handler.
    await runner.handle_batch([FetchedMessage(e) for e in envs])  # type: ignore[arg-type]
    # One call per tenant's run of new events, tenants in the order of their ids (the same
    # in every replica, whatever came first: two replicas' transactions lock alike).
    runs = {
        a: [[envs[1].id], [envs[3].id, envs[5].id]],
        b: [[envs[0].id, envs[2].id], [envs[4].id]],
    }
    first_tenant, second_tenant = sorted((a, b))
    assert [[e.id for e in batch] for batch in seen] == [
        runs[first_tenant][0],
        runs[second_tenant][0],
        runs[first_tenant][1],
        runs[second_tenant][1],
    ]
    assert alone == []
    assert await count_applied(settings, name) == {str(e.id): 1 for e in envs}

    # A single event is a transaction of one: the one-event path.
    last = note_event(a, None)
    await runner.handle_batch([FetchedMessage(last)])  # type: ignore[arg-type]
    assert [e.id for e in alone] == [last.id]


async def test_one_transaction_spans_tenants_each_run_under_its_own_context(settings, sessions):
    """Events of three tenants in one transaction (one BEGIN, one COMMIT); each handler sees
    its own tenant's context and, under row-level security, none of the rows the other
    tenants' handlers wrote earlier in the same transaction."""
    from sqlalchemy import text

    name = f"t-span-{uuid4().hex[:8]}"
    tenants = [uuid4(), uuid4(), uuid4()]
    envs = [note_event(tenants[i % 3], None) for i in range(9)]
    record = applied_recorder(name)
    seen: dict[str, tuple[int, str, int]] = {}
    probe = text(
        "SELECT txid_current(), current_setting('app.tenant_id'),"
        f" (SELECT count(*) FROM {SCHEMA}.applied WHERE consumer = :c)"
    )

    async def handler(session, env: Envelope) -> None:
        await record(session, env)
        txid, tenant, visible = (await session.execute(probe, {"c": name})).one()
        seen[str(env.id)] = (txid, tenant, visible)

    runner = _runner(settings, sessions, name, handler, per_transaction=64)
    await runner.handle_batch([FetchedMessage(e) for e in envs])  # type: ignore[arg-type]
    assert runner.handled == 9
    assert len({txid for txid, _, _ in seen.values()}) == 1
    for e in envs:
        _, tenant, visible = seen[str(e.id)]
        assert tenant == str(e.tenant_id)
        # Its tenant's events are applied in stream order, three per tenant: the n-th of
        # its tenant sees n rows (its own included), never another tenant's.
        mine = [x.id for x in envs if x.tenant_id == e.tenant_id]
        assert visible == mine.index(e.id) + 1
    assert await applied_tenants(settings, name) == {str(e.id): str(e.tenant_id) for e in envs}


async def test_each_event_of_a_batch_continues_its_producers_trace(settings, sessions):
    from opentelemetry import trace

    from propdesk.telemetry import install_test_exporter
    from propdesk.telemetry.propagation import inject_current

    exporter = install_test_exporter()
    tracer = trace.get_tracer("test")
    name = f"t-trace-{uuid4().hex[:8]}"
    tenant = uuid4()
    msgs: list[FetchedMessage] = []
    producers = {}
    for _ in range(4):
        env = note_event(tenant, None)
        with tracer.start_as_current_span("produce") as span:
            msgs.append(FetchedMessage(env, headers=inject_current()))
        producers[str(env.id)] = span.get_span_context()
    runner = _runner(settings, sessions, name, applied_recorder(name), per_transaction=64)
    await runner.handle_batch(msgs)  # type: ignore[arg-type]
    assert runner.handled == 4

    consumed = {
        s.attributes["messaging.message.id"]: s
        for s in exporter.get_finished_spans()
        if s.name == "consume bustest.noted" and s.attributes
    }
    assert consumed.keys() == producers.keys()
    for event_id, span in consumed.items():
        assert span.parent is not None
        assert span.context.trace_id == producers[event_id].trace_id
        assert span.parent.span_id == producers[event_id].span_id


@pytest.mark.parametrize("per_transaction", [1, 8])
@pytest.mark.parametrize("generic_plans", [False, True])
async def test_a_consumer_can_ask_for_generic_plans(
    settings, bus_schema, generic_plans, per_transaction
):
    """`generic_plans` sets `plan_cache_mode` for the consumer's transactions, with the
    tenant context: for every tenant's run of a shared transaction too; others keep the
    server's choice, and so does the connection after the transaction."""
    name = f"t-plans-{uuid4().hex[:8]}"
    seen: list[str] = []

    async def handler(session, env: Envelope) -> None:
        conn = await session.connection()
        seen.append((await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar_one())

    # One connection, to read its setting after the transactions.
    one = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    engine = create_engine(one)
    try:
        runner = _runner(
            one,
            session_factory(engine),
            name,
            handler,
            generic_plans=generic_plans,
            per_transaction=per_transaction,
        )
        a, b = uuid4(), uuid4()
        msgs = [FetchedMessage(note_event(a if i % 2 else b, uuid4())) for i in range(4)]
        await runner.handle_batch(msgs)  # type: ignore[arg-type]
        async with engine.connect() as conn:
            after = (await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar_one()
    finally:
        await engine.dispose()
    assert all(m.outcome == ["ack"] for m in msgs)
    assert seen == ["force_generic_plan" if generic_plans else "auto"] * 4
    assert after == "auto"


async def test_two_replicas_given_the_same_events_in_opposite_orders_do_not_deadlock(
    settings, sessions, caplog
):
    """An event redelivered to one replica while another still applies it: the inbox rows
    go in in the order of their ids in both, so neither waits on a row the other inserted
    while holding one it needs (in the order given, most of these rounds deadlocked: a
    second's stall, then the batch applied again event by event)."""
    caplog.set_level(logging.INFO, logger="propdesk.bus.consumer")
    for _ in range(3):
        name = f"t-opposite-{uuid4().hex[:8]}"
        tenant = uuid4()
        envs = [note_event(tenant, uuid4()) for _ in range(300)]
        c = Consumer(
            name,
            SCHEMA,
            [f"pd.bustest.*.{name}.>"],
            applied_recorder(name),
            per_transaction=512,
            lanes=1,
        )
        one, two = ConsumerRunner(c, settings, sessions), ConsumerRunner(c, settings, sessions)
        caplog.clear()
        await asyncio.gather(
            one.handle_batch([FetchedMessage(e) for e in envs]),  # type: ignore[arg-type]
            two.handle_batch([FetchedMessage(e, deliveries=2) for e in reversed(envs)]),  # type: ignore[arg-type]
        )
        assert await count_applied(settings, name) == {str(e.id): 1 for e in envs}
        assert (one.handled + two.handled, one.duplicates + two.duplicates) == (300, 300)
        stalls = [r.getMessage() for r in caplog.records if "applying them apart" in r.getMessage()]
        assert stalls == [], stalls
