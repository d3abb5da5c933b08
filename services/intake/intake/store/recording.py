"""The recording path's transaction and statements, on a plain asyncpg connection.

Recording a complaint is the platform's hot path. Its statements are plain SQL strings run
through asyncpg's prepared-statement cache: no statement building, no per-statement span
(the recording flow keeps one span for the whole), and as few round trips as the rules
allow. A plain new complaint runs in a `driver_transaction` (a connection of the service's
driver pool): BEGIN, then

1. `lock_matters`: the tenant context (RLS) and the per-project advisory lock that
   serialises duplicate and group detection, so two complaints about one matter recorded
   at once see each other;
2. `read_matters`: after the lock (a new snapshot), in one statement: the project's next
   reference number of the day, the project's recent cases of the category (duplicate and
   group detection) and the household's handled cases (second complaints);
3. `write`: the complaint, its timeline rows, its outbox events and the idempotency key
   with the final response, in one statement; the key is inserted last and only if no
   other request holds it (else the caller rolls back and replays the stored answer);

then COMMIT: five round trips. A group complaint adds `lock_members` and writes the group
case and the members' updates in the same `write`; a duplicate counts the call with
`count_call` and gives its number back (`give_back_number`). A step that needs SQLAlchemy
(a directory read the cache does not hold, a named earlier case) asks `tx.session()`,
which in a driver transaction raises `SessionNeeded`: the caller rolls back and runs the
flow again in a `session_transaction`, where the same statements run on the session's
connection and the session is at hand.

Every statement here runs under the caller's RLS context: the tables are FORCE RLS and the
role owns nothing, so a statement can only see and write the context tenant's rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from intake.domain.case_status import HANDLED_STATUSES, OPEN_STATUSES
from intake.store.bulk_values import (
    OUTBOX_COLUMNS,
    TIMELINE_COLUMNS,
    json_text,
    outbox_args,
    timeline_args,
    values_sql,
)
from propdesk.bus import bell
from propdesk.db.session import (
    context_args,
    context_sql,
    driver_connection,
    tenant_transaction,
)
from propdesk.tenancy import TenantContext
from propdesk.tenancy.context import use_context

SCHEMA = "intake"  # whose outbox this module writes

# The columns duplicate, group and second-complaint detection read (`record_complaint._facts`)
# and the group path updates from.
MATTER_COLUMNS = (
    "id",
    "project_id",
    "household_id",
    "unit_id",
    "complainant_phone",
    "category",
    "building",
    "place",
    "content",
    "received_at",
    "status",
    "validity",
    "group_case_id",
    "grade",
    "grade_reasons",
    "reference",
    "version",
    "prior_cases",
)
RECENT_LIMIT = 500
HANDLED_LIMIT = 50
_HANDLED = sorted(s.value for s in HANDLED_STATUSES)


class SessionNeeded(Exception):
    """This step needs SQLAlchemy: run the recording again in a `session_transaction`."""


class CaseMoved(Exception):
    """A case `read_matters` read changed before this transaction locked it, in a way that
    changes what the recording decided (the open case a repeat joins was closed or
    invalidated; a group member was invalidated): roll back and record again, reading the
    matter anew. Work-order steps and validity decisions lock the case row, not the
    project, so the project lock alone does not keep them out."""


@dataclass(frozen=True, slots=True)
class RecordingTx:
    """One recording transaction: its asyncpg connection, its SQLAlchemy session when it
    runs in one (`session_transaction`), and the service's session factory (directory
    entries are refreshed ahead of expiry in transactions of their own)."""

    conn: asyncpg.Connection
    sessions: async_sessionmaker[AsyncSession]
    _session: AsyncSession | None = None

    async def session(self) -> AsyncSession:
        if self._session is None:
            raise SessionNeeded
        return self._session


@asynccontextmanager
async def driver_transaction(
    pool: asyncpg.Pool, sessions: async_sessionmaker[AsyncSession], ctx: TenantContext
) -> AsyncIterator[RecordingTx]:
    """A transaction on a driver-pool connection; the context is set by `lock_matters`.
    Its outbox rows are relayed as soon as it commits (the relay is rung)."""
    with use_context(ctx):
        async with pool.acquire() as conn, conn.transaction():
            yield RecordingTx(conn, sessions)
    bell.ring(SCHEMA)


@asynccontextmanager
async def session_transaction(
    sessions: async_sessionmaker[AsyncSession], ctx: TenantContext
) -> AsyncIterator[RecordingTx]:
    """A `tenant_transaction`, with the asyncpg connection under it for this module."""
    async with tenant_transaction(sessions, ctx) as session:
        bell.mark(session, SCHEMA)
        yield RecordingTx(await driver_connection(session), sessions, session)


_LOCK_MATTERS = f"SELECT {context_sql(2)}, pg_advisory_xact_lock(hashtextextended($1, 0))"


async def lock_matters(conn: asyncpg.Connection, ctx: TenantContext, project_id: UUID) -> None:
    """Set the tenant context and serialise duplicate and group detection within one
    project (both until commit). The first statement of a driver transaction."""
    await conn.execute(_LOCK_MATTERS, f"intake:matter:{project_id}", *context_args(ctx))


def _read_matters_sql(by_household: bool, by_phone: bool) -> str:
    cols = ", ".join(f"c.{c}" for c in MATTER_COLUMNS)
    parts = [
        "WITH n AS ("
        " INSERT INTO intake.reference_counters AS rc (tenant_id, project_id, day, last)"
        " VALUES ($1, $2, $3, 1)"
        " ON CONFLICT (project_id, day) DO UPDATE SET last = rc.last + 1"
        " RETURNING last),"
        f" m AS ((SELECT 'recent'::text AS kind, {cols} FROM intake.complaints c"
        " WHERE c.project_id = $2 AND c.category = $4"
        " AND c.received_at >= $5 AND c.received_at <= $6 AND c.validity <> 'invalid'"
        " ORDER BY c.received_at DESC LIMIT $7)"
    ]
    # $8..$11: the window and the statuses; then the household, the phone, as known.
    who = []
    n = 12
    if by_household:
        who.append(f"c.household_id = ${n}")
        n += 1
    if by_phone:
        who.append(f"c.complainant_phone = ${n}")
    if who:
        parts.append(
            f" UNION ALL (SELECT 'handled'::text AS kind, {cols} FROM intake.complaints c"
            f" WHERE c.project_id = $2 AND c.category = $4 AND ({' OR '.join(who)})"
            " AND c.status = ANY($10::text[]) AND c.validity <> 'invalid'"
            " AND c.received_at >= $8 AND c.received_at <= $9"
            " ORDER BY c.received_at DESC LIMIT $11))"
        )
    else:
        parts.append(")")
    # The group's reference rides along: a complaint joining the group names it.
    parts.append(
        " SELECT n.last AS number, m.*, g.reference AS group_reference"
        " FROM n LEFT JOIN m ON true LEFT JOIN intake.group_cases g ON g.id = m.group_case_id"
    )
    return "".join(parts)


_READ_MATTERS = {(h, p): _read_matters_sql(h, p) for h in (True, False) for p in (True, False)}


@dataclass(frozen=True, slots=True)
class Matters:
    """What `read_matters` found: the drawn reference number and the two case lists."""

    number: int
    recent: list[Mapping[str, Any]]
    handled: list[Mapping[str, Any]]


async def read_matters(
    conn: asyncpg.Connection,
    *,
    tenant_id: UUID,
    project_id: UUID,
    day: date,
    category: str,
    around: datetime,
    window_hours: int,
    household_id: UUID | None,
    phone: str | None,
    repeat_window_days: int,
) -> Matters:
    """After `lock_matters`: the project's next reference number of `day` (given back by
    `give_back_number` if no case is opened), its cases of `category` received within
    `window_hours` of `around` (newest first), and the handled cases of the household or
    phone within `repeat_window_days` before `around` (none when neither is known)."""
    by = (household_id is not None, bool(phone))
    args: list[Any] = [
        tenant_id,
        project_id,
        day,
        category,
        around - timedelta(hours=window_hours),
        around + timedelta(hours=window_hours),
        RECENT_LIMIT,
    ]
    if by != (False, False):
        args += [around - timedelta(days=repeat_window_days), around, _HANDLED, HANDLED_LIMIT]
        args += [v for v, known in ((household_id, by[0]), (phone, by[1])) if known]
    rows = await conn.fetch(_READ_MATTERS[by], *args)
    recent = [r for r in rows if r["kind"] == "recent"]
    handled = [r for r in rows if r["kind"] == "handled"]
    return Matters(rows[0]["number"], recent, handled)


_LOCK_MEMBERS = (
    "SELECT id, version, grade, grade_reasons, group_case_id, status, validity"
    " FROM intake.complaints WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"
)


@dataclass(frozen=True, slots=True)
class LockedMember:
    """What a group member is now, read under its row lock."""

    version: int
    grade: str
    grade_reasons: list[str]
    group_case_id: UUID | None
    status: str  # the work-order consumer moves it; the member's timeline rows record it
    validity: str  # an approved invalidation makes it `invalid`: no longer a member


async def lock_members(conn: asyncpg.Connection, ids: Sequence[UUID]) -> dict[UUID, LockedMember]:
    """Lock the group members this complaint changes (in id order, as every multi-row
    locker here does) and read what others change without the project lock: the
    work-order consumer moves the version and the status, a staff override the grade and
    its reasons, an approved invalidation the validity."""
    rows = await conn.fetch(_LOCK_MEMBERS, list(ids))
    return {
        r["id"]: LockedMember(
            r["version"],
            r["grade"],
            list(r["grade_reasons"]),
            r["group_case_id"],
            r["status"],
            r["validity"],
        )
        for r in rows
    }


_COUNT_CALL = (
    "UPDATE intake.complaints c SET calls = c.calls + 1, version = c.version + 1,"
    " last_call_at = greatest(c.last_call_at, $2), updated_at = now()"
    " FROM intake.projects p WHERE c.id = $1 AND p.id = c.project_id"
    " AND c.status = ANY($3::text[]) AND c.validity <> 'invalid'"
    " RETURNING c.*, p.code AS project_code"
)
_OPEN = sorted(s.value for s in OPEN_STATUSES)


async def count_call(
    conn: asyncpg.Connection, complaint_id: UUID, received_at: datetime
) -> dict[str, Any]:
    """One more call from the household about this open case: the case after it, with
    `project_code` (the UPDATE locks the row; returning it saves reading it again).
    `CaseMoved` when the case is no longer open under the row lock: closed or invalidated
    since the matter was read (the UPDATE waits for such a change and checks the row it
    left)."""
    row = await conn.fetchrow(_COUNT_CALL, complaint_id, received_at, _OPEN)
    if row is None:  # found open by this transaction's matter read: moved since
        raise CaseMoved(f"case {complaint_id} is no longer open")
    case = dict(row)
    if isinstance(case["attachments"], str | bytes):
        case["attachments"] = orjson.loads(case["attachments"])
    return case


_GIVE_BACK = (
    "UPDATE intake.reference_counters SET last = last - 1"
    " WHERE project_id = $1 AND day = $2 AND last = $3"
)


async def give_back_number(conn: asyncpg.Connection, project_id: UUID, day: date, n: int) -> None:
    """Undo `read_matters`' draw when the call opens no case, so the day's references have
    no gaps. Safe: the project lock and the counter row's lock are held since the draw."""
    await conn.execute(_GIVE_BACK, project_id, day, n)


