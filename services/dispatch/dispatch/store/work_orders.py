"""Work orders, their append-only steps and the chain of owners."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.lifecycle import State
from dispatch.domain.ownership import OrderView, OwnerChange


@dataclass(slots=True)
class WorkOrderRow:
    id: UUID
    tenant_id: UUID
    project_id: UUID
    complaint_id: UUID
    reference: str | None
    category: str
    grade: str
    building: str | None
    state: str
    department_id: UUID | None
    department_code: str | None
    handler_id: UUID | None
    owner_id: UUID | None
    pending_handover_to: UUID | None
    pending_handover_department_id: UUID | None
    rule_id: str
    routing_reason: str
    assignment_reason: str
    inform: list[str]
    after_hours: bool
    overnight_handover_at: datetime | None
    received_at: datetime
    recorded_at: datetime
    dispatched_at: datetime
    accepted_at: datetime | None = None
    resolved_at: datetime | None = None
    signed_off_at: datetime | None = None
    first_feedback_at: datetime | None = None
    last_follow_up_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None
    compensation: dict | None = None
    seq: int = 1

    def view(self) -> OrderView:
        return OrderView(
            state=State(self.state),
            department_id=self.department_id,
            handler_id=self.handler_id,
            owner_id=self.owner_id,
            pending_handover_to=self.pending_handover_to,
            pending_handover_department_id=self.pending_handover_department_id,
        )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_COLUMNS = ", ".join(f.name for f in fields(WorkOrderRow))
_MUTABLE = (
    "state",
    "grade",
    "category",  # a staff correction (complaint.overridden)
    "department_id",
    "department_code",
    "handler_id",
    "owner_id",
    "pending_handover_to",
    "pending_handover_department_id",
    "accepted_at",
    "resolved_at",
    "signed_off_at",
    "first_feedback_at",
    "last_follow_up_at",
    "closed_at",
    "resolution",
    "compensation",
    "seq",
    "after_hours",
    "overnight_handover_at",
    "assignment_reason",
)


def _row(r) -> WorkOrderRow:
    return WorkOrderRow(**dict(r._mapping))


async def insert(session: AsyncSession, wo: WorkOrderRow) -> bool:
    """False when the complaint already has a work order (a replayed event)."""
    params = wo.as_dict()
    params["compensation"] = None
    names = [f.name for f in fields(WorkOrderRow)]
    values = ", ".join(
        "CAST(:compensation AS jsonb)" if n == "compensation" else f":{n}" for n in names
    )
    result = await session.execute(
        text(
            f"INSERT INTO dispatch.work_orders ({_COLUMNS}) VALUES ({values})"
            " ON CONFLICT (tenant_id, complaint_id) DO NOTHING RETURNING id"
        ),
        params,
    )
    return result.first() is not None


async def get(
    session: AsyncSession, work_order_id: UUID, *, lock: bool = False, share: bool = False
) -> WorkOrderRow | None:
    # FOR UPDATE serialises concurrent steps on one order: the second waits, then sees the
    # state the first left and is refused with 409 if its step no longer applies. FOR
    # SHARE (a reader of the order with its history) waits for a step in flight and keeps
    # the next one out until the reader's transaction ends.
    suffix = " FOR UPDATE" if lock else " FOR SHARE" if share else ""
    r = (
        await session.execute(
            text(f"SELECT {_COLUMNS} FROM dispatch.work_orders WHERE id = :id{suffix}"),
            {"id": work_order_id},
        )
    ).first()
    return _row(r) if r else None


async def by_complaint(
    session: AsyncSession, complaint_id: UUID, *, lock: bool = False
) -> WorkOrderRow | None:
    suffix = " FOR UPDATE" if lock else ""
    r = (
        await session.execute(
            text(f"SELECT {_COLUMNS} FROM dispatch.work_orders WHERE complaint_id = :c{suffix}"),
            {"c": complaint_id},
        )
    ).first()
    return _row(r) if r else None


async def save(session: AsyncSession, wo: WorkOrderRow) -> None:
    sets = ", ".join(
        f"{c} = CAST(:{c} AS jsonb)" if c == "compensation" else f"{c} = :{c}" for c in _MUTABLE
    )
    params = {c: getattr(wo, c) for c in _MUTABLE}
    params["compensation"] = (
        orjson.dumps(wo.compensation).decode() if wo.compensation is not None else None
    )
    await session.execute(
        text(f"UPDATE dispatch.work_orders SET {sets}, updated_at = now() WHERE id = :id"),
        {**params, "id": wo.id},
    )


async def append_step(
    session: AsyncSession,
    wo: WorkOrderRow,
    *,
    action: str,
    from_state: str | None,
    actor: str,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    await session.execute(
        text(
            "INSERT INTO dispatch.work_order_steps (tenant_id, project_id, work_order_id, seq,"
            " action, from_state, to_state, actor, at, details) VALUES (:t, :p, :w, :seq,"
            " :action, :from_state, :to_state, :actor, :at, CAST(:details AS jsonb))"
        ),
        {
            "t": wo.tenant_id,
            "p": wo.project_id,
            "w": wo.id,
            "seq": wo.seq,
            "action": action,
            "from_state": from_state,
            "to_state": wo.state,
            "actor": actor,
            "at": at,
            "details": orjson.dumps(details or {}, default=str).decode(),
        },
    )


async def append_owner(session: AsyncSession, wo: WorkOrderRow, change: OwnerChange) -> None:
    await session.execute(
        text(
            "INSERT INTO dispatch.work_order_owners (tenant_id, project_id, work_order_id,"
            " from_staff_id, to_staff_id, to_department_id, kind, reason, at)"
            " VALUES (:t, :p, :w, :f, :to, :d, :k, :r, :at)"
        ),
        {
            "t": wo.tenant_id,
            "p": wo.project_id,
            "w": wo.id,
            "f": change.from_staff_id,
            "to": change.to_staff_id,
            "d": change.to_department_id,
            "k": change.kind,
            "r": change.reason,
            "at": change.at,
        },
    )


async def steps(session: AsyncSession, work_order_id: UUID) -> list[dict]:
    rows = await session.execute(
        text(
            "SELECT seq, action, from_state, to_state, actor, at, details"
            " FROM dispatch.work_order_steps WHERE work_order_id = :w ORDER BY seq"
        ),
        {"w": work_order_id},
    )
    return [dict(r._mapping) for r in rows]


async def owners(session: AsyncSession, work_order_id: UUID) -> list[dict]:
    rows = await session.execute(
        text(
            "SELECT from_staff_id, to_staff_id, to_department_id, kind, reason, at"
            " FROM dispatch.work_order_owners WHERE work_order_id = :w ORDER BY id"
        ),
        {"w": work_order_id},
    )
    return [dict(r._mapping) for r in rows]


async def first_owner(session: AsyncSession, work_order_id: UUID) -> OwnerChange | None:
    """The first entry of the chain of owners: the case's first receiver."""
    r = (
        await session.execute(
            text(
                "SELECT from_staff_id, to_staff_id, to_department_id, kind, reason, at"
                " FROM dispatch.work_order_owners WHERE work_order_id = :w ORDER BY id LIMIT 1"
            ),
            {"w": work_order_id},
        )
    ).first()
    return OwnerChange(**dict(r._mapping)) if r else None


