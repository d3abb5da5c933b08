"""The reads Open311 needs beyond intake's store: several ids or references at once,
several categories, open/closed filtering, and ticket-id tokens. The only I/O in this
package; every query runs inside the caller's tenant transaction (RLS scopes it)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import Row, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from intake.open311.service_requests import MAX_RESULTS, RequestQuery, native_statuses
from intake.store.tables import complaint_events, complaints, idempotency_keys, projects

_COLUMNS = (complaints, projects.c.code.label("project_code"), projects.c.name.label("agency"))


async def visible_projects(session: AsyncSession, limit: int = 2) -> Sequence[Row]:
    return list(
        await session.execute(
            select(projects.c.id, projects.c.code).order_by(projects.c.code).limit(limit)
        )
    )


async def find_requests(
    session: AsyncSession, project_id: UUID | None, query: RequestQuery
) -> list[Row]:
    conds = []
    if project_id is not None:
        conds.append(complaints.c.project_id == project_id)
    if query.by_id:
        # The spec: service_request_id "overrides all other arguments".
        conds.append(
            or_(
                complaints.c.id.in_(query.ids or [UUID(int=0)]),
                complaints.c.reference.in_(query.references or [""]),
            )
        )
    else:
        conds.append(complaints.c.received_at >= query.start)
        conds.append(complaints.c.received_at <= query.end)
        if query.service_codes:
            conds.append(complaints.c.category.in_(query.service_codes))
        statuses, exclude = native_statuses(query.statuses)
        if statuses is not None:
            column = complaints.c.status
            conds.append(column.not_in(statuses) if exclude else column.in_(statuses))
    stmt = (
        select(*_COLUMNS)
        .join(projects, projects.c.id == complaints.c.project_id)
        .where(and_(True, *conds))
        .order_by(complaints.c.received_at.desc(), complaints.c.id.desc())
        .limit(MAX_RESULTS)
    )
    return list(await session.execute(stmt))


async def request_for_token(
    session: AsyncSession, project_id: UUID | None, token: str, *, actor: str, namespace: str
) -> Row | None:
    """The complaint a token names for this caller: the Idempotency-Key it sent (kept 48
    hours; `namespace` is the caller's, `idempotency_cache.namespace`), else its ticket id
    (the external reference of a complaint it recorded, or of a repeat call of its that
    joined an open case). Only what this caller (`actor`: the API key or staff member)
    recorded: two call centres of one project may use the same ticket numbers, and
    neither learns of the other's."""
    own_key = complaints.c.id.in_(
        select(idempotency_keys.c.resource_id).where(
            idempotency_keys.c.namespace == namespace,
            idempotency_keys.c.key.in_([token, f"open311:{token}"]),
            idempotency_keys.c.resource_id.is_not(None),
        )
    )
    own_ticket = and_(complaints.c.external_reference == token, complaints.c.created_by == actor)
    # A repeat call creates no complaint: its ticket id is on the joined case's timeline.
    own_repeat = complaints.c.id.in_(
        select(complaint_events.c.complaint_id).where(
            complaint_events.c.type == "complaint.duplicate_joined",
            complaint_events.c.actor == actor,
            complaint_events.c.data["external_reference"].astext == token,
        )
    )
    for target in (own_key, own_ticket, own_repeat):
        stmt = (
            select(*_COLUMNS)
            .join(projects, projects.c.id == complaints.c.project_id)
            .where(target)
            .order_by(complaints.c.received_at)
            .limit(1)
        )
        if project_id is not None:
            stmt = stmt.where(complaints.c.project_id == project_id)
        if (row := (await session.execute(stmt)).first()) is not None:
            return row
    return None


async def find_updates(
    session: AsyncSession, project_id: UUID | None, query: RequestQuery
) -> list[Row]:
    """Timeline entries in the query's window (oldest first, as a feed is read)."""
    conds = [complaint_events.c.at >= query.start, complaint_events.c.at <= query.end]
    if project_id is not None:
        conds.append(complaint_events.c.project_id == project_id)
    stmt = (
        select(complaint_events)
        .where(*conds)
        .order_by(complaint_events.c.at, complaint_events.c.id)
        .limit(MAX_RESULTS)
    )
    return list(await session.execute(stmt))
