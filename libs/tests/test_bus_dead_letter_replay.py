"""Replaying dead letters on the real PostgreSQL and NATS (`propdesk.bus.dead_letters`,
`python -m propdesk.bus.cli dead-letters`): once its cause is fixed, a dead-lettered event
is applied by the consumer that gave up on it, and by no other consumer a second time; the
row is marked replayed and counted open no more; an unreadable message that comes back is
recorded once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from uuid import uuid4

import orjson
import pytest

from propdesk.bus import Consumer, metrics
from propdesk.bus.consumer import ConsumerRunner
from propdesk.bus.dead_letters import list_dead_letters, replay_dead_letters
from propdesk.bus.outbox import Outbox
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.bus_schema import SCHEMA, applied_recorder, count_applied, note_event
from propdesk.testing.fetched_message import FetchedMessage
from propdesk.testing.waiting import eventually


@pytest.fixture
async def sessions(settings: Settings, bus_schema: str):
    engine = create_engine(settings)
    yield session_factory(engine)
    await engine.dispose()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "propdesk.bus.cli", "dead-letters", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )


async def test_a_replayed_dead_letter_is_applied_once_by_the_consumer_that_gave_up_on_it(
    settings: Settings, sessions
):
    fast = settings.model_copy(
        update={"consumer_backoff_seconds": [0.05], "consumer_max_deliver": 2}
    )
    tag = uuid4().hex[:8]
    fragile, steady, tenant = f"t-fragile-{tag}", f"t-steady-{tag}", uuid4()
    broken = {"yes": True}
    record_fragile, record_steady = applied_recorder(fragile), applied_recorder(steady)

    async def fragile_handler(session, env) -> None:
        if broken["yes"]:
            raise ValueError("the cause, not yet fixed")
        await record_fragile(session, env)

    subjects = [f"pd.bustest.*.{tenant}.>"]
    nc = await connect(fast, "dead-letter-replay-test")
    await ensure_stream(nc.jetstream(), fast)
    stop = asyncio.Event()
    relay = Relay(SCHEMA, fast, nc)
    tasks = [
        asyncio.create_task(relay.run(stop)),
        asyncio.create_task(
            ConsumerRunner(
                Consumer(fragile, SCHEMA, subjects, fragile_handler), fast, sessions, nc
            ).run(stop)
        ),
        asyncio.create_task(
            ConsumerRunner(
                Consumer(steady, SCHEMA, subjects, record_steady), fast, sessions, nc
            ).run(stop)
        ),
    ]
    event = note_event(tenant, None)
    try:
        async with tenant_transaction(sessions, TenantContext.for_tenant(tenant)) as s:
            await Outbox(SCHEMA).add(s, event)
        [dead] = await eventually(
            lambda: list_dead_letters(fast, SCHEMA, consumer=fragile), "the dead letter"
        )
        assert (dead.event_id, dead.tenant_id, dead.replayed_at) == (event.id, tenant, None)
        assert "the cause, not yet fixed" in dead.error
        await eventually(lambda: count_applied(fast, steady), "the steady consumer applied it")
        await relay.refresh_dead_letters()
        gauge = metrics.DEAD_LETTERS_OPEN.labels(SCHEMA)
        assert gauge._value.get() >= 1

        # Narrowed to another consumer, nothing of this one is replayed.
        nothing = await replay_dead_letters(fast, nc.jetstream(), SCHEMA, consumer=steady)
        assert nothing.replayed == [] and nothing.too_old == []

        broken["yes"] = False
        [replayed] = (
            await replay_dead_letters(fast, nc.jetstream(), SCHEMA, ids=[dead.id])
        ).replayed
        assert replayed.dead_letter_ids == (dead.id,)
        assert replayed.message_id == f"replay:{SCHEMA}:{dead.id}"
        assert replayed.event_id == event.id and not replayed.duplicate

        got = await eventually(lambda: count_applied(fast, fragile), "the replayed event applied")
        assert got == {str(event.id): 1}
        await asyncio.sleep(0.5)  # room for a wrong second application by either consumer
        assert await count_applied(fast, fragile) == {str(event.id): 1}
        assert await count_applied(fast, steady) == {str(event.id): 1}

        assert await list_dead_letters(fast, SCHEMA, consumer=fragile) == []
        [kept] = await list_dead_letters(fast, SCHEMA, consumer=fragile, include_replayed=True)
        assert kept.id == dead.id and kept.replayed_at is not None
        # Replayed once: a second replay finds nothing open.
        again = await replay_dead_letters(fast, nc.jetstream(), SCHEMA, ids=[dead.id])
        assert again.replayed == []
        open_now = await admin_fetch(
            fast, f"SELECT count(*) AS n FROM {SCHEMA}.dead_letters WHERE replayed_at IS NULL"
        )
        await relay.refresh_dead_letters()
        assert gauge._value.get() == open_now[0]["n"]
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        await nc.close()


async def test_the_command_lists_and_replays_and_refuses_an_unspecified_replay(
    settings: Settings, sessions
):
    name, tenant = f"t-dlcli-{uuid4().hex[:8]}", uuid4()

    async def hopeless(session, env) -> None:
        raise ValueError("never works")

    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], hopeless), settings, sessions
    )
    event = note_event(tenant, None)
    msg = FetchedMessage(event, deliveries=settings.consumer_max_deliver)
    await runner.handle_batch([msg])
    assert msg.outcome == ["term"]

    listed = _cli("list", SCHEMA, "--consumer", name, "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = orjson.loads(listed.stdout)
    assert (row["event_id"], row["tenant_id"], row["replayed_at"]) == (
        str(event.id),
        str(tenant),
        None,
    )
    text_listing = _cli("list", SCHEMA, "--consumer", name)
    assert f"event {event.id}" in text_listing.stdout and "open" in text_listing.stdout

    unspecified = _cli("replay", SCHEMA)
    assert unspecified.returncode == 2 and "--all-open" in unspecified.stderr
    assert _cli("list", "intake; DROP TABLE x").returncode == 2
    unknown = _cli("list", "no_such_schema")
    assert unknown.returncode == 3 and "'no_such_schema' has no bus tables" in unknown.stderr

    replayed = _cli("replay", SCHEMA, "--consumer", name)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed 1 dead letters of {SCHEMA} in 1 messages" in replayed.stdout
    assert orjson.loads(_cli("list", SCHEMA, "--consumer", name, "--json").stdout) == []
    [after] = orjson.loads(_cli("list", SCHEMA, "--consumer", name, "--all", "--json").stdout)
    assert after["id"] == row["id"] and after["replayed_at"] is not None


async def test_an_unreadable_message_that_comes_back_keeps_one_dead_letter(
    settings: Settings, sessions
):
    """The relay's `Nats-Msg-Id` names the event even when its data cannot be read: a
    message whose terminate was lost, delivered again, finds its open dead letter."""
    name = f"t-unreadable-{uuid4().hex[:8]}"

    async def never_called(session, env) -> None:
        raise AssertionError("an unreadable message reached the handler")

    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{name}.>"], never_called), settings, sessions
    )
    event_id = uuid4()
    carrier = note_event(uuid4(), None)
    dead_before = metrics.CONSUMER_DEAD_LETTERED.labels(name)._value.get()
    for delivery in (1, 2):
        msg = FetchedMessage(
            carrier,
            deliveries=delivery,
            raw=b'{"not": "an envelope"',
            headers={"Nats-Msg-Id": str(event_id)},
        )
        await runner.handle_batch([msg])
        assert msg.outcome == ["term"]
    rows = await admin_fetch(
        settings,
        f"SELECT event_id, tenant_id, error FROM {SCHEMA}.dead_letters WHERE consumer = $1",
        name,
    )
    assert [(r["event_id"], r["tenant_id"]) for r in rows] == [(event_id, None)]
    assert rows[0]["error"].startswith("unparseable envelope")
    # Counted as it was committed: once.
    assert runner.dead_lettered == 1
    assert metrics.CONSUMER_DEAD_LETTERED.labels(name)._value.get() == dead_before + 1


async def test_a_dead_letter_older_than_the_inbox_keeps_events_is_replayed_only_if_allowed(
    settings: Settings, sessions
):
    """The other consumers' inbox rows of its event may be pruned by then: replaying it
    could apply the event twice elsewhere, so it stays open unless the operator insists."""
    name, tenant = f"t-dlold-{uuid4().hex[:8]}", uuid4()

    async def hopeless(session, env) -> None:
        raise ValueError("never works")

    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], hopeless), settings, sessions
    )
    old, recent = note_event(tenant, None), note_event(tenant, None)
    for env in (old, recent):
        await runner.handle_batch([FetchedMessage(env, deliveries=settings.consumer_max_deliver)])
    days = settings.inbox_retention_days - 0.5  # within the margin of a day
    await admin_fetch(
        settings,
        f"UPDATE {SCHEMA}.dead_letters SET created_at = now() - make_interval(secs => $2)"
        " WHERE consumer = $1 AND event_id = $3 RETURNING id",
        name,
        days * 86400,
        old.id,
    )
    [old_row] = [
        r for r in await list_dead_letters(settings, SCHEMA, consumer=name) if r.event_id == old.id
    ]
    nc = await connect(settings, "dead-letter-old-test")
    try:
        report = await replay_dead_letters(settings, nc.jetstream(), SCHEMA, consumer=name)
        assert [r.event_id for r in report.replayed] == [recent.id]
        assert report.too_old == [old_row.id]
        assert [r.id for r in await list_dead_letters(settings, SCHEMA, consumer=name)] == [
            old_row.id
        ]
        refused = _cli("replay", SCHEMA, "--id", str(old_row.id))
        assert refused.returncode == 1 and "--allow-old" in refused.stderr
        report = await replay_dead_letters(
            settings, nc.jetstream(), SCHEMA, ids=[old_row.id], allow_old=True
        )
        assert [r.event_id for r in report.replayed] == [old.id] and report.too_old == []
        assert await list_dead_letters(settings, SCHEMA, consumer=name) == []
    finally:
        await nc.close()
