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
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import orjson
import pytest

from propdesk.bus import Consumer, PermanentError, metrics
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


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "propdesk.bus.cli", "dead-letters", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
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
    assert _cli("list", SCHEMA, "--limit", "0").returncode == 2
    # It waited for NATS for ever.
    unreachable = _cli(
        "replay", SCHEMA, "--all-open", PROPDESK_NATS_URL="nats://someone:secret@127.0.0.1:1"
    )
    assert unreachable.returncode == 3, unreachable.stderr
    assert unreachable.stderr.startswith("python -m propdesk.bus.cli: NATS at nats://127.0.0.1:1")
    assert "secret" not in unreachable.stderr and "Traceback" not in unreachable.stderr
    unknown = _cli("list", "no_such_schema")
    assert unknown.returncode == 3 and "'no_such_schema' has no bus tables" in unknown.stderr

    replayed = _cli("replay", SCHEMA, "--consumer", name)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed 1 dead letters of {SCHEMA} in 1 messages" in replayed.stdout
    assert orjson.loads(_cli("list", SCHEMA, "--consumer", name, "--json").stdout) == []
    [after] = orjson.loads(_cli("list", SCHEMA, "--consumer", name, "--all", "--json").stdout)
    assert after["id"] == row["id"] and after["replayed_at"] is not None


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda event_id: {"Nats-Msg-Id": str(event_id)}, id="as the relay sent it"),
        pytest.param(
            lambda event_id: {"Nats-Msg-Id": "replay:intake:7", "Propdesk-Event-Id": str(event_id)},
            id="as a replay sent it",
        ),
    ],
)
async def test_an_unreadable_message_that_comes_back_keeps_one_dead_letter(
    settings: Settings, sessions, headers
):
    """The relay's `Nats-Msg-Id` (a replay's `Propdesk-Event-Id`) names the event even when
    its data cannot be read: a message whose terminate was lost, delivered again, finds its
    open dead letter."""
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
            headers=headers(event_id),
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


async def test_an_event_too_old_to_be_remembered_is_replayed_only_if_allowed(
    settings: Settings, sessions
):
    """The other consumers skip a replayed event only while their inbox rows of it are
    kept, and the replayed copy stays in the stream for its max age: an event older than
    the inbox retention less the stream's max age (and a day) stays open unless the
    operator insists. Its age is the event's (`occurred_at`), not the dead letter's: a
    consumer far behind dead-letters old events with a fresh `created_at`."""
    from propdesk.bus.dead_letters import replay_age_limit_days

    name, tenant = f"t-dlold-{uuid4().hex[:8]}", uuid4()

    async def hopeless(session, env) -> None:
        raise ValueError("never works")

    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], hopeless), settings, sessions
    )
    limit = replay_age_limit_days(settings)
    assert 0 < limit < settings.inbox_retention_days - settings.stream_max_age_days
    now = datetime.now(UTC)
    late = note_event(tenant, None).model_copy(  # happened long ago, dead-lettered now
        update={"occurred_at": now - timedelta(days=limit + 0.5)}
    )
    recent = note_event(tenant, None).model_copy(
        update={"occurred_at": now - timedelta(days=limit - 0.5)}
    )
    aged = note_event(tenant, None)  # its dead letter, not its envelope, is made old below
    for env in (late, recent, aged):
        await runner.handle_batch([FetchedMessage(env, deliveries=settings.consumer_max_deliver)])
    await admin_fetch(
        settings,
        f"UPDATE {SCHEMA}.dead_letters SET created_at = now() - make_interval(secs => $2)"
        " WHERE consumer = $1 AND event_id = $3 RETURNING id",
        name,
        (limit + 0.5) * 86400,
        aged.id,
    )
    row_of = {r.event_id: r.id for r in await list_dead_letters(settings, SCHEMA, consumer=name)}
    nc = await connect(settings, "dead-letter-old-test")
    try:
        report = await replay_dead_letters(settings, nc.jetstream(), SCHEMA, consumer=name)
        assert [r.event_id for r in report.replayed] == [recent.id]
        assert report.too_old == [row_of[late.id], row_of[aged.id]]
        still_open = await list_dead_letters(settings, SCHEMA, consumer=name)
        assert [r.id for r in still_open] == [row_of[late.id], row_of[aged.id]]
        refused = _cli("replay", SCHEMA, "--id", str(row_of[late.id]))
        assert refused.returncode == 1 and "--allow-old" in refused.stderr
        report = await replay_dead_letters(
            settings, nc.jetstream(), SCHEMA, ids=[row_of[late.id]], allow_old=True
        )
        assert [r.event_id for r in report.replayed] == [late.id] and report.too_old == []
        # Asked for by id, not open any more: said, not silently "replayed 0".
        again = _cli("replay", SCHEMA, "--id", str(row_of[late.id]))
        assert again.returncode == 1 and "not open" in again.stderr
    finally:
        await nc.close()


