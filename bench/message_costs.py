"""What one message costs on this machine, measured in the same run as the scenarios: a
PostgreSQL round trip, a transaction's BEGIN and COMMIT, a JetStream publish (PubAck
awaited; the stack's NATS fsyncs every write), and a JetStream delivery with its ack.
Beside them, what batching would save: 30 publishes at once (as the relay publishes a
batch), an atomic batch of 30 (NATS 2.12+, one PubAck), and an outbox row marked
published by the relay's statement (the row rewritten) against a mark through a queue
table of pending ids, where the mark is a HOT update (its WAL bytes too). And what the key's
order costs a row inserted into a large table after a checkpoint: a random (version-4) id
against a time-ordered (version-7) one, as the platform's ids are (`propdesk.uuid7`).

For each: wall time, the server process's CPU and the client's (this thread's, on uvloop
like the services), per message. A complaint costs the platform a few dozen such messages
before any of its own work (`docs/benchmarks.md`, "The floor"), so these figures say how
far the machine itself lets the platform go."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAYLOAD = b"x" * 1200  # about a complaint event's envelope
BATCH = 30  # messages per batch in the batched rows: about what the relay claims under load
# ... and what it claims at the bench's open-loop 200 complaints/s, where its batches fill
# for a few milliseconds only (`outbox_linger_seconds`).
SMALL_BATCH = 3


def _cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def _pid_listening(port: int, name: str) -> int | None:
    """The process named `name` whose command line mentions the port (NATS: its config)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if name not in cmd:
            continue
        conf = next((a for a in cmd.split() if a.endswith(".conf")), None)
        try:
            if conf is None or f":{port}" in (entry / "cwd" / conf).read_text():
                return int(entry.name)
        except OSError:
            continue  # another user's server, or gone meanwhile
    return None


