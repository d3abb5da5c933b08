"""NATS stops while writes go on: writes succeed, events wait in the outbox, then flow."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from propdesk.bus.consumer import Consumer, ConsumerRunner
from propdesk.bus.outbox import Outbox
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.devstack.nats import NatsServer
from propdesk.devstack.ports import free_port
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.tenancy import TenantContext
from propdesk.testing.bus_schema import SCHEMA, applied_recorder, count_applied, note_event
from propdesk.testing.waiting import eventually

pytestmark = pytest.mark.faults


async def test_writes_continue_while_nats_is_down_and_events_flow_when_it_returns(
    settings: Settings, bus_schema: str, tmp_path: Path
):
    server = NatsServer(tmp_path, free_port(), server_name="outage-test")
    await asyncio.to_thread(server.start)
    own = settings.model_copy(update={"nats_url": server.url})
    engine = create_engine(own)
    sessions = session_factory(engine)
    tenant, name = uuid4(), f"outage-{uuid4().hex[:8]}"
    ctx = TenantContext.for_tenant(tenant)
    outbox = Outbox(SCHEMA)

    async def write(n: int):
        envs = [note_event(tenant, None) for _ in range(n)]
        async with tenant_transaction(sessions, ctx) as s:
            await outbox.add(s, *envs)
        return envs

    async def unpublished() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(own.database_url))
        try:
            return await conn.fetchval(
                f"SELECT count(*) FROM {SCHEMA}.outbox WHERE tenant_id = $1"
                " AND published_at IS NULL",
                tenant,
            )
        finally:
            await conn.close()

    async def applied(want):
        got = await count_applied(own, name)
        return got if want <= got.keys() else None

    relay_nc = await connect(own, "outage-relay")
    consumer_nc = await connect(own, "outage-consumer")
    await ensure_stream(relay_nc.jetstream(), own)
    stop = asyncio.Event()
    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], applied_recorder(name)),
        own,
        sessions,
        consumer_nc,
    )
    tasks = [
        asyncio.create_task(Relay(SCHEMA, own, relay_nc).run(stop)),
        asyncio.create_task(runner.run(stop)),
    ]
    try:
        before = await write(5)
        await eventually(
            lambda: applied({str(e.id) for e in before}), "events written before the outage applied"
        )

        await asyncio.to_thread(server.stop)
        during = []
        for _ in range(10):  # writes go on, each committing on its own
            during += await write(2)
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert await unpublished() == len(during)

        await asyncio.to_thread(server.start)  # same port, same store
        everything = {str(e.id) for e in before + during}
        got = await eventually(
            lambda: applied(everything), "every event applied after NATS returned", within=40
        )
        assert await unpublished() == 0
        assert {e: got[e] for e in everything} == dict.fromkeys(everything, 1)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await relay_nc.close()
        await consumer_nc.close()
        await engine.dispose()
        await asyncio.to_thread(server.stop)
