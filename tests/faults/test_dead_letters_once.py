"""One open dead letter per consumer and event, in every service schema: a message whose
terminate was lost (or whose process died before it) comes back, fails again, and finds
its dead letter instead of adding a second (`dead_letters_once`, a migration per schema).
The process-kill version of this is in test_process_kills.py."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import asyncpg
import pytest
from alembic import command

from propdesk.bus.consumer import Consumer, ConsumerRunner, PermanentError
from propdesk.db.migrations import alembic_config
from propdesk.db.session import create_engine, session_factory
from propdesk.settings import SERVICE_NAMES, Settings, asyncpg_dsn
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.bus_schema import note_event
from propdesk.testing.databases import fresh_database
from propdesk.testing.fetched_message import FetchedMessage

pytestmark = pytest.mark.faults

INDEX = (
    "CREATE UNIQUE INDEX dead_letters_once ON {schema}.dead_letters USING btree"
    " (consumer, event_id) WHERE ((event_id IS NOT NULL) AND (replayed_at IS NULL))"
)


async def _poison(session, env) -> None:
    raise PermanentError("this consumer never applies it")


@pytest.mark.parametrize("schema", SERVICE_NAMES)
async def test_a_redelivery_after_a_lost_terminate_adds_no_second_dead_letter(
    settings: Settings, schema: str
):
    (index,) = await admin_fetch(
        settings,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'dead_letters_once'",
        schema,
    )
    assert index["indexdef"] == INDEX.format(schema=schema)

    name = f"t-dl-once-{uuid4().hex[:8]}"
    engine = create_engine(settings)
    runner = ConsumerRunner(
        Consumer(name, schema, ["pd.bustest.>"], _poison), settings, session_factory(engine)
    )
    env = note_event(uuid4(), uuid4())
    try:
        first, again = FetchedMessage(env), FetchedMessage(env, deliveries=2)
        await runner.handle_batch([first])
        # The terminate was lost: JetStream delivers it again, and it fails again.
        await runner.handle_batch([again])
        other = FetchedMessage(note_event(env.tenant_id, None))
        await runner.handle_batch([other])
    finally:
        await engine.dispose()
    rows = await admin_fetch(
        settings,
        f'SELECT event_id, deliveries FROM "{schema}".dead_letters WHERE consumer = $1 ORDER BY id',
        name,
    )
    assert [(r["event_id"], r["deliveries"]) for r in rows] == [
        (env.id, 1),
        (other.env.id, 1),
    ]
    # Each delivery was terminated, the second after finding the first's dead letter.
    assert (first.outcome, again.outcome, other.outcome) == (["term"], ["term"], ["term"])
    # Counted as committed: two rows, two dead letters (the lost terminate is not one more).
    assert runner.dead_lettered == 2


async def test_the_migration_keeps_the_first_of_copies_made_before_it(settings: Settings):
    """Upgrading a schema that already holds doubled dead letters (the index could not be
    built over them): the first open one of each event stays, later open copies go; replayed
    rows and messages without an event id are left alone. Downgrade drops the index."""
    ours = await fresh_database(settings, "dead_letters_once", ("callback",))
    cfg = alembic_config("callback", ours)
    await asyncio.to_thread(command.downgrade, cfg, "callback_0002")
    conn = await asyncpg.connect(asyncpg_dsn(ours.database_url))
    try:

        async def add(event_id, *, replayed: bool = False, consumer: str = "c") -> int:
            return await conn.fetchval(
                "INSERT INTO callback.dead_letters (consumer, event_id, subject, deliveries,"
                " error, data, replayed_at) VALUES ($1, $2, 's', 8, 'e', '\\x00',"
                " CASE WHEN $3 THEN now() END) RETURNING id",
                consumer,
                event_id,
                replayed,
            )

        async def ids() -> list[int]:
            return [r["id"] for r in await conn.fetch("SELECT id FROM callback.dead_letters")]

        async def indexed() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = 'callback'"
                    " AND indexname = 'dead_letters_once'"
                )
            )

        doubled, single = uuid4(), uuid4()
        replayed = await add(doubled, replayed=True)
        first = await add(doubled)
        await add(doubled)
        await add(doubled)
        other_consumer = await add(doubled, consumer="d")
        alone = await add(single)
        unparseable = [await add(None), await add(None)]
        assert not await indexed()

        await asyncio.to_thread(command.upgrade, cfg, "head")
        assert sorted(await ids()) == sorted([replayed, first, other_consumer, alone, *unparseable])
        assert await indexed()
        with pytest.raises(asyncpg.UniqueViolationError):
            await add(doubled)
        await add(doubled, replayed=True)  # a replayed one may repeat

        await asyncio.to_thread(command.downgrade, cfg, "callback_0002")
        assert not await indexed()
        await add(doubled)
        await add(doubled)
    finally:
        await conn.close()
