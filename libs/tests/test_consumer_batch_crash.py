"""A batching consumer process SIGKILLed after its transaction committed and before it
acked: the restarted process gets the whole batch again and applies none of it twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from propdesk.bus.outbox import Outbox
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext
from propdesk.testing.bus_schema import SCHEMA, count_applied, note_event
from propdesk.testing.waiting import eventually

pytestmark = pytest.mark.faults

# `propdesk.testing.probe_consumer`, with shared transactions and lanes.
PROBE = """
import asyncio, signal, sys
from propdesk.bus.consumer import Consumer, ConsumerRunner
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory
from propdesk.settings import get_settings
from propdesk.testing.bus_schema import SCHEMA, applied_recorder

async def main(name, tenant):
    settings = get_settings()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    engine = create_engine(settings)
    nc = await connect(settings, name=f"probe-{name}")
    await ensure_stream(nc.jetstream(), settings)
    consumer = Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], applied_recorder(name),
                        per_transaction=64, lanes=2, linger_seconds=0.5)
    runner = ConsumerRunner(consumer, settings, session_factory(engine), nc)
    try:
        await runner.run(stop)
    finally:
        print(f"handled={runner.handled} duplicates={runner.duplicates}", flush=True)
        await nc.close()
        await engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_batching_consumer_killed_before_ack_applies_each_event_once(
    settings: Settings, bus_schema: str, tmp_path: Path
):
    tenant = uuid4()
    name = f"kill-batch-{uuid4().hex[:8]}"
    env = {
        "PROPDESK_FAULT": "consumer.before_ack",
        "PROPDESK_FAULT_MARKER": str(tmp_path / "consumer-crashed"),
        "PROPDESK_CONSUMER_ACK_WAIT_SECONDS": "2",
    }
    engine = create_engine(settings)
    envs = [note_event(tenant, None) for _ in range(8)]
    try:
        async with tenant_transaction(
            session_factory(engine), TenantContext.for_tenant(tenant)
        ) as s:
            await Outbox(SCHEMA).add(s, *envs)
    finally:
        await engine.dispose()
    want = {str(e.id) for e in envs}

    nc = await connect(settings, "batch-crash-relay")
    stop = asyncio.Event()
    relay = asyncio.create_task(Relay(SCHEMA, settings, nc).run(stop))
    try:
        probe = await _spawn("-c", PROBE, name, str(tenant), env=env)
        out, _ = await asyncio.wait_for(probe.communicate(), 30)
        assert probe.returncode == -signal.SIGKILL, out.decode()[-2000:]
        # A whole transaction committed before the kill (several events), none acked.
        first = await count_applied(settings, name)
        assert len(first) >= 2 and set(first.values()) == {1}, first

        probe = await _spawn("-c", PROBE, name, str(tenant), env=env)
        try:

            async def all_applied():
                got = await count_applied(settings, name)
                return got if want <= got.keys() else None

            got = await eventually(all_applied, "every event applied")
            await asyncio.sleep(3)  # past ack_wait: any stray redelivery would have landed
        finally:
            probe.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(probe.communicate(), 15)
        assert got == dict.fromkeys(want, 1)
        assert await count_applied(settings, name) == got
        # The restarted consumer got the killed batch again and skipped it via the inbox.
        assert f"duplicates={len(first)}" in out.decode(), out.decode()[-2000:]
    finally:
        stop.set()
        await relay
        await nc.close()
