"""What an operator does with a service schema's dead letters: list them, and replay them
once the cause is fixed (`python -m propdesk.bus.cli dead-letters ...`).

A replay publishes the dead letter's stored message again, as it was received (subject,
data, headers, the trace context among them), and marks the row `replayed_at` in the same
transaction, after JetStream acknowledged it:

- Every durable consumer of the subject gets the message again, in every service. The ones
  that had applied the event find it in their inbox and skip it; the one that dead-lettered
  it applies it, with a fresh count of deliveries. (Another service's open dead letter of
  the same event is applied too; its own row stays open until it is replayed there, which
  is then harmless.)
- The message carries its own `Nats-Msg-Id`, `replay:<schema>:<dead letter id>`: the
  original id is the event's, and the stream's duplicate window (10 minutes) would drop a
  second message with it. If the replay dies between the publish and the commit, running
  it again publishes under the same id, which the stream drops as a duplicate within the
  window; beyond it, the consumers' inboxes drop it.
- Several consumers of one schema that dead-lettered the same event get one message
  between them (each of them gets every message of its subject anyway).
- One transaction per message: its rows are claimed `FOR UPDATE SKIP LOCKED` (two
  operators replaying at once do not publish a row twice, and neither waits for the
  other), published, marked, committed; no lock is held across the whole replay.
- A replayed dead letter leaves the `dead_letters_once` index: if the event fails again it
  gets a new row. The consumer may fail it again while the replay's transaction still
  holds the row open; it then waits for that transaction (`ConsumerRunner._dead_letter`)
  and, once the row is marked replayed, records the new failure.
- The other consumers skip a replayed event only while their inbox rows of it are kept
  (`inbox_retention_days`, `propdesk.bus.retention`), and the replayed copy stays in the
  stream `stream_max_age_days` (a durable re-created from the start reads it). So an
  event is replayed only while its age (from its envelope's `occurred_at`, or the dead
  letter's time when the data cannot be read) plus the stream's max age plus a day
  (`REPLAY_MARGIN_DAYS`) is within the inbox retention: 14 days with the defaults. An
  older one stays open unless `allow_old`: it could be applied twice elsewhere.
- A replayed message carries the event id in `Propdesk-Event-Id` as well: its
  `Nats-Msg-Id` is the replay's, and a consumer that cannot read the data still records
  the failure under the event (`propdesk.bus.consumer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import orjson
from nats.js import JetStreamContext

from propdesk.db.session import connection_transaction
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.tenancy import TenantContext, system_context

REPLAY_OF_HEADER = "Propdesk-Replay-Of"
EVENT_ID_HEADER = "Propdesk-Event-Id"
# Headers the stream or the original publish set, which a replay must not carry over.
_REPLACED_HEADERS = frozenset({"Nats-Msg-Id", REPLAY_OF_HEADER, EVENT_ID_HEADER})
# Between an event's occurred_at and the other consumers' inbox rows of it (relay delay,
# redeliveries), and between the replay and the prune's clock.
REPLAY_MARGIN_DAYS = 1.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    consumer: str
    event_id: UUID | None
    tenant_id: UUID | None
    subject: str
    deliveries: int
    error: str
    created_at: datetime
    replayed_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "consumer": self.consumer,
            "event_id": str(self.event_id) if self.event_id else None,
            "tenant_id": str(self.tenant_id) if self.tenant_id else None,
            "subject": self.subject,
            "deliveries": self.deliveries,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
        }


@dataclass(frozen=True, slots=True)
class ReplayReport:
    replayed: list[Replayed]
    too_old: list[int]  # dead letters left open: their event is older than replay allows
    not_open: list[int]  # ids asked for that are not open (unknown, replayed, or taken)


@dataclass(frozen=True, slots=True)
class Replayed:
    """One message published by a replay, and the dead letters it settled."""

    message_id: str
    subject: str
    event_id: UUID | None
    dead_letter_ids: tuple[int, ...]
    duplicate: bool  # the stream had it already (a replay that died before its commit)


def _selection(
    ids: Sequence[int] | None, consumer: str | None, include_replayed: bool
) -> tuple[str, list[object]]:
    where, args = [], []
    if not include_replayed:
        where.append("replayed_at IS NULL")
    if ids:
        args.append(list(ids))
        where.append(f"id = ANY(${len(args)}::bigint[])")
    if consumer:
        args.append(consumer)
        where.append(f"consumer = ${len(args)}")
    return (" WHERE " + " AND ".join(where)) if where else "", args


def _system(action: str) -> TenantContext:
    # The dead-letter policy admits the system context (as it does for the consumers that
    # write the rows): an operator's tool reads every tenant's.
    return system_context(f"bus-cli:dead-letters {action}")


async def _connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(settings.app_db_url))


async def list_dead_letters(
    settings: Settings,
    schema: str,
    *,
    consumer: str | None = None,
    include_replayed: bool = False,
    limit: int = 100,
) -> list[DeadLetter]:
    """The schema's dead letters, oldest first (open ones only unless `include_replayed`)."""
    where, args = _selection(None, consumer, include_replayed)
    args.append(limit)
    conn = await _connect(settings)
    try:
        async with connection_transaction(conn, _system("list")):
            rows = await conn.fetch(
                "SELECT id, consumer, event_id, tenant_id, subject, deliveries, error,"
                f' created_at, replayed_at FROM "{schema}".dead_letters{where}'
                f" ORDER BY id LIMIT ${len(args)}",
                *args,
            )
    finally:
        await conn.close()
    return [DeadLetter(**dict(r)) for r in rows]


