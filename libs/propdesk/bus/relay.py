"""The outbox relay: publishes committed outbox rows to JetStream, marked sent in the same
transaction.

- Woken by its own process's writers after their commit (`propdesk.bus.bell`), by
  LISTEN/NOTIFY from writers in other processes (the outbox trigger), and by a polling
  fallback in case either is missed (connection drop, relay restart).
- One statement claims a batch (FOR UPDATE SKIP LOCKED, so several relay replicas share
  the work) and marks it published; the rows are published, the ones JetStream refused
  are unmarked, then the transaction commits. Until it commits, no other relay sees them
  published and a crash rolls the marks back.
- Each message carries `Nats-Msg-Id` = event id: if the relay dies after publishing and
  before committing, the re-publish is dropped by the stream's duplicate window, and any
  copy beyond it is dropped by the consumers' inbox.
- While NATS is unreachable, rows simply wait; the relay retries with backoff.
- Metrics (`propdesk.bus.metrics`): events published and publish failures by schema; the
  outbox backlog (unpublished rows, the oldest one's age), set to zero when a claim drains
  the outbox and otherwise counted by one cheap query at most every `backlog_interval`
  seconds, never on the publishing path; and the schema's open dead letters, counted as
  often (the relay is the one loop every service process runs on its schema).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime

import asyncpg
import orjson
from nats.aio.client import Client as NATS
from nats.js.api import PubAck
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from propdesk.bus import bell, metrics
from propdesk.bus.dead_letters import count_open_dead_letters
from propdesk.bus.faults import crash_point
from propdesk.db.session import connection_transaction, end_transaction
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.telemetry.propagation import extract, inject_current
from propdesk.tenancy import system_context

log = logging.getLogger("propdesk.bus.relay")
tracer = trace.get_tracer("propdesk.bus")

# At stop, how long the relay goes on publishing what is already committed.
DRAIN_SECONDS = 5.0
# The backlog gauge counts unpublished rows up to this many: enough to alert on, and the
# count stays cheap however far behind the relay is (a long NATS outage).
BACKLOG_COUNT_CAP = 100_000


class Relay:
    def __init__(self, schema: str, settings: Settings, nc: NATS) -> None:
        self.schema = schema
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.channel = f"{schema}_outbox"
        self._wake = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self.published_total = 0
        self._m_published = metrics.RELAY_PUBLISHED.labels(schema)
        self._m_failures = metrics.RELAY_PUBLISH_FAILURES.labels(schema)
        self._m_backlog = metrics.OUTBOX_BACKLOG.labels(schema)
        self._m_oldest = metrics.OUTBOX_OLDEST_AGE.labels(schema)
        # The run loop refreshes the backlog gauges at most this often, and not at all when
        # a claim drained the outbox since the last refresh.
        self.backlog_interval = 5.0
        self._backlog_due = 0.0
        # Open dead letters of the schema, counted as often (a small table, read whole).
        self._m_dead_letters = metrics.DEAD_LETTERS_OPEN.labels(schema)
        self._dead_letters_due = 0.0
        self._drained_at: float | None = None
        s = f'"{schema}"'
        # Claim and mark in one round trip; RETURNING gives no order, so the caller sorts.
        self._claim = (
            f"UPDATE {s}.outbox SET published_at = clock_timestamp() WHERE id IN"
            f" (SELECT id FROM {s}.outbox WHERE published_at IS NULL ORDER BY id LIMIT $1"
            f" FOR UPDATE SKIP LOCKED)"
            f" RETURNING id, event_id, event_type, subject, envelope::text AS envelope,"
            f" trace_context"
        )
        self._fail = (
            f"UPDATE {s}.outbox SET published_at = NULL, attempts = attempts + 1,"
            f" last_error = $2 WHERE id = ANY($1)"
        )
        # Two walks of the partial index of unpublished rows: a capped count, and the
        # first row in id (insert) order, whose age the database measures itself.
        self._backlog = (
            f"SELECT (SELECT count(*) FROM (SELECT 1 FROM {s}.outbox"
            f" WHERE published_at IS NULL LIMIT {BACKLOG_COUNT_CAP}) w) AS n,"
            f" (SELECT extract(epoch FROM clock_timestamp() - created_at)::float8"
            f" FROM {s}.outbox WHERE published_at IS NULL ORDER BY id LIMIT 1) AS age"
        )

    async def _connect_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            # The relay's own connections only ever do its work, which reads every tenant's
            # outbox rows: the system context is set once per connection (the outbox policy
            # admits it) instead of once per batch.
            # Index scans only: the claim must walk `outbox_unpublished` in id order with
            # a plain index scan, which marks the entries of rows published since the
            # last vacuum as dead as it passes them. The planner, misled by statistics of
            # a queue table (taken while rows waited, or counting dead entries), picks a
            # bitmap or a sequential scan plus sort instead, which reads every published
            # row again on every claim: 1-2 ms per claim between autovacuums on the
            # bench, growing with the table. These connections run only the relay's
            # statements, all of them index lookups.
            # Generic plans: with `id = ANY($1)` the planner priced the generic plan above
            # a custom one for the batch at hand, so it planned the (then separate)
            # marking UPDATE afresh on every batch, 0.3 ms of planning for 0.07 ms of
            # work. These statements have one sensible plan each.
            # Commits without waiting for their WAL flush: what the relay commits is only
            # "published" marks, and a mark lost to a database crash means the row is
            # published again, which the stream's duplicate window (same Nats-Msg-Id) and
            # the consumers' inbox drop. The rows themselves were committed durably by
            # their writers. Each batch's commit no longer waits for a flush (1-2 ms on
            # the bench's disk) before the next claim.
            self._pool = await asyncpg.create_pool(
                asyncpg_dsn(self.settings.app_db_url),
                min_size=1,
                max_size=2,
                server_settings={
                    "app.system": "on",
                    "enable_bitmapscan": "off",
                    "enable_seqscan": "off",
                    "plan_cache_mode": "force_generic_plan",
                    "synchronous_commit": "off",
                },
                reset=end_transaction,
            )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def publish_batch(self) -> int:
        """Publish one batch of pending rows. Returns how many were published."""
        pool = await self._connect_pool()
        async with pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetch(self._claim, self.settings.outbox_batch_size)
            if not claimed:
                self._drained()
                return 0
            rows = sorted(claimed, key=lambda r: r["id"])  # publish in id (insert) order
            results = await asyncio.gather(
                *(self._publish(r) for r in rows), return_exceptions=True
            )
            ok: list[int] = []
            failed: list[int] = []
            for r, res in zip(rows, results, strict=True):
                (ok if isinstance(res, PubAck) else failed).append(r["id"])
            crash_point("relay.after_publish")
            if failed:
                first_error = next(e for e in results if isinstance(e, BaseException))
                await conn.execute(self._fail, failed, repr(first_error)[:500])
                log.warning(
                    "publish failed for %d of %d outbox rows: %r",
                    len(failed),
                    len(rows),
                    first_error,
                )
        # Committed: counted once, as the outbox sees them.
        self.published_total += len(ok)
        self._m_published.inc(len(ok))
        if failed:
            self._m_failures.inc(len(failed))
        if failed or len(claimed) >= self.settings.outbox_batch_size:
            self._drained_at = None  # rows are (or may be) left: the next refresh counts
        else:
            self._drained()  # committed, and nothing else was waiting when claimed
        return len(ok)

    def _drained(self) -> None:
        """A claim found every pending row (those other relays hold aside): no backlog."""
        self._m_backlog.set(0)
        self._m_oldest.set(0)
        self._drained_at = asyncio.get_running_loop().time()

    async def refresh_backlog(self) -> None:
        """Set the backlog gauges from the outbox (one cheap query)."""
        pool = await self._connect_pool()
        async with pool.acquire() as conn:
            row = await conn.fetchrow(self._backlog)
        self._m_backlog.set(row["n"])
        self._m_oldest.set(row["age"] or 0.0)

    async def refresh_dead_letters(self) -> None:
        """Set the open-dead-letters gauge from the schema's dead_letters."""
        pool = await self._connect_pool()
        async with pool.acquire() as conn:
            n = await count_open_dead_letters(conn, self.schema, BACKLOG_COUNT_CAP)
        self._m_dead_letters.set(n)

    async def _refresh_backlog_now_and_then(self) -> None:
        """`refresh_backlog` every `backlog_interval` seconds, unless a claim drained the
        outbox meanwhile (which set the gauges already), and `refresh_dead_letters` every
        `backlog_interval` seconds. Never raises: the gauges wait."""
        now = asyncio.get_running_loop().time()
        if now >= self._dead_letters_due:
            self._dead_letters_due = now + self.backlog_interval
            try:
                await self.refresh_dead_letters()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("relay %s: dead letters not counted: %r", self.schema, exc)
        if now < self._backlog_due:
            return
        last, self._backlog_due = self._backlog_due, now + self.backlog_interval
        if self._drained_at is not None and self._drained_at >= last - self.backlog_interval:
            return
        try:
            await self.refresh_backlog()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.debug("relay %s: backlog not counted: %r", self.schema, exc)

    async def _publish(self, row: Mapping) -> PubAck:
        trace_context = row["trace_context"]
        if isinstance(trace_context, str):
            trace_context = orjson.loads(trace_context)
        with tracer.start_as_current_span(
            f"publish {row['event_type']}",
            context=extract(trace_context or {}),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": row["subject"],
                "messaging.message.id": str(row["event_id"]),
            },
        ):
            headers = {"Nats-Msg-Id": str(row["event_id"]), **inject_current()}
            return await self.js.publish(
                row["subject"],
                row["envelope"].encode(),
                timeout=5,
                stream=self.settings.stream_name,
                headers=headers,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set. Survives database and NATS outages."""
        listener = asyncio.create_task(self._listen(stop))
        bell.attach(self.schema, self._wake)
        delay = 0.1
        try:
            while not stop.is_set():
                try:
                    await self._refresh_backlog_now_and_then()
                    if not self.nc.is_connected:
                        await _wait(stop, 0.2)
                        continue
                    # Cleared before the claim: a commit rung while it runs wakes the
                    # wait below instead of being lost until the next poll.
                    self._wake.clear()
                    n = await self.publish_batch()
                    delay = 0.1
                    if n >= self.settings.outbox_batch_size:
                        continue  # more waiting: no sleep
                    if n > 0:
                        # Under load: let the next batch fill for a moment.
                        await _wait(stop, self.settings.outbox_linger_seconds)
                    # Claim again only when rung (or on the poll): a claim after every
                    # partial batch found nothing, most of the time.
                    if not self._wake.is_set():
                        await _wait_any(
                            stop, self._wake, self.settings.outbox_poll_interval_seconds
                        )
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("relay %s: %r; retrying in %.1fs", self.schema, exc, delay)
                    await _wait(stop, delay)
                    delay = min(delay * 2, 5.0)
            await self._drain()
        finally:
            bell.detach(self.schema, self._wake)
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self.close()

    async def _drain(self) -> None:
        """At stop: publish what is committed and not yet published (the events of a
        service's last requests), for at most `DRAIN_SECONDS`. What is left, or what a
        broken connection keeps back, waits for the next relay: nothing is lost."""
        if not self.nc.is_connected:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        try:
            while (left := deadline - loop.time()) > 0:
                n = await asyncio.wait_for(self.publish_batch(), left)
                if n < self.settings.outbox_batch_size:
                    return
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("relay %s: stopped before the outbox was drained: %r", self.schema, exc)

    async def _listen(self, stop: asyncio.Event) -> None:
        """Keep a LISTEN connection; reconnect if it drops. Polling covers the gaps."""
        while not stop.is_set():
            conn = None
            try:
                conn = await asyncpg.connect(asyncpg_dsn(self.settings.app_db_url))
                await conn.add_listener(self.channel, lambda *_: self._wake.set())
                self._wake.set()  # catch up on anything committed before we listened
                while not stop.is_set() and not conn.is_closed():
                    await _wait(stop, 5)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("relay listener %s: %r", self.schema, exc)
                await _wait(stop, 1)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()


async def republish(settings: Settings, schema: str, since: datetime, until: datetime) -> int:
    """Queue already-published events of [since, until) again (e.g. after a stream loss).

    Consumers' inboxes make the second delivery harmless.
    """
    conn = await asyncpg.connect(asyncpg_dsn(settings.app_db_url))
    try:
        async with connection_transaction(conn, system_context("bus-cli:republish")):
            status = await conn.execute(
                f'UPDATE "{schema}".outbox SET published_at = NULL'
                " WHERE created_at >= $1 AND created_at < $2 AND published_at IS NOT NULL",
                since,
                until,
            )
            await conn.execute(f"SELECT pg_notify('{schema}_outbox', '')")
        return int(status.split()[-1])
    finally:
        await conn.close()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    tasks = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
