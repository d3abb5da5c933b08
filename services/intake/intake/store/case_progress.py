"""The work-order consumer's statements: dispatch's steps onto the complaint, as plain SQL on
the asyncpg connection of the consumer's transaction (same transaction as its inbox row,
same tenant context). Two round trips per step: `lock_case` (the complaint, locked, with the
names of the staff the step mentions) and `write_step` (timeline row, complaint update,
status event)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from intake.store.bulk_values import (
    OUTBOX_COLUMNS,
    TIMELINE_COLUMNS,
    outbox_args,
    timeline_args,
    values_sql,
)

# Staff named by one work-order event: handler, owner, and who rejected or handed over.
STAFF_SLOTS = 5
# The staff ids are five scalar parameters (NULL for an empty slot) unnested and joined,
# so the planner estimates five rows whatever they hold and settles on one generic plan.
# With `s.id = ANY($2::uuid[])`, or `s.id IN ($2, ..., $6)` (a custom plan skips the NULL
# slots), it priced the generic plan above a custom one and planned this statement afresh
# on every call: 0.35-0.42 ms of planning for 0.07-0.1 ms of work.
_LOCK_CASE = (
    "SELECT c.id, c.project_id, c.reference, c.status, c.version,"
    " c.work_order_id, c.work_order_seq, c.work_order_at,"
    " (SELECT coalesce(jsonb_object_agg(s.id::text, s.name || ' (' || s.code || ')'),"
    " '{}'::jsonb)::text FROM unnest(ARRAY["
    + ", ".join(f"${n}::uuid" for n in range(2, 2 + STAFF_SLOTS))
    + "]) AS k(id) JOIN intake.staff s ON s.id = k.id) AS names"
    " FROM intake.complaints c WHERE c.id = $1 FOR UPDATE OF c"
)


@dataclass(frozen=True, slots=True)
class Case:
    """What a step needs of its complaint, read under the row lock."""

    id: UUID
    project_id: UUID
    reference: str
    status: str
    version: int
    work_order_id: UUID | None
    work_order_seq: int
    work_order_at: datetime | None
    staff_names: dict[UUID, str]


async def lock_case(
    conn: asyncpg.Connection, complaint_id: UUID, staff_ids: Sequence[UUID]
) -> Case | None:
    """The complaint, locked until commit, and the display names ("name (code)") of
    `staff_ids` (at most `STAFF_SLOTS` distinct); None when the complaint is not visible."""
    slots: list[UUID | None] = list(dict.fromkeys(staff_ids))
    if len(slots) > STAFF_SLOTS:
        raise ValueError(f"at most {STAFF_SLOTS} staff per step, got {len(slots)}")
    slots += [None] * (STAFF_SLOTS - len(slots))
    row = await conn.fetchrow(_LOCK_CASE, complaint_id, *slots)
    if row is None:
        return None
    names = {UUID(k): v for k, v in orjson.loads(row["names"]).items()}
    return Case(
        row["id"],
        row["project_id"],
        row["reference"],
        row["status"],
        row["version"],
        row["work_order_id"],
        row["work_order_seq"],
        row["work_order_at"],
        names,
    )


@dataclass(frozen=True, slots=True)
class CaseUpdate:
    """The complaint after a step that is not late: its work order's newest step, its
    status (None: unchanged) and how far its version moves (one per event it emits)."""

    work_order_id: UUID
    work_order_seq: int
    work_order_at: datetime
    status: str | None
    versions: int


def _step_sql(update: bool, outbox: int) -> str:
    values, n = values_sql(TIMELINE_COLUMNS, 1, 1)
    ctes = [
        f"t AS (INSERT INTO intake.complaint_events ({', '.join(TIMELINE_COLUMNS)})"
        f" VALUES {values})"
    ]
    if update:
        ctes.append(
            "u AS (UPDATE intake.complaints SET"
            f" work_order_id = ${n}, work_order_seq = ${n + 1}, work_order_at = ${n + 2},"
            f" status = coalesce(${n + 3}::text, status), version = version + ${n + 4},"
            f" updated_at = now() WHERE id = ${n + 5})"
        )
        n += 6
    if outbox:
        values, n = values_sql(OUTBOX_COLUMNS, outbox, n)
        ctes.append(
            f"o AS (INSERT INTO intake.outbox ({', '.join(OUTBOX_COLUMNS)}) VALUES {values})"
        )
    return "WITH " + ", ".join(ctes) + " SELECT 1"


_STEPS: dict[tuple[bool, int], str] = {}


async def write_step(
    conn: asyncpg.Connection,
    *,
    complaint_id: UUID,
    timeline: Mapping[str, Any],
    update: CaseUpdate | None,
    outbox: Sequence[Mapping[str, Any]],
) -> None:
    """The step's timeline row, the complaint's update (none for a late step) and its
    outbox events, in one statement."""
    shape = (update is not None, len(outbox))
    sql = _STEPS.get(shape)
    if sql is None:
        sql = _STEPS[shape] = _step_sql(*shape)
    args = timeline_args([timeline])
    if update is not None:
        args += [
            update.work_order_id,
            update.work_order_seq,
            update.work_order_at,
            update.status,
            update.versions,
            complaint_id,
        ]
    args += outbox_args(outbox)
    await conn.execute(sql, *args)