async def test_an_event_that_fails_again_while_its_replay_commits_gets_a_new_dead_letter(
    settings: Settings, sessions, monkeypatch
):
    """The replay publishes while its transaction still holds the row open. The consumer,
    failing the replayed message again, met that row in the open-dead-letter index and
    terminated the message as a duplicate; the replay then closed the row, and the event
    was lost with no open dead letter. The consumer now waits for the replay's transaction
    and records the new failure. The replay here holds its transaction open until the
    consumer has failed the message again, so the test meets the race every time."""
    from propdesk.bus import dead_letters

    fast = settings.model_copy(update={"consumer_backoff_seconds": [0.05]})
    name, tenant = f"t-dlrace-{uuid4().hex[:8]}", uuid4()
    failures: dict[str, int] = {}

    async def hopeless(session, env) -> None:
        failures[str(env.id)] = failures.get(str(env.id), 0) + 1
        raise PermanentError("still broken")

    publish = dead_letters._publish

    async def publish_then_linger(settings, js, schema, rows):
        replayed = await publish(settings, js, schema, rows)
        await eventually(
            lambda: _failed_at_least(failures, [rows[0]["event_id"]], 2),
            "the replayed message failed again before the replay committed",
        )
        await asyncio.sleep(0.3)  # the consumer is at its dead letter by now
        return replayed

    monkeypatch.setattr(dead_letters, "_publish", publish_then_linger)
    nc = await connect(fast, "dead-letter-race-test")
    await ensure_stream(nc.jetstream(), fast)
    stop = asyncio.Event()
    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], hopeless), fast, sessions, nc
    )
    tasks = [
        asyncio.create_task(Relay(SCHEMA, fast, nc).run(stop)),
        asyncio.create_task(runner.run(stop)),
    ]
    events = [note_event(tenant, None) for _ in range(3)]
    try:
        async with tenant_transaction(sessions, TenantContext.for_tenant(tenant)) as s:
            await Outbox(SCHEMA).add(s, *events)

        async def all_open():
            rows = await list_dead_letters(fast, SCHEMA, consumer=name)
            return rows if len(rows) == len(events) else None

        await eventually(all_open, "every event dead-lettered")
        report = await replay_dead_letters(fast, nc.jetstream(), SCHEMA, consumer=name)
        assert len(report.replayed) == len(events)
        reopened = await eventually(all_open, "a new open dead letter for every event")
        assert {r.event_id for r in reopened} == {e.id for e in events}
        assert runner.dead_lettered == 2 * len(events)
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        await nc.close()


async def _failed_at_least(failures: dict[str, int], event_ids, n: int) -> bool:
    return all(failures.get(str(e), 0) >= n for e in event_ids)


async def test_an_envelope_on_a_subject_not_its_own_is_dead_lettered_unapplied(
    settings: Settings, sessions
):
    """NATS lets only the producing service publish an event type's subjects
    (deploy/nats/auth.conf), but the envelope inside names its own type, tenant and
    project: one on a subject not its own (another type's, another tenant's) would have
    been applied as what it says it is."""
    name, tenant = f"t-subject-{uuid4().hex[:8]}", uuid4()
    applied: list[str] = []

    async def handler(session, env) -> None:
        applied.append(str(env.id))

    runner = ConsumerRunner(Consumer(name, SCHEMA, ["pd.bustest.>"], handler), settings, sessions)
    forged = note_event(uuid4(), None)  # another tenant's, on this tenant's subject
    msg = FetchedMessage(forged, on_subject=f"pd.bustest.noted.{tenant}._")
    honest = FetchedMessage(note_event(tenant, None))
    await runner.handle_batch([msg, honest])
    assert msg.outcome == ["term"] and honest.outcome == ["ack"]
    assert applied == [str(honest.env.id)]
    [row] = await list_dead_letters(settings, SCHEMA, consumer=name)
    assert (row.event_id, row.tenant_id) == (None, None)
    assert row.error == (
        f"subject mismatch: the envelope (event {forged.id}, bustest.noted, tenant"
        f" {forged.tenant_id}) belongs on"
        f" {forged.subject}"
    )
    # It does not take the place of the real event's dead letter: that one, failing for
    # good later, is recorded too.
    runner_failing = ConsumerRunner(
        Consumer(name, SCHEMA, ["pd.bustest.>"], _never_works), settings, sessions
    )
    real = FetchedMessage(forged, deliveries=settings.consumer_max_deliver)
    await runner_failing.handle_batch([real])
    assert real.outcome == ["term"]
    rows = await list_dead_letters(settings, SCHEMA, consumer=name)
    assert [r.event_id for r in rows] == [None, forged.id]


async def _never_works(session, env) -> None:
    raise ValueError("never works")
