"""Outbox → relay → JetStream → consumer with inbox, on the real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import text

from propdesk.bus import Consumer, Outbox, PermanentError
from propdesk.bus.consumer import ConsumerRunner
from propdesk.bus.relay import Relay, republish
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.tenancy import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.bus_schema import SCHEMA, applied_recorder, count_applied, note_event
from propdesk.testing.fetched_message import FetchedMessage
from propdesk.testing.waiting import eventually


@pytest.fixture
async def bus(settings: Settings, bus_schema: str):
    fast = settings.model_copy(update={"consumer_backoff_seconds": [0.05, 0.05, 0.05]})
    engine = create_engine(fast)
    nc = await connect(fast, "bus-test")
    await ensure_stream(nc.jetstream(), fast)
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []

    class Bus:
        settings = fast
        sessions = session_factory(engine)
        outbox = Outbox(SCHEMA)
        nats = nc

        def start_relay(self) -> Relay:
            relay = Relay(SCHEMA, fast, nc)
            tasks.append(asyncio.create_task(relay.run(stop)))
            return relay

        def start_consumer(self, name: str, tenant, handler=None) -> ConsumerRunner:
            # Filtered to the test's own tenant: a new durable replays the stream's history.
            c = Consumer(
                name=name,
                schema=SCHEMA,
                subjects=[f"pd.bustest.*.{tenant}.>"],
                handler=handler or applied_recorder(name),
            )
            runner = ConsumerRunner(c, fast, self.sessions, nc)
            tasks.append(asyncio.create_task(runner.run(stop)))
            return runner

        async def write(self, tenant, project=None, n=1):
            envs = [note_event(tenant, project) for _ in range(n)]
            async with tenant_transaction(self.sessions, TenantContext.for_tenant(tenant)) as s:
                await self.outbox.add(s, *envs)
            return envs

    yield Bus()
    stop.set()
    for t in tasks:
        with contextlib.suppress(Exception):
            await t
    await nc.close()
    await engine.dispose()


async def test_events_flow_once_through_relay_and_consumer(bus, settings):
    name, tenant = f"t-flow-{uuid4().hex[:8]}", uuid4()
    bus.start_consumer(name, tenant)
    bus.start_relay()
    envs = await bus.write(tenant, uuid4(), n=20)
    want = {str(e.id) for e in envs}

    async def all_applied():
        got = await count_applied(settings, name)
        return want <= got.keys() and got

    got = await eventually(all_applied, "every event applied")
    assert all(got[e] == 1 for e in want)


async def test_outbox_row_is_rolled_back_with_the_state_change(bus, settings):
    tenant = uuid4()
    env = note_event(tenant, None)
    with pytest.raises(RuntimeError):
        async with tenant_transaction(bus.sessions, TenantContext.for_tenant(tenant)) as s:
            await bus.outbox.add(s, env)
            raise RuntimeError("the state change failed")
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        assert (
            await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox WHERE event_id = $1", env.id)
            == 0
        )
    finally:
        await conn.close()


async def test_redelivered_and_republished_events_apply_once(bus, settings):
    name, tenant = f"t-dup-{uuid4().hex[:8]}", uuid4()
    bus.start_consumer(name, tenant)
    bus.start_relay()
    envs = await bus.write(tenant, None, n=3)
    want = {str(e.id) for e in envs}
    await eventually(lambda: _has(settings, name, want), "every event applied")
    # Same event published again under another message id (beyond the dedup window, as
    # after an operator's re-publish): the inbox must absorb it.
    nc = await connect(bus.settings, "dup-publisher")
    try:
        for e in envs:
            await nc.jetstream().publish(
                e.subject, e.model_dump_json().encode(), headers={"Nats-Msg-Id": f"again-{e.id}"}
            )
    finally:
        await nc.close()
    # And the operator's republish command re-queues the rows themselves.
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    assert await republish(settings, SCHEMA, now - timedelta(minutes=5), now + timedelta(1)) >= 3
    await asyncio.sleep(1.0)
    got = await count_applied(settings, name)
    assert {e: got[e] for e in want} == dict.fromkeys(want, 1)


async def _has(settings, name, want):
    got = await count_applied(settings, name)
    return want <= got.keys()


async def test_transient_failure_is_retried_then_applied_once(bus, settings):
    name = f"t-retry-{uuid4().hex[:8]}"
    record = applied_recorder(name)
    failures = {"left": 2}

    async def flaky(session, env):
        await record(session, env)  # written, then rolled back with the failure
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("downstream hiccup")

    tenant = uuid4()
    runner = bus.start_consumer(name, tenant, flaky)
    bus.start_relay()
    (env,) = await bus.write(tenant, None)
    await eventually(lambda: _has(settings, name, {str(env.id)}), "the event applied after retries")
    await asyncio.sleep(0.3)
    assert (await count_applied(settings, name))[str(env.id)] == 1
    assert runner.dead_lettered == 0


async def test_permanent_failure_and_exhausted_retries_are_dead_lettered(bus, settings):
    name = f"t-dead-{uuid4().hex[:8]}"

    async def always_bad(session, env):
        if env.payload["body"] == "poison":
            raise PermanentError("note body is poison")
        raise ValueError("never works")

    tenant = uuid4()
    runner = bus.start_consumer(name, tenant, always_bad)
    bus.start_relay()
    poison = note_event(tenant, None, body="poison")
    async with tenant_transaction(bus.sessions, TenantContext.for_tenant(tenant)) as s:
        await bus.outbox.add(s, poison)
    (hopeless,) = await bus.write(tenant, None)

    async def dead_rows():
        rows = await admin_fetch(
            settings,
            f"SELECT event_id, deliveries, error FROM {SCHEMA}.dead_letters WHERE consumer = $1",
            name,
        )
        return {r["event_id"]: r for r in rows} if len(rows) == 2 else None

    rows = await eventually(dead_rows, "both messages dead-lettered", within=20)
    assert rows[poison.id]["deliveries"] == 1
    assert "poison" in rows[poison.id]["error"]
    assert rows[hopeless.id]["deliveries"] == runner.max_deliver
    # The tenant can read its own dead letters; the app cannot read them without context.
    async with tenant_transaction(bus.sessions, TenantContext.for_tenant(tenant)) as s:
        mine = (
            await s.execute(
                text(f"SELECT count(*) FROM {SCHEMA}.dead_letters WHERE consumer = :c"),
                {"c": name},
            )
        ).scalar_one()
    assert mine == 2


async def test_prune_deletes_only_published_rows_past_retention(bus, settings):
    from propdesk.bus.retention import prune_published

    tenant = uuid4()
    old_published, recent_published, unpublished = await bus.write(tenant, None, n=3)
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute(
            f"UPDATE {SCHEMA}.outbox SET published_at = now() - interval '30 days'"
            " WHERE event_id = $1",
            old_published.id,
        )
        await conn.execute(
            f"UPDATE {SCHEMA}.outbox SET published_at = now() WHERE event_id = $1",
            recent_published.id,
        )
        await prune_published(settings.model_copy(update={"outbox_retention_days": 14}), SCHEMA)
        left = {
            r["event_id"]
            for r in await conn.fetch(
                f"SELECT event_id FROM {SCHEMA}.outbox WHERE tenant_id = $1", tenant
            )
        }
    finally:
        await conn.close()
    assert left == {recent_published.id, unpublished.id}


async def test_prune_deletes_only_inbox_rows_past_retention_in_batches_as_the_app_role(
    bus, settings
):
    """The inbox was visible to its tenant only and nothing removed what consumers handled
    long ago. The system context (the app role, not the admin) now prunes it, in batches."""
    from propdesk.bus.retention import prune_inbox

    name, tenant = f"t-inbox-prune-{uuid4().hex[:8]}", uuid4()
    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], applied_recorder(name)),
        settings,
        bus.sessions,
    )
    envs = [note_event(tenant, None) for _ in range(7)]
    await runner.handle_batch([FetchedMessage(e) for e in envs])
    old = [e.id for e in envs[:5]]
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute(
            f"UPDATE {SCHEMA}.inbox SET handled_at = now() - interval '46 days'"
            " WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
            name,
            old,
        )
        # Another consumer's old row of another tenant goes too (the job serves them all).
        other = f"{name}-other"
        other_event = uuid4()
        await conn.execute(
            f"INSERT INTO {SCHEMA}.inbox (consumer, event_id, tenant_id, event_type,"
            " handled_at) VALUES ($1, $2, $3, 'bustest.noted', now() - interval '400 days')",
            other,
            other_event,
            uuid4(),
        )
        pruned = await prune_inbox(settings, SCHEMA, batch=2)
        left = {
            r["event_id"]
            for r in await conn.fetch(
                f"SELECT event_id FROM {SCHEMA}.inbox WHERE consumer = ANY($1::text[])",
                [name, other],
            )
        }
    finally:
        await conn.close()
    assert pruned >= 6  # other tests' old rows may go as well
    assert left == {envs[5].id, envs[6].id}


def test_the_inbox_must_outlive_every_redelivery():
    """An outbox row re-published on the last day of its retention stays in the stream for
    its max age: the inbox must outlast both together. A max age of 0 is "for ever"."""
    with pytest.raises(ValueError, match="outbox_retention_days \\+ stream_max_age_days"):
        Settings(inbox_retention_days=31)  # 14 + 30
    with pytest.raises(ValueError, match="outbox_retention_days \\+ stream_max_age_days"):
        Settings(inbox_retention_days=44)
    with pytest.raises(ValueError, match="stream_max_age_days must be above 0"):
        Settings(stream_max_age_days=0, inbox_retention_days=15)
    assert Settings().inbox_retention_days == 45
    assert Settings(inbox_retention_days=15, stream_max_age_days=7, outbox_retention_days=7)


async def test_the_claim_walks_the_unpublished_index_in_order(bus, settings):
    """Thousands of rows published since the last vacuum, statistics taken while they
    waited: the relay's claim must be a plain index scan (which marks their entries dead
    as it passes), not a sequential or bitmap scan (which read them all on every claim)."""
    tenant = uuid4()
    await bus.write(tenant, None, n=2000)
    admin = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        # Statistics taken while they waited, as autovacuum's analyze may have left them.
        await admin.execute(f"ANALYZE {SCHEMA}.outbox")
        await admin.execute(
            f"UPDATE {SCHEMA}.outbox SET published_at = now() WHERE tenant_id = $1", tenant
        )
    finally:
        await admin.close()
    await bus.write(tenant, None, n=2)
    relay = Relay(SCHEMA, bus.settings, bus.nats)
    try:
        pool = await relay._connect_pool()
        async with pool.acquire() as conn, conn.transaction():
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS) {relay._claim}", bus.settings.outbox_batch_size
                )
            )
            again = "\n".join(
                r[0]
                for r in await conn.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS) {relay._claim}", bus.settings.outbox_batch_size
                )
            )
    finally:
        await relay.close()
    assert "Index Scan using outbox_unpublished" in plan, plan
    assert "Bitmap" not in plan and "Seq Scan" not in plan, plan
    hits = [
        int(line.split("shared hit=")[1].split()[0])
        for line in again.splitlines()
        if "shared hit=" in line
    ]
    assert max(hits) < 100, f"the second claim read past the dead entries again:\n{again}"


async def test_the_relay_does_not_plan_its_statements_again_for_every_batch(bus, settings):
    """With `id = ANY($1)` (the marking, once a statement of its own) the planner priced
    its generic plan above a custom plan for the batch at hand and planned it afresh on
    every batch (0.3 ms of planning for 0.07 ms of work). The relay's connections use the
    generic plans: its claim is planned once per connection."""
    tenant = uuid4()
    relay = Relay(SCHEMA, bus.settings, bus.nats)
    try:
        for size in (1, 3, 2, 5, 1, 4, 2, 3):  # past the planner's five custom plans
            await bus.write(tenant, None, n=size)
            while await relay.publish_batch():
                pass
        pool = await relay._connect_pool()
        connections = [await pool.acquire() for _ in range(pool.get_size() or 1)]
        try:
            plans = [
                await conn.fetchrow(
                    "SELECT coalesce(sum(generic_plans), 0) AS generic,"
                    " coalesce(sum(custom_plans), 0) AS custom FROM pg_prepared_statements"
                    " WHERE statement = $1",
                    relay._claim,
                )
                for conn in connections
            ]
        finally:
            for conn in connections:
                await pool.release(conn)
    finally:
        await relay.close()
    assert sum(p["generic"] for p in plans) >= 8, plans
    assert sum(p["custom"] for p in plans) == 0, plans


async def test_a_row_jetstream_refuses_stays_unpublished_and_the_rest_are_published(bus, settings):
    """The claim marks the whole batch published; a row whose publish fails is unmarked
    (with its attempt and error) before the commit, the others stay published."""
    tenant = uuid4()
    good = await bus.write(tenant, None, n=2)
    admin = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        # A subject outside the stream: JetStream has no responder for it.
        await admin.execute(
            f"UPDATE {SCHEMA}.outbox SET subject = 'nostream.' || subject WHERE event_id = $1",
            good[0].id,
        )
    finally:
        await admin.close()
    relay = Relay(SCHEMA, bus.settings, bus.nats)
    try:
        # Whatever else waits in the test schema's outbox, until only refused rows remain.
        while await relay.publish_batch():
            pass
    finally:
        await relay.close()
    rows = await admin_fetch(
        settings,
        f"SELECT event_id, published_at, attempts, last_error FROM {SCHEMA}.outbox"
        " WHERE tenant_id = $1",
        tenant,
    )
    by_event = {r["event_id"]: r for r in rows}
    refused, published = by_event[good[0].id], by_event[good[1].id]
    assert refused["published_at"] is None and refused["attempts"] >= 1, dict(refused)
    assert refused["last_error"], dict(refused)
    assert published["published_at"] is not None and published["attempts"] == 0


async def test_only_the_relays_marks_commit_without_waiting_for_the_flush(bus, settings):
    """The relay's connections commit asynchronously (a mark lost to a crash republishes,
    which the duplicate window and the inbox drop); every other connection, the writers'
    and the consumers', keeps PostgreSQL's synchronous commit."""
    relay = Relay(SCHEMA, bus.settings, bus.nats)
    try:
        pool = await relay._connect_pool()
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
    finally:
        await relay.close()
    async with bus.sessions() as session:
        assert (await session.execute(text("SHOW synchronous_commit"))).scalar_one() == "on"
