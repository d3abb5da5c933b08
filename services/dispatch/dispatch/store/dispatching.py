"""The statements of dispatching a classified complaint (`flows.dispatching`), as plain SQL
on the session's asyncpg connection: the consumer's hottest path, run for every complaint.

No statement building and no per-statement span (the consume span covers the event), and
two round trips where there were fifteen: `lock_and_gather`, `write`. The
routing inputs that seldom change come from `routing_cache`. Every statement runs in the
caller's transaction, under the tenant context it set (the tables are FORCE RLS and the
role owns nothing), so the caller must have run a statement through the session first
(the consumer's inbox statement, or `tenant_transaction`'s context): that is what begins
the transaction on the connection underneath.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from dispatch.domain.assignment import Candidate, Shift
from dispatch.domain.ownership import OwnerChange
from dispatch.store.directory import OPEN_LOAD_STATES
from dispatch.store.work_orders import WorkOrderRow

# One round trip for the whole assignment: the complaint's lock (until commit; it
# serialises "is there an order yet?" with the repeat calls kept for the complaint,
# `store.duplicate_calls.lock_complaint`, same key $4) and its work order if it has one
# ($5; the first branch of the UNION ALL runs first, so the lock is taken before the
# rest is read); staff of the project ($1) in the department ($2), then, after hours,
# those with the role ($7) outside it, each with their open load; and the project's
# shifts around $3. A concurrent dispatch of the same complaint that commits while this
# one waits on the lock is not seen here, as before in the statement's snapshot: the
# order's unique key makes the write a no-op.
#
# The order is read by its unique (tenant $6, complaint) key and the department's staff by
# (tenant, department), whatever the size of the tenant. The role's holders are looked for
# among the tenant's staff: row-level security keeps the planner from the GIN index on
# project_ids (array containment is not leakproof), so the tenant is the narrowest index
# prefix there.
#
# Two statements, within hours and after hours, rather than one whose role branch a NULL
# role switched off: the planner priced that one's generic plan (which keeps the branch)
# above a custom plan for a NULL role (which drops it), so it planned the statement afresh
# for every complaint, 0.9 ms of the database's CPU for 0.4 ms of work in the bench. For
# the same reason the open states are written into the statement, not passed: the
# generic plan priced `= ANY ($n)` for an array of unknown length.
_OPEN_STATES = ", ".join(f"'{state}'" for state in OPEN_LOAD_STATES)


# A shift's times as seen from `at` ($3): clamped to `at` ± 8 days, beyond the 7 days
# either side the shifts are looked for in, which changes neither whether it covers `at`
# nor whether it is there at all. Rows stored before the API and migration 0010 bounded
# shift times may hold ±infinity (asyncpg reads them as naive datetime.min/max, which
# no aware instant compares with) or a year Python cannot represent: clamped, they are
# read as what they say about `at` (a shift from -infinity to noon covers the morning).
SHIFT_TIMES = (
    "greatest(r.starts_at, $3::timestamptz - interval '8 days'),"
    " least(r.ends_at, $3::timestamptz + interval '8 days')"
)


def _gather_sql(after_hours: bool) -> str:
    role_test = "$7::text = ANY (s.roles)" if after_hours else "false"
    staff_columns = (
        " s.id, s.department_id, s.roles, s.skills, s.active, s.last_assigned_at,"
        " (SELECT count(*) FROM dispatch.work_orders w WHERE w.tenant_id = s.tenant_id"
        f"  AND w.handler_id = s.id AND w.state IN ({_OPEN_STATES})) AS open_load,"
        " coalesce(s.department_id = $2::uuid, false) AS in_department,"
        f" coalesce({role_test}, false) AS has_role,"
        " NULL::timestamptz AS starts_at, NULL::timestamptz AS ends_at"
    )
    sql = (
        "SELECT 'order' AS kind, (SELECT w.id FROM dispatch.work_orders w"
        " WHERE w.tenant_id = $6::uuid AND w.complaint_id = $5::uuid) AS id,"
        " NULL::uuid AS department_id,"
        " NULL::text[] AS roles, NULL::text[] AS skills, NULL::boolean AS active,"
        " NULL::timestamptz AS last_assigned_at, NULL::bigint AS open_load,"
        " NULL::boolean AS in_department, NULL::boolean AS has_role,"
        " NULL::timestamptz AS starts_at, NULL::timestamptz AS ends_at"
        " FROM (SELECT pg_advisory_xact_lock(hashtextextended($4, 0))) AS locked"
        " UNION ALL "
        "SELECT 'staff'," + staff_columns + " FROM dispatch.staff s"
        " WHERE s.tenant_id = $6::uuid AND s.department_id = $2::uuid"
        " AND s.project_ids @> ARRAY[$1::uuid]"
    )
    if after_hours:
        sql += (
            " UNION ALL "
            "SELECT 'staff'," + staff_columns + " FROM dispatch.staff s"
            " WHERE s.tenant_id = $6::uuid AND s.project_ids @> ARRAY[$1::uuid]"
            " AND $7::text = ANY (s.roles)"
            " AND ($2::uuid IS NULL OR s.department_id IS DISTINCT FROM $2::uuid)"
        )
    return sql + (
        " UNION ALL"
        " SELECT 'shift', r.staff_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
        f" {SHIFT_TIMES} FROM dispatch.roster_shifts r"
        " WHERE r.project_id = $1::uuid AND r.ends_at > $3::timestamptz - interval '7 days'"
        " AND r.starts_at < $3::timestamptz + interval '7 days'"
    )


LOCK_AND_GATHER = {False: _gather_sql(False), True: _gather_sql(True)}


@dataclass(frozen=True, slots=True)
class People:
    department_staff: list[Candidate]
    with_role: list[Candidate]
    shifts: list[Shift]


async def lock_and_gather(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    complaint_id: UUID,
    project_id: UUID,
    at: datetime,
    *,
    department_id: UUID | None,
    role: str | None,
) -> tuple[UUID | None, People]:
    """Lock the complaint for this transaction; its work order's id if it has one, and
    what `directory.candidates` (department, role) and `directory.shifts_at` return."""
    staff: list[Candidate] = []
    leaders: list[Candidate] = []
    shifts: list[Shift] = []
    existing: UUID | None = None
    args: list[Any] = [
        project_id,
        department_id,
        at,
        f"dispatch:complaint:{complaint_id}",
        complaint_id,
        tenant_id,
    ]
    if role is not None:
        args.append(role)
    rows = await conn.fetch(LOCK_AND_GATHER[role is not None], *args)
    for r in rows:
        if r["kind"] == "order":
            existing = r["id"]
            continue
        if r["kind"] == "shift":
            shifts.append(Shift(r["id"], r["starts_at"], r["ends_at"]))
            continue
        c = Candidate(
            staff_id=r["id"],
            department_id=r["department_id"],
            roles=frozenset(r["roles"]),
            skills=frozenset(r["skills"]),
            active=r["active"],
            open_load=r["open_load"],
            last_assigned_at=r["last_assigned_at"],
        )
        if r["in_department"]:
            staff.append(c)
        if r["has_role"]:
            leaders.append(c)
    return existing, People(staff, leaders, shifts)


_ORDER_COLUMNS = [f.name for f in fields(WorkOrderRow)]
_N = len(_ORDER_COLUMNS)


def _p(i: int) -> str:
    return f"${_N + i}"


# The order (unless the complaint has one: a replay), its first step, the receiver's
# round-robin mark, the first owner (after hours), the repeat calls kept for the complaint
# (taken), and the events: one statement. Everything after the INSERT depends on it
# having inserted the order.
_WRITE = (
    "WITH wo AS (INSERT INTO dispatch.work_orders ("
    + ", ".join(_ORDER_COLUMNS)
    + ") VALUES ("
    + ", ".join(
        f"${i + 1}::jsonb" if c == "compensation" else f"${i + 1}"
        for i, c in enumerate(_ORDER_COLUMNS)
    )
    + ") ON CONFLICT (tenant_id, complaint_id) DO NOTHING RETURNING id, tenant_id, project_id),"
    " step AS (INSERT INTO dispatch.work_order_steps (tenant_id, project_id, work_order_id,"
    " seq, action, from_state, to_state, actor, at, details)"
    f" SELECT wo.tenant_id, wo.project_id, wo.id, 1, 'dispatch', NULL, {_p(1)}::text,"
    f" 'dispatch', {_p(2)}::timestamptz, {_p(3)}::jsonb FROM wo),"
    f" mark AS (UPDATE dispatch.staff SET last_assigned_at = {_p(2)}::timestamptz"
    f" WHERE id = {_p(4)}::uuid AND EXISTS (SELECT 1 FROM wo)),"
    " owner AS (INSERT INTO dispatch.work_order_owners (tenant_id, project_id, work_order_id,"
    " from_staff_id, to_staff_id, to_department_id, kind, reason, at)"
    f" SELECT wo.tenant_id, wo.project_id, wo.id, NULL, {_p(5)}::uuid, {_p(6)}::uuid,"
    f" {_p(7)}::text, {_p(8)}::text, {_p(2)}::timestamptz FROM wo WHERE {_p(7)}::text IS NOT NULL),"
    " kept AS (DELETE FROM dispatch.pending_duplicate_calls"
    f" WHERE complaint_id = {_p(9)}::uuid AND EXISTS (SELECT 1 FROM wo)"
    " RETURNING at, details, event_id),"
    " events AS (INSERT INTO dispatch.outbox (event_id, tenant_id, project_id, event_type,"
    " subject, envelope, trace_context)"
    " SELECT o.event_id, o.tenant_id, o.project_id, o.event_type, o.subject,"
    " o.envelope::jsonb, o.trace_context::jsonb"
    f" FROM unnest({_p(10)}::uuid[], {_p(11)}::uuid[], {_p(12)}::uuid[], {_p(13)}::text[],"
    f" {_p(14)}::text[], {_p(15)}::text[], {_p(16)}::text[])"
    " AS o(event_id, tenant_id, project_id, event_type, subject, envelope, trace_context)"
    " WHERE EXISTS (SELECT 1 FROM wo))"
    " SELECT (SELECT count(*) FROM wo) AS inserted, k.at, k.details, k.event_id"
    " FROM (SELECT 1) AS one LEFT JOIN kept k ON true"
)


@dataclass(frozen=True, slots=True)
class Written:
    inserted: bool
    # Repeat calls kept for the complaint, oldest first, now taken: (at, step details).
    kept_calls: list[tuple[datetime, dict[str, Any]]]


async def write(
    conn: asyncpg.Connection,
    wo: WorkOrderRow,
    *,
    step_details: dict[str, Any],
    assigned_staff_id: UUID | None,
    first_owner: OwnerChange | None,
    outbox_rows: list[dict[str, object]],
) -> Written:
    order = wo.as_dict()
    order["compensation"] = None
    rows = await conn.fetch(
        _WRITE,
        *(order[c] for c in _ORDER_COLUMNS),
        wo.state,
        wo.dispatched_at,
        orjson.dumps(step_details, default=str).decode(),
        assigned_staff_id,
        first_owner.to_staff_id if first_owner else None,
        first_owner.to_department_id if first_owner else None,
        first_owner.kind if first_owner else None,
        first_owner.reason if first_owner else None,
        wo.complaint_id,
        [r["event_id"] for r in outbox_rows],
        [r["tenant_id"] for r in outbox_rows],
        [r["project_id"] for r in outbox_rows],
        [r["event_type"] for r in outbox_rows],
        [r["subject"] for r in outbox_rows],
        [r["envelope"] for r in outbox_rows],
        [r["trace_context"] for r in outbox_rows],
    )
    kept = sorted(
        (r for r in rows if r["event_id"] is not None),
        key=lambda r: (r["at"], str(r["event_id"])),
    )
    return Written(
        inserted=bool(rows[0]["inserted"]),
        kept_calls=[(r["at"], _json(r["details"])) for r in kept],
    )


def _json(value: Any) -> dict[str, Any]:
    # The session's connection decodes jsonb; a plain asyncpg one returns the text.
    return dict(orjson.loads(value) if isinstance(value, str | bytes) else value)
