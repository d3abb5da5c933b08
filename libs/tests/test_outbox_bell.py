"""The outbox bell on the real PostgreSQL and NATS: a service process's writers wake its
relay after commit and send no NOTIFY; other writers still notify through the trigger."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import uuid4

import asyncpg
import pytest

from propdesk.bus import Outbox, bell
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.tenancy import TenantContext
from propdesk.testing.bus_schema import SCHEMA, note_event
from propdesk.testing.waiting import eventually


@pytest.fixture
async def notifications(settings: Settings, bus_schema: str):
    """Every NOTIFY on the schema's outbox channel, as another process would hear it."""
    heard: list[str] = []
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    await conn.add_listener(f"{SCHEMA}_outbox", lambda *args: heard.append(args[2]))
    yield heard
    await conn.close()


def _sessions(settings: Settings, *, local: bool):
    server_settings = bell.local_settings() if local else {}
    engine = create_engine(settings, connect_args={"server_settings": server_settings})
    return engine, session_factory(engine)


async def _write(sessions, tenant, *, fail: bool = False) -> None:
    async with tenant_transaction(sessions, TenantContext.for_tenant(tenant)) as s:
        await Outbox(SCHEMA).add(s, note_event(tenant, uuid4()))
        if fail:
            raise RuntimeError("rolled back")


async def test_a_local_writer_rings_after_commit_and_sends_no_notify(settings, notifications):
    engine, sessions = _sessions(settings, local=True)
    wake = asyncio.Event()
    bell.attach(SCHEMA, wake)
    try:
        with pytest.raises(RuntimeError):
            await _write(sessions, uuid4(), fail=True)
        assert not wake.is_set(), "a rolled-back transaction must not ring"
        await _write(sessions, uuid4())
        assert wake.is_set(), "the commit rings the relay of this process"
        await asyncio.sleep(0.3)
        assert notifications == [], "the trigger must not notify for a local writer"
    finally:
        bell.detach(SCHEMA, wake)
        await engine.dispose()


async def test_a_writer_of_another_process_still_notifies(settings, notifications):
    engine, sessions = _sessions(settings, local=False)
    try:
        await _write(sessions, uuid4())

        async def heard() -> bool:
            return len(notifications) == 1

        await eventually(heard, "the trigger's NOTIFY", within=5)
    finally:
        await engine.dispose()


async def test_the_relay_publishes_a_local_commit_without_waiting_for_its_poll(
    settings, bus_schema
):
    slow_poll = settings.model_copy(update={"outbox_poll_interval_seconds": 60.0})
    engine, sessions = _sessions(slow_poll, local=True)
    nc = await connect(slow_poll, "bell-test")
    await ensure_stream(nc.jetstream(), slow_poll)
    stop = asyncio.Event()
    relay = Relay(SCHEMA, slow_poll, nc)
    task = asyncio.create_task(relay.run(stop))
    try:
        # The relay's first claim (and its listener's catch-up) happen at start: wait
        # until it idles on the 60 s poll before writing.
        await asyncio.sleep(0.5)
        before = relay.published_total
        await _write(sessions, uuid4())

        async def published() -> bool:
            return relay.published_total == before + 1

        # Within 2 s, where the poll would take 60: the commit's ring woke the relay.
        await eventually(published, "the relay publishing the committed row", within=2)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        await nc.close()
        await engine.dispose()
