"""Queries over complaints, their history and group cases (recording: `store.recording`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Row,
    Select,
    and_,
    column,
    func,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import FromClause, LateralFromClause

from intake.store.tables import (
    complaint_events,
    complaint_flags,
    complaints,
    invalidation_requests,
    projects,
)


async def complaint_by_ref(session: AsyncSession, ref: str) -> Row | None:
    """A complaint the caller may see, by id or by reference."""
    try:
        cond = complaints.c.id == UUID(ref)
    except ValueError:
        cond = complaints.c.reference == ref
    return (await session.execute(select(complaints).where(cond))).first()


async def get_complaint(
    session: AsyncSession, complaint_id: UUID, *, for_update: bool = False
) -> Row | None:
    q = (
        select(complaints, projects.c.code.label("project_code"))
        .join(projects, projects.c.id == complaints.c.project_id)
        .where(complaints.c.id == complaint_id)
    )
    if for_update:
        q = q.with_for_update(of=complaints)
    return (await session.execute(q)).first()


async def update_complaint(
    session: AsyncSession, complaint_id: UUID, values: dict[str, Any]
) -> None:
    await session.execute(
        update(complaints)
        .where(complaints.c.id == complaint_id)
        .values(**values, updated_at=func.now())
    )


_INSERT_EVENT = complaint_events.insert()


async def append_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Several timeline rows in one round trip; every row has the same keys (tenant_id,
    project_id, complaint_id, type, actor, reason, data)."""
    if rows:
        await session.execute(_INSERT_EVENT, rows)


async def timeline(session: AsyncSession, complaint_id: UUID) -> list[Row]:
    q = (
        select(complaint_events)
        .where(complaint_events.c.complaint_id == complaint_id)
        .order_by(complaint_events.c.id)
    )
    return list(await session.execute(q))


def _like(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_WORD = re.compile(r"[^\W_]{3,}")


def has_trigrams(q: str) -> bool:
    """Whether pg_trgm can take trigrams from the query (a run of three or more letters or
    digits, any script). Without one the trigram index would be read whole, every
    tenant's entries included, so short queries filter the caller's rows instead."""
    return _WORD.search(q) is not None


def searched_complaints(q: str) -> tuple[FromClause, LateralFromClause]:
    """The complaints whose text contains `q` (trigram search): the FROM item to select
    from, and its subquery with the columns of `complaints`.

    Under RLS the planner never uses an index for ILIKE (see migration 0001), so the
    trigram index is read by the owner's `intake.search_complaint_ids`, and each id it
    finds is fetched by primary key in a LATERAL subquery that OFFSET 0 keeps from being
    flattened. That order is fixed, not a cost estimate: as `id IN (SELECT ...)`, or even
    `id = ANY(ARRAY(...))`, the planner could choose to read every complaint of the
    caller's projects and keep the found ones, and with many small projects beside one
    large one it did."""
    found = (
        func.intake.search_complaint_ids(_like(q), type_=complaints.c.id.type)
        .table_valued(column("id", complaints.c.id.type))
        .render_derived("found")
    )
    one = select(complaints).where(complaints.c.id == found.c.id).offset(0).lateral("c")
    return found.join(one, true()), one


def list_statement(
    *,
    project_id: UUID | None = None,
    status: str | None = None,
    grade: str | None = None,
    category: str | None = None,
    channel: str | None = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    q: str | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> Select:
    """Newest first; `after` is the (received_at, id) of the last row of the previous page."""
    source: Any = complaints
    rows: Any = complaints
    conds = []
    if q and has_trigrams(q):
        source, rows = searched_complaints(q)
    elif q:
        # No trigram to look up: the caller's rows are filtered instead.
        conds.append(rows.c.search_text.ilike(_like(q), escape="\\"))
    if project_id is not None:
        conds.append(rows.c.project_id == project_id)
    for name, value in (
        ("status", status),
        ("grade", grade),
        ("category", category),
        ("channel", channel),
    ):
        if value is not None:
            conds.append(rows.c[name] == value)
    if received_from is not None:
        conds.append(rows.c.received_at >= received_from)
    if received_to is not None:
        conds.append(rows.c.received_at < received_to)
    if after is not None:
        conds.append(tuple_(rows.c.received_at, rows.c.id) < tuple_(*after))
    return (
        select(rows, projects.c.code.label("project_code"))
        .select_from(source)
        .join(projects, projects.c.id == rows.c.project_id)
        .where(and_(True, *conds))
        .order_by(rows.c.received_at.desc(), rows.c.id.desc())
        .limit(limit)
    )


async def list_complaints(session: AsyncSession, **filters: Any) -> list[Row]:
    """`list_statement(**filters)`, run."""
    return list(await session.execute(list_statement(**filters)))


async def pending_invalidation(session: AsyncSession, complaint_id: UUID) -> Row | None:
    q = (
        select(invalidation_requests)
        .where(
            invalidation_requests.c.complaint_id == complaint_id,
            invalidation_requests.c.status == "pending",
        )
        .with_for_update()
    )
    return (await session.execute(q)).first()


async def insert_invalidation(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(invalidation_requests.insert().values(**values))


async def decide_invalidation(
    session: AsyncSession, request_id: UUID, status: str, decided_by: str, comment: str | None
) -> None:
    await session.execute(
        update(invalidation_requests)
        .where(invalidation_requests.c.id == request_id)
        .values(status=status, decided_by=decided_by, decided_at=func.now(), comment=comment)
    )


async def insert_flag(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(complaint_flags.insert().values(**values))