async def count_open_dead_letters(conn: asyncpg.Connection, schema: str, cap: int) -> int:
    """Open (not replayed) dead letters of the schema, counted up to `cap`."""
    return await conn.fetchval(
        f'SELECT count(*) FROM (SELECT 1 FROM "{schema}".dead_letters'
        f" WHERE replayed_at IS NULL LIMIT {int(cap)}) d"
    )


def replay_age_limit_days(settings: Settings) -> float:
    """How old an event may be for a replay without `allow_old` (module docstring)."""
    return settings.inbox_retention_days - settings.stream_max_age_days - REPLAY_MARGIN_DAYS


async def replay_dead_letters(
    settings: Settings,
    js: JetStreamContext,
    schema: str,
    *,
    ids: Sequence[int] | None = None,
    consumer: str | None = None,
    allow_old: bool = False,
) -> ReplayReport:
    """Publish the selected open dead letters again and mark them replayed (see the module
    docstring). `ids` and `consumer` narrow the selection; neither: every open one."""
    where, args = _selection(ids, consumer, include_replayed=False)
    s = f'"{schema}"'
    conn = await _connect(settings)
    try:
        async with connection_transaction(conn, _system("replay")):
            candidates = await conn.fetch(
                f"SELECT id, event_id, subject, data, created_at FROM {s}.dead_letters{where}"
                " ORDER BY id",
                *args,
            )
        limit = timedelta(days=replay_age_limit_days(settings))
        now = datetime.now(UTC)
        too_old = [r["id"] for r in candidates if not allow_old and now - _event_time(r) > limit]
        replayed: list[Replayed] = []
        taken: set[int] = set()
        for group in _one_message_each([r for r in candidates if r["id"] not in too_old]):
            async with connection_transaction(conn, _system("replay")):
                rows = await conn.fetch(
                    f"SELECT id, event_id, subject, data, headers FROM {s}.dead_letters"
                    " WHERE id = ANY($1::bigint[]) AND replayed_at IS NULL"
                    " ORDER BY id FOR UPDATE SKIP LOCKED",
                    [r["id"] for r in group],
                )
                if not rows:
                    continue
                replayed.append(await _publish(settings, js, schema, rows))
                await conn.execute(
                    f"UPDATE {s}.dead_letters SET replayed_at = clock_timestamp()"
                    " WHERE id = ANY($1::bigint[])",
                    [r["id"] for r in rows],
                )
                taken.update(r["id"] for r in rows)
        not_open = [i for i in ids or () if i not in taken and i not in too_old]
        return ReplayReport(replayed, too_old, not_open)
    finally:
        await conn.close()


async def _publish(
    settings: Settings, js: JetStreamContext, schema: str, rows: Sequence[asyncpg.Record]
) -> Replayed:
    first = rows[0]
    message_id = f"replay:{schema}:{first['id']}"
    headers = _headers_of(first["headers"])
    headers["Nats-Msg-Id"] = message_id
    headers[REPLAY_OF_HEADER] = ",".join(f"{schema}:{r['id']}" for r in rows)
    if first["event_id"] is not None:
        headers[EVENT_ID_HEADER] = str(first["event_id"])
    ack = await js.publish(
        first["subject"],
        bytes(first["data"]),
        timeout=5,
        stream=settings.stream_name,
        headers=headers,
    )
    return Replayed(
        message_id=message_id,
        subject=first["subject"],
        event_id=first["event_id"],
        dead_letter_ids=tuple(r["id"] for r in rows),
        duplicate=bool(ack.duplicate),
    )


def _event_time(row: asyncpg.Record) -> datetime:
    """When the event happened: its envelope's `occurred_at`, or when it was dead-lettered
    if the data cannot be read (never later than that)."""
    try:
        occurred = datetime.fromisoformat(orjson.loads(bytes(row["data"]))["occurred_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return row["created_at"]
    if occurred.tzinfo is None:
        return row["created_at"]
    return min(occurred, row["created_at"])


def _one_message_each(rows: Sequence[asyncpg.Record]) -> list[list[asyncpg.Record]]:
    """Rows grouped by event (one publish reaches every consumer of the subject); rows
    without an event id (the message could not be read) stand alone."""
    by_event: dict[tuple[UUID, str], list[asyncpg.Record]] = {}
    groups: list[list[asyncpg.Record]] = []
    for row in rows:
        if row["event_id"] is None:
            groups.append([row])
            continue
        key = (row["event_id"], row["subject"])
        if key not in by_event:
            by_event[key] = []
            groups.append(by_event[key])
        by_event[key].append(row)
    return groups


def _headers_of(stored: object) -> dict[str, str]:
    headers = orjson.loads(stored) if isinstance(stored, str | bytes) else dict(stored or {})
    return {
        str(k): str(v)
        for k, v in headers.items()
        if k not in _REPLACED_HEADERS and not str(k).startswith("Nats-Expected-")
    }