async def mine(session: AsyncSession, staff_id: UUID, states: list[str]) -> list[WorkOrderRow]:
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM dispatch.work_orders"
            " WHERE (handler_id = :s OR pending_handover_to = :s OR owner_id = :s)"
            " AND state = ANY (:states) ORDER BY dispatched_at LIMIT 500"
        ),
        {"s": staff_id, "states": states},
    )
    return [_row(r) for r in rows]


async def board(
    session: AsyncSession,
    department_code: str,
    states: list[str],
    project_id: UUID | None,
    department_id: UUID | None = None,
) -> list[WorkOrderRow]:
    """Open orders of a department code; of one department of that code if `department_id`."""
    rows = await session.execute(
        text(BOARD),
        {"code": department_code, "states": states, "p": project_id, "d": department_id},
    )
    return [_row(r) for r in rows]


# Both read the tenant's orders of one department code through the index of migration 0011
# (tenant, department code, state), not every order of the tenant.
BOARD = (
    f"SELECT {_COLUMNS} FROM dispatch.work_orders"
    " WHERE department_code = :code AND state = ANY (:states)"
    " AND (CAST(:p AS uuid) IS NULL OR project_id = :p)"
    " AND (CAST(:d AS uuid) IS NULL OR department_id = :d)"
    " ORDER BY dispatched_at LIMIT 1000"
)
DEPARTMENT_CODE_USED = (
    "SELECT EXISTS (SELECT 1 FROM dispatch.work_orders WHERE department_code = :code)"
)


async def department_code_used(session: AsyncSession, department_code: str) -> bool:
    """Whether any order the caller may see carries this department code."""
    return bool(await session.scalar(text(DEPARTMENT_CODE_USED), {"code": department_code}))


async def claim_overnight_due(
    session: AsyncSession, now: datetime, states: list[str], limit: int
) -> list[tuple[UUID, UUID, UUID]]:
    """(id, tenant, project) of due after-hours orders, locked; other replicas skip them.

    Only orders still unresolved and still owned and handled by one person (the overnight
    receiver: the caller checks it is him against the chain of owners, which the system
    context of the claim cannot read)."""
    rows = await session.execute(
        text(
            "SELECT id, tenant_id, project_id FROM dispatch.work_orders"
            " WHERE overnight_handover_at IS NOT NULL AND overnight_handover_at <= :now"
            " AND state = ANY (:states) AND resolved_at IS NULL AND closed_at IS NULL"
            " AND owner_id = handler_id"
            " ORDER BY overnight_handover_at LIMIT :n FOR UPDATE SKIP LOCKED"
        ),
        {"now": now, "states": states, "n": limit},
    )
    return [(r.id, r.tenant_id, r.project_id) for r in rows]