COMPLAINT_COLUMNS = (
    "id",
    "tenant_id",
    "project_id",
    "reference",
    "channel",
    "status",
    "validity",
    "category",
    "category_source",
    "category_reason",
    "grade",
    "grade_reasons",
    "complainant_name",
    "complainant_phone",
    "complainant_email",
    "household_id",
    "unit_id",
    "building",
    "room",
    "received_at",
    "recorded_at",
    "occurred_at",
    "place",
    "lat",
    "long",
    "content",
    "demand",
    "receiver",
    "attachments",
    "external_reference",
    "device_id",
    "previous_case_id",
    "prior_cases",
    "forwarded_result",
    "group_case_id",
    "flags",
    "calls",
    "last_call_at",
    "version",
    "created_by",
)
_JSON_COLUMNS = frozenset({"attachments"})
KEY_COLUMNS = (
    "tenant_id",
    "namespace",
    "key",
    "request_hash",
    "status_code",
    "response",
    "resource_id",
)


GROUP_COLUMNS = (
    "id",
    "tenant_id",
    "project_id",
    "reference",
    "category",
    "matter",
    "household_count",
)


@dataclass(frozen=True, slots=True)
class GroupCase:
    """The group case a complaint opens (`new`) or joins (its household count raised to at
    least `household_count`)."""

    id: UUID
    tenant_id: UUID
    project_id: UUID
    reference: str
    category: str
    matter: str
    household_count: int
    new: bool


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    """An earlier complaint a group complaint changes: linked to the group, raised to
    major (unless a staff override holds its grade: `grade` is then the one it has); its
    version moves by `versions` (one per event it gets)."""

    id: UUID
    grade: str
    grade_reasons: list[str]
    group_case_id: UUID
    versions: int


