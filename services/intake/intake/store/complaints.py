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
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

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


def search_condition(q: str) -> Any:
    pattern = _like(q)
    if has_trigrams(q):
        # Through the owner's function: under RLS the planner never uses an index for
        # ILIKE (see migration 0001), so the trigram index is read there.
        return complaints.c.id.in_(
            select(func.intake.search_complaint_ids(pattern, type_=complaints.c.id.type))
        )
    return complaints.c.search_text.ilike(pattern, escape="\\")


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
    conds = []
    if project_id is not None:
        conds.append(complaints.c.project_id == project_id)
    for column, value in (
        (complaints.c.status, status),
        (complaints.c.grade, grade),
        (complaints.c.category, category),
        (complaints.c.channel, channel),
    ):
        if value is not None:
            conds.append(column == value)
    if received_from is not None:
        conds.append(complaints.c.received_at >= received_from)
    if received_to is not None:
        conds.append(complaints.c.received_at < received_to)
    if q:
        conds.append(search_condition(q))
    if after is not None:
        conds.append(tuple_(complaints.c.received_at, complaints.c.id) < tuple_(*after))
    return (
        select(complaints, projects.c.code.label("project_code"))
        .join(projects, projects.c.id == complaints.c.project_id)
        .where(and_(True, *conds))
        .order_by(complaints.c.received_at.desc(), complaints.c.id.desc())
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