async def _measure(
    n: int, server_pid: int, once: Callable[[int], Awaitable[Any]], per_call: int = 1
) -> dict[str, float]:
    """`once(i)` called `n // per_call` times, each moving `per_call` messages; the figures
    are per message."""
    u0, s0 = _cpu(server_pid)
    c0, t0 = time.thread_time(), time.perf_counter()
    for i in range(n // per_call):
        await once(i)
    c1, t1 = time.thread_time(), time.perf_counter()
    u1, s1 = _cpu(server_pid)
    per = 1e6 / (n // per_call * per_call)
    return {
        "wall_us": round((t1 - t0) * per),
        "server_us": round((u1 - u0 + s1 - s0) * per),
        "server_kernel_us": round((s1 - s0) * per),
        "client_us": round((c1 - c0) * per),
    }


async def _postgres(dsn: str, n: int) -> dict[str, dict[str, float]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")

        async def round_trip(i: int) -> None:
            await conn.fetchval("SELECT $1::int", i)

        async def begin_commit(_i: int) -> None:
            async with conn.transaction():
                pass

        for _ in range(200):  # warm the prepared statement and the caches
            await round_trip(0)
        return {
            "postgres round trip (SELECT $1)": await _measure(n, pid, round_trip),
            "postgres BEGIN + COMMIT (two round trips)": await _measure(n, pid, begin_commit),
            **await _outbox_marks(conn, pid, n),
            **await _key_order(conn, pid, n),
        }
    finally:
        await conn.close()


# Two outboxes like the services' (`propdesk.bus.tables`): `rewritten` as they are (the
# partial index of unpublished rows names `published_at`, so marking a row cannot be a HOT
# update: the whole row is written again, with an entry in every index); `queued` without
# that index, its unpublished ids in a queue table a statement trigger fills, so a mark is
# a HOT update and a deleted queue row. A HOT update needs room on the row's page for its
# new version, and a claim marks every row of a page at once: at about 1 kB a row, a
# fillfactor of 45 keeps three rows a page, with room for their three new versions (at 60,
# four rows, and one mark in four left its page). The share of HOT marks is measured.
_OUTBOX_COLUMNS = """
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id uuid NOT NULL UNIQUE,
    tenant_id uuid NOT NULL, event_type text NOT NULL, subject text NOT NULL,
    envelope jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz, attempts integer NOT NULL DEFAULT 0, last_error text"""
_OUTBOXES = f"""
    DROP SCHEMA IF EXISTS bench_costs CASCADE;
    CREATE SCHEMA bench_costs;
    CREATE TABLE bench_costs.rewritten ({_OUTBOX_COLUMNS});
    CREATE INDEX ON bench_costs.rewritten (id) WHERE published_at IS NULL;
    CREATE INDEX ON bench_costs.rewritten (created_at);
    CREATE TABLE bench_costs.queued ({_OUTBOX_COLUMNS}) WITH (fillfactor = 45);
    CREATE INDEX ON bench_costs.queued (created_at);
    CREATE TABLE bench_costs.queued_pending (id bigint PRIMARY KEY, tenant_id uuid NOT NULL);
    CREATE FUNCTION bench_costs.queue() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO bench_costs.queued_pending SELECT id, tenant_id FROM inserted;
      RETURN NULL;
    END $$;
    CREATE TRIGGER queue AFTER INSERT ON bench_costs.queued REFERENCING NEW TABLE AS inserted
      FOR EACH STATEMENT EXECUTE FUNCTION bench_costs.queue();
"""
_MARK = {
    # The relay's claim today (`propdesk.bus.relay`).
    "rewritten": "UPDATE bench_costs.rewritten SET published_at = clock_timestamp()"
    " WHERE id IN (SELECT id FROM bench_costs.rewritten WHERE published_at IS NULL"
    " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, event_id, event_type, subject, envelope::text",
    "queued": "WITH d AS (DELETE FROM bench_costs.queued_pending WHERE id IN"
    " (SELECT id FROM bench_costs.queued_pending ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id)"
    " UPDATE bench_costs.queued o SET published_at = clock_timestamp() FROM d"
    " WHERE o.id = d.id AND o.published_at IS NULL"
    " RETURNING o.id, o.event_id, o.event_type, o.subject, o.envelope::text",
}


async def _outbox_marks(conn: Any, pid: int, n: int) -> dict[str, dict[str, float]]:
    """Per outbox row: the relay's mark, as today and through a queue of pending ids (the
    relay's connection settings: index scans, generic plans, no flush wait). As under
    load: `BATCH` rows written, two per transaction as a complaint writes them, then
    claimed and marked at once, again and again; only the marks are timed. Also the WAL
    each written row and each mark took."""
    envelope = '{"type": "complaint.received", "payload": {"content": "%s"}}' % ("x" * 900)
    await conn.execute(_OUTBOXES)
    await conn.execute(
        "SET enable_seqscan = off; SET enable_bitmapscan = off;"
        " SET plan_cache_mode = force_generic_plan; SET synchronous_commit = off"
    )
    wal_now = "SELECT pg_current_wal_insert_lsn()"
    wal_since = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)"
    out: dict[str, dict[str, float]] = {}
    try:
        for name, mark_sql in _MARK.items():
            write = await conn.prepare(
                f"INSERT INTO bench_costs.{name} (event_id, tenant_id, event_type, subject,"
                " envelope) VALUES ($1, $2, 'x', 'pd.x', $3::jsonb),"
                " ($4, $2, 'y', 'pd.y', $3::jsonb)"
            )
            mark = await conn.prepare(mark_sql)
            tenant = uuid4()
            batches = max(1, n // BATCH)
            wall = server = kernel = client = written = marked = 0.0
            for _ in range(batches):
                wal = await conn.fetchval(wal_now)
                for _ in range(BATCH // 2):
                    async with conn.transaction():
                        await write.fetch(uuid4(), tenant, envelope, uuid4())
                written += float(await conn.fetchval(wal_since, wal))
                wal = await conn.fetchval(wal_now)
                u0, s0 = _cpu(pid)
                c0, t0 = time.thread_time(), time.perf_counter()
                async with conn.transaction():
                    claimed = await mark.fetch(BATCH)
                c1, t1 = time.thread_time(), time.perf_counter()
                u1, s1 = _cpu(pid)
                assert len(claimed) == BATCH, len(claimed)
                marked += float(await conn.fetchval(wal_since, wal))
                wall, client = wall + t1 - t0, client + c1 - c0
                server, kernel = server + u1 - u0 + s1 - s0, kernel + s1 - s0
            per = 1e6 / (batches * BATCH)
            # This backend's table counters reach the statistics at its next transaction's
            # end once a flush is forced (PostgreSQL 15+).
            await conn.execute("SELECT pg_stat_force_next_flush()")
            await conn.execute("SELECT 1")
            updated, hot = await conn.fetchrow(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                f" WHERE relid = 'bench_costs.{name}'::regclass"
            )
            label = (
                "row rewritten (the relay today)"
                if name == "rewritten"
                else "HOT, through a queue of pending ids"
            )
            out[f"postgres outbox mark, {label}, per row of {BATCH}"] = {
                "wall_us": round(wall * per),
                "server_us": round(server * per),
                "server_kernel_us": round(kernel * per),
                "client_us": round(client * per),
                "wal_bytes": round(marked / (batches * BATCH)),
                "written_wal_bytes": round(written / (batches * BATCH)),
                "hot_percent": round(100 * hot / updated) if updated else 0,
            }
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS bench_costs CASCADE")
    return out


KEYED_ROWS = 1_000_000  # rows already in the table: a few weeks of a busy inbox
KEYED_BATCH = 50  # rows per transaction


async def _key_order(conn: Any, pid: int, n: int) -> dict[str, dict[str, float]]:
    """Per row: an insert into a table of `KEYED_ROWS` rows keyed by a uuid, right after a
    checkpoint, with a random id (`uuid4`, what the platform made until the ninth session)
    and with a time-ordered one (`propdesk.uuid7`). Random keys land on pages all over the
    primary key's index, and the first change to a page after a checkpoint writes the
    whole page to the WAL; time-ordered keys share the index's last pages. Also the WAL
    each row took."""
    from propdesk.uuid7 import uuid7

    if await conn.fetchval("SELECT current_setting('server_version_num')::int") < 180000:
        return {}  # the prefill below needs PostgreSQL 18's uuidv7()
    # As the services' recording transactions commit: waiting for the WAL flush (the
    # outbox rows above ran with the relay's settings, synchronous_commit off among them).
    await conn.execute("RESET ALL")
    out: dict[str, dict[str, float]] = {}
    try:
        for name, server_gen, client_gen in (
            ("uuid4", "gen_random_uuid()", uuid4),
            ("uuid7", "uuidv7()", uuid7),
        ):
            await conn.execute(
                f"""DROP SCHEMA IF EXISTS bench_costs CASCADE; CREATE SCHEMA bench_costs;
                CREATE TABLE bench_costs.keyed (id uuid PRIMARY KEY, at timestamptz NOT NULL
                    DEFAULT now(), note text);
                INSERT INTO bench_costs.keyed (id, note) SELECT {server_gen}, repeat('x', 60)
                    FROM generate_series(1, {KEYED_ROWS});"""
            )
            await conn.execute("VACUUM ANALYZE bench_costs.keyed")
            insert = await conn.prepare(
                "INSERT INTO bench_costs.keyed (id, note) SELECT unnest($1::uuid[]), 'x'"
            )
            await conn.execute("CHECKPOINT")
            wal = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")

            async def batch(_i: int, insert: Any = insert, gen: Any = client_gen) -> None:
                async with conn.transaction():
                    await insert.fetch([gen() for _ in range(KEYED_BATCH)])

            figures = await _measure(n, pid, batch, per_call=KEYED_BATCH)
            written = await conn.fetchval(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)", wal
            )
            figures["written_wal_bytes"] = round(float(written) / (n // KEYED_BATCH * KEYED_BATCH))
            label = "random" if name == "uuid4" else "time-ordered"
            out[
                f"postgres insert keyed by {name} ({label}) into {KEYED_ROWS:,} rows,"
                f" after a checkpoint, {KEYED_BATCH} a transaction, per row"
            ] = figures
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS bench_costs CASCADE")
    return out


async def _jetstream(url: str, n: int) -> dict[str, dict[str, float]]:
    import nats

    port = urlsplit(url.split(",")[0]).port or 4222
    pid = _pid_listening(port, "nats-server")
    if pid is None:
        return {}
    nc = await nats.connect(url, name="bench-message-costs")
    js = nc.jetstream()
    stream, subject = f"BENCHCOSTS{uuid4().hex[:6].upper()}", f"benchcosts.{uuid4().hex[:6]}"
    try:
        await js.add_stream(name=stream, subjects=[f"{subject}.>"])

        async def publish(i: int) -> None:
            await js.publish(f"{subject}.x", PAYLOAD, headers={"Nats-Msg-Id": f"{stream}-{i}"})

        sub = await js.pull_subscribe(f"{subject}.>", durable="costs", stream=stream)

        async def deliver(_i: int) -> None:
            [msg] = await sub.fetch(1, timeout=5)
            await msg.ack()

        def publish_many(size: int) -> Callable[[int], Awaitable[Any]]:
            async def publish(i: int) -> None:
                await asyncio.gather(
                    *(
                        js.publish(
                            f"{subject}.y",
                            PAYLOAD,
                            headers={"Nats-Msg-Id": f"{stream}-{size}-{i}-{k}"},
                        )
                        for k in range(size)
                    )
                )

            return publish

        single = {
            "JetStream publish, PubAck awaited": await _measure(n, pid, publish),
            "JetStream delivery (pull of one) + ack": await _measure(n, pid, deliver),
            **{
                f"JetStream publish, {size} at once (as the relay does), per message": (
                    await _measure(n, pid, publish_many(size), size)
                )
                for size in (SMALL_BATCH, BATCH)
            },
        }
        await sub.unsubscribe()
        return {**single, **await _atomic_batches(nc, js, stream, subject, pid, n)}
    finally:
        try:
            await js.delete_stream(stream)
        finally:
            await nc.close()


async def _atomic_batches(
    nc: Any, js: Any, stream: str, subject: str, pid: int, n: int
) -> dict[str, dict[str, float]]:
    """Messages stored together with one PubAck (NATS 2.12+, `allow_atomic` on the stream):
    all but the last published without a reply, the last with the commit header and a
    request. A batch holding a message id the stream has seen is refused whole (error
    10201), so a relay using them would need a fallback after a crash."""
    from nats.js.errors import APIError

    info = await js.stream_info(stream)
    try:
        await js.update_stream(config=replace(info.config, allow_atomic=True))
    except APIError:  # a server before 2.12: no such rows
        return {}

    def atomic(size: int) -> Callable[[int], Awaitable[Any]]:
        async def batch(i: int) -> None:
            batch_id = f"{stream}-atomic{size}-{i}"
            for k in range(1, size + 1):
                headers = {
                    "Nats-Batch-Id": batch_id,
                    "Nats-Batch-Sequence": str(k),
                    "Nats-Msg-Id": f"{batch_id}-{k}",
                }
                if k < size:
                    await nc.publish(f"{subject}.z", PAYLOAD, headers=headers)
                    continue
                headers["Nats-Batch-Commit"] = "1"
                reply = await nc.request(f"{subject}.z", PAYLOAD, timeout=5, headers=headers)
                if b'"error"' in reply.data:
                    raise RuntimeError(f"atomic batch refused: {reply.data!r}")

        return batch

    return {
        f"JetStream atomic batch of {size}, one PubAck, per message": (
            await _measure(n, pid, atomic(size), size)
        )
        for size in (SMALL_BATCH, BATCH)
    }


def _run(dsn: str, nats_url: str, n: int) -> dict[str, dict[str, float]]:
    import uvloop

    async def both() -> dict[str, dict[str, float]]:
        return {**await _postgres(dsn, n), **await _jetstream(nats_url, n)}

    return uvloop.run(both())


async def message_costs(env: dict[str, str], n: int = 2000) -> dict[str, dict[str, float]]:
    """Per-message figures, measured on a thread of their own (its CPU is the client's)."""
    from propdesk.settings import asyncpg_dsn

    dsn = asyncpg_dsn(env["PROPDESK_DATABASE_URL"])
    return await asyncio.to_thread(_run, dsn, env["PROPDESK_NATS_URL"], n)