def _write_sql(
    complaint: bool, timeline: int, outbox: int, key: bool, group: str, members: bool
) -> str:
    ctes: list[str] = []
    n = 1
    if group == "new":
        values, n = values_sql(GROUP_COLUMNS, 1, n)
        ctes.append(
            f"g AS (INSERT INTO intake.group_cases ({', '.join(GROUP_COLUMNS)}) VALUES {values})"
        )
    elif group == "join":
        ctes.append(
            "g AS (UPDATE intake.group_cases SET"
            f" household_count = greatest(household_count, ${n + 1}), updated_at = now()"
            f" WHERE id = ${n})"
        )
        n += 2
    if members:
        ctes.append(
            "mu AS (UPDATE intake.complaints c SET grade = u.grade,"
            " grade_reasons = ARRAY(SELECT jsonb_array_elements_text(u.reasons)),"
            " group_case_id = u.group_case_id, version = c.version + u.versions,"
            " updated_at = now()"
            f" FROM unnest(${n}::uuid[], ${n + 1}::text[], ${n + 2}::jsonb[], ${n + 3}::uuid[],"
            f" ${n + 4}::int[]) AS u(id, grade, reasons, group_case_id, versions)"
            " WHERE c.id = u.id)"
        )
        n += 5
    if complaint:
        values, n = values_sql(COMPLAINT_COLUMNS, 1, n)
        cols = ", ".join(f'"{c}"' for c in COMPLAINT_COLUMNS)
        ctes.append(f"c AS (INSERT INTO intake.complaints ({cols}) VALUES {values})")
    if timeline:
        values, n = values_sql(TIMELINE_COLUMNS, timeline, n)
        cols = ", ".join(TIMELINE_COLUMNS)
        ctes.append(f"t AS (INSERT INTO intake.complaint_events ({cols}) VALUES {values})")
    if outbox:
        values, n = values_sql(OUTBOX_COLUMNS, outbox, n)
        cols = ", ".join(OUTBOX_COLUMNS)
        ctes.append(f"o AS (INSERT INTO intake.outbox ({cols}) VALUES {values})")
    if key:
        values, n = values_sql(KEY_COLUMNS, 1, n)
        cols = ", ".join(KEY_COLUMNS)
        ctes.append(
            f"k AS (INSERT INTO intake.idempotency_keys ({cols}) VALUES {values}"
            " ON CONFLICT (tenant_id, namespace, key) DO NOTHING RETURNING 1)"
        )
        final = "SELECT count(*) AS stored FROM k"
    else:
        final = "SELECT 1 AS stored"
    return "WITH " + ", ".join(ctes) + " " + final


