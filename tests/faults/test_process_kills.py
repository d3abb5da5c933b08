"""Processes killed with SIGKILL at the worst line: no event lost, none applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from propdesk.bus.consumer import Consumer, ConsumerRunner
from propdesk.bus.outbox import Outbox
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.tenancy import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.bus_schema import (
    SCHEMA,
    applied_recorder,
    count_applied,
    note_event,
)
from propdesk.testing.waiting import eventually

pytestmark = pytest.mark.faults


async def _write(settings: Settings, tenant, n: int):
    engine = create_engine(settings)
    envs = [note_event(tenant, None) for _ in range(n)]
    try:
        async with tenant_transaction(
            session_factory(engine), TenantContext.for_tenant(tenant)
        ) as s:
            await Outbox(SCHEMA).add(s, *envs)
    finally:
        await engine.dispose()
    return envs


async def _unpublished(settings: Settings, ids) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        return await conn.fetchval(
            f"SELECT count(*) FROM {SCHEMA}.outbox WHERE event_id = ANY($1)"
            " AND published_at IS NULL",
            [e.id for e in ids],
        )
    finally:
        await conn.close()


async def _spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_relay_killed_after_publish_before_marking_delivers_each_event_once(
    settings: Settings, bus_schema: str, tmp_path: Path
):
    tenant = uuid4()
    name = f"kill-relay-{uuid4().hex[:8]}"
    envs = await _write(settings, tenant, 25)
    want = {str(e.id) for e in envs}

    # A consumer already waiting for the events.
    engine = create_engine(settings)
    nc = await connect(settings, "fault-test")
    await ensure_stream(nc.jetstream(), settings)
    stop = asyncio.Event()
    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], applied_recorder(name)),
        settings,
        session_factory(engine),
        nc,
    )
    consumer = asyncio.create_task(runner.run(stop))
    try:
        marker = tmp_path / "relay-crashed"
        crash_env = {"PROPDESK_FAULT": "relay.after_publish", "PROPDESK_FAULT_MARKER": str(marker)}
        relay = await _spawn("-m", "propdesk.bus.cli", "relay", SCHEMA, env=crash_env)
        out, _ = await asyncio.wait_for(relay.communicate(), 30)
        assert relay.returncode == -signal.SIGKILL, out.decode()[-2000:]
        assert marker.exists()
        # JetStream has the batch, the outbox still says unpublished: the dangerous window.
        assert await _unpublished(settings, envs) == len(envs)

        relay = await _spawn("-m", "propdesk.bus.cli", "relay", SCHEMA, env=crash_env)
        try:
            await eventually(
                lambda: _unpublished_is_zero(settings, envs), "outbox rows marked published"
            )
            got = await eventually(lambda: _applied(settings, name, want), "every event applied")
        finally:
            relay.send_signal(signal.SIGTERM)
            await asyncio.wait_for(relay.wait(), 15)
        assert {e: got[e] for e in want} == dict.fromkeys(want, 1)
        # The re-publish after the crash was dropped by JetStream's duplicate window.
        info = await nc.jetstream().stream_info(
            settings.stream_name, subjects_filter=f"pd.bustest.*.{tenant}.>"
        )
        assert sum((info.state.subjects or {}).values()) == len(envs)
    finally:
        stop.set()
        await consumer
        await nc.close()
        await engine.dispose()


async def _unpublished_is_zero(settings, envs) -> bool:
    return await _unpublished(settings, envs) == 0


async def _applied(settings, name, want):
    got = await count_applied(settings, name)
    return got if want <= got.keys() else None


@pytest.mark.parametrize(
    ("batching", "events"),
    [
        pytest.param((), 5, id="one event per transaction"),
        # Shared transactions, lanes and a linger: the kill lands after a whole batch.
        pytest.param(("64", "2", "0.5"), 8, id="batched"),
    ],
)
async def test_consumer_killed_after_write_before_ack_applies_event_once(
    settings: Settings, bus_schema: str, tmp_path: Path, batching: tuple[str, ...], events: int
):
    tenant = uuid4()
    name = f"kill-consumer-{uuid4().hex[:8]}"
    marker = tmp_path / "consumer-crashed"
    env = {
        "PROPDESK_FAULT": "consumer.before_ack",
        "PROPDESK_FAULT_MARKER": str(marker),
        # Redelivery of the unacked message happens after ack_wait.
        "PROPDESK_CONSUMER_ACK_WAIT_SECONDS": "2",
    }
    envs = await _write(settings, tenant, events)
    want = {str(e.id) for e in envs}
    probe_args = ("-m", "propdesk.testing.probe_consumer", name, str(tenant), *batching)

    nc = await connect(settings, "fault-test-relay")
    stop = asyncio.Event()
    relay = asyncio.create_task(Relay(SCHEMA, settings, nc).run(stop))
    try:
        probe = await _spawn(*probe_args, env=env)
        out, _ = await asyncio.wait_for(probe.communicate(), 30)
        assert probe.returncode == -signal.SIGKILL, out.decode()[-2000:]
        # The first transaction's writes committed before the kill (one event, or a whole
        # batch of several); none was acked.
        first = await count_applied(settings, name)
        assert set(first.values()) == {1}
        if batching:
            assert len(first) >= 2, first
        else:
            assert len(first) == 1, first

        probe = await _spawn(*probe_args, env=env)
        try:
            got = await eventually(lambda: _applied(settings, name, want), "every event applied")
            await asyncio.sleep(3)  # past ack_wait: any stray redelivery would have landed
        finally:
            probe.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(probe.communicate(), 15)
        assert {e: got[e] for e in want} == dict.fromkeys(want, 1)
        assert (await count_applied(settings, name)) == got
        # The restarted consumer saw the killed deliveries again and skipped them via the
        # inbox.
        assert f"duplicates={len(first)}" in out.decode(), out.decode()[-2000:]
    finally:
        stop.set()
        await relay
        await nc.close()


@dataclass
class _FailingEvent:
    """One event in the outbox whose handler always fails, a probe consumer that gives up
    after its second delivery and dies at `fault`, and how to read its dead letters."""

    event: Any
    consumer: str
    env: dict[str, str]
    probe_args: tuple[str, ...]
    marker: Path
    dead_letters: Callable[[], Awaitable[list]]


async def _failing_event(settings: Settings, tmp_path: Path, fault: str) -> _FailingEvent:
    tenant = uuid4()
    name = f"kill-dead-{uuid4().hex[:8]}"
    marker = tmp_path / "consumer-crashed"
    env = {
        "PROPDESK_FAULT": fault,
        "PROPDESK_FAULT_MARKER": str(marker),
        "PROPDESK_CONSUMER_MAX_DELIVER": "2",
        "PROPDESK_CONSUMER_BACKOFF_SECONDS": "[0.05]",
        # The killed delivery comes back after ack_wait.
        "PROPDESK_CONSUMER_ACK_WAIT_SECONDS": "2",
    }
    (event,) = await _write(settings, tenant, 1)

    async def dead_letters() -> list:
        return await admin_fetch(
            settings,
            f"SELECT event_id, deliveries FROM {SCHEMA}.dead_letters WHERE consumer = $1",
            name,
        )

    probe_args = ("-m", "propdesk.testing.probe_consumer", name, str(tenant), "--failing")
    return _FailingEvent(event, name, env, probe_args, marker, dead_letters)


async def test_consumer_killed_before_the_dead_letter_commits_loses_nothing(
    settings: Settings, bus_schema: str, tmp_path: Path
):
    """The last allowed delivery fails and the process dies before its dead letter commits:
    JetStream must deliver the message again (the server never gives up on its own), and
    the restarted consumer dead-letters it, once."""
    case = await _failing_event(settings, tmp_path, "consumer.before_dead_letter")
    event, env, probe_args, dead_letters, marker = (
        case.event,
        case.env,
        case.probe_args,
        case.dead_letters,
        case.marker,
    )

    nc = await connect(settings, "fault-test-relay")
    stop = asyncio.Event()
    relay = asyncio.create_task(Relay(SCHEMA, settings, nc).run(stop))
    try:
        probe = await _spawn(*probe_args, env=env)
        out, _ = await asyncio.wait_for(probe.communicate(), 30)
        assert probe.returncode == -signal.SIGKILL, out.decode()[-2000:]
        assert marker.exists()
        assert await dead_letters() == []  # killed before the dead letter committed

        probe = await _spawn(*probe_args, env=env)
        try:
            rows = await eventually(dead_letters, "the event dead-lettered after the restart")
            await asyncio.sleep(3)  # past ack_wait: a redelivery would dead-letter it again
        finally:
            probe.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(probe.communicate(), 15)
        rows = await dead_letters()
        assert [r["event_id"] for r in rows] == [event.id], rows
        # Delivered once more than the runner's limit: the killed delivery came back.
        assert rows[0]["deliveries"] == 3, rows
        assert "dead_lettered=1" in out.decode(), out.decode()[-2000:]
    finally:
        stop.set()
        await relay
        await nc.close()


async def test_consumer_killed_after_the_dead_letter_commits_records_it_once(
    settings: Settings, bus_schema: str, tmp_path: Path
):
    """The last allowed delivery fails, its dead letter commits, and the process dies before
    the terminate (as a lost terminate would leave it): JetStream delivers the message again
    after ack_wait, the handler fails again, and the restarted consumer must find the dead
    letter there and terminate the message without writing a second one."""
    case = await _failing_event(settings, tmp_path, "consumer.after_dead_letter")
    event, env, probe_args, dead_letters, marker = (
        case.event,
        case.env,
        case.probe_args,
        case.dead_letters,
        case.marker,
    )
    name = case.consumer

    nc = await connect(settings, "fault-test-relay")
    js = nc.jetstream()
    stop = asyncio.Event()
    relay = asyncio.create_task(Relay(SCHEMA, settings, nc).run(stop))

    async def settled() -> bool:
        info = await js.consumer_info(settings.stream_name, name)
        return info.num_ack_pending == 0 and info.num_pending == 0

    try:
        probe = await _spawn(*probe_args, env=env)
        out, _ = await asyncio.wait_for(probe.communicate(), 30)
        assert probe.returncode == -signal.SIGKILL, out.decode()[-2000:]
        assert marker.exists()
        # Killed after the dead letter committed, before the terminate.
        rows = await dead_letters()
        assert [(r["event_id"], r["deliveries"]) for r in rows] == [(event.id, 2)], rows
        assert not await settled()  # JetStream still waits for the killed delivery

        probe = await _spawn(*probe_args, env=env)
        try:
            # Redelivered after ack_wait, failed again, terminated this time.
            await eventually(settled, "the message terminated after the restart")
        finally:
            probe.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(probe.communicate(), 15)
        text = out.decode()
        rows = await dead_letters()
        # One dead letter: the first, of delivery 2; delivery 3 found it and added none.
        assert [(r["event_id"], r["deliveries"]) for r in rows] == [(event.id, 2)], rows
        assert "was already dead-lettered" in text, text[-2000:]
        # This process terminated it without a row of its own: it counts no dead letter
        # (the killed one had committed and counted it).
        assert "dead_lettered=0" in text, text[-2000:]
    finally:
        stop.set()
        await relay
        await nc.close()