_WRITES: dict[tuple[bool, int, int, bool, str, bool], str] = {}


@dataclass(frozen=True, slots=True)
class KeyRow:
    """The idempotency key row, with the final answer, as `write` stores it."""

    tenant_id: UUID
    namespace: str  # the caller's (`idempotency_cache.namespace`)
    key: str
    request_hash: bytes
    status_code: int
    response: dict[str, Any]
    resource_id: UUID | None


async def write(
    conn: asyncpg.Connection,
    *,
    complaint: Mapping[str, Any] | None,
    timeline: Sequence[Mapping[str, Any]],
    outbox: Sequence[Mapping[str, Any]],
    key: KeyRow | None,
    group: GroupCase | None = None,
    members: Sequence[MemberUpdate] = (),
) -> bool:
    """In one statement: the group case opened or joined, the group members' updates, the
    complaint (every column of `COMPLAINT_COLUMNS`), the timeline rows, the outbox rows (as
    `Outbox.rows` makes them) and the idempotency key. False when the key was already
    taken (by a request that committed while this one ran): the caller must roll back and
    replay what that request stored."""
    group_shape = "" if group is None else "new" if group.new else "join"
    shape = (
        complaint is not None,
        len(timeline),
        len(outbox),
        key is not None,
        group_shape,
        bool(members),
    )
    sql = _WRITES.get(shape)
    if sql is None:
        sql = _WRITES[shape] = _write_sql(*shape)
    args: list[Any] = []
    if group is not None and group.new:
        args += [getattr(group, c) for c in GROUP_COLUMNS]
    elif group is not None:
        args += [group.id, group.household_count]
    if members:
        args += [
            [m.id for m in members],
            [m.grade for m in members],
            [json_text(m.grade_reasons) for m in members],
            [m.group_case_id for m in members],
            [m.versions for m in members],
        ]
    if complaint is not None:
        args += [
            json_text(complaint[c]) if c in _JSON_COLUMNS else complaint[c]
            for c in COMPLAINT_COLUMNS
        ]
    args += timeline_args(timeline) + outbox_args(outbox)
    if key is not None:
        args += [
            key.tenant_id,
            key.namespace,
            key.key,
            key.request_hash,
            key.status_code,
            json_text(key.response),
            key.resource_id,
        ]
    return bool(await conn.fetchval(sql, *args))
