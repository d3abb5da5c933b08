"""The on-duty roster: who works which shift in a project (duty leaders included)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from sqlalchemy import text
from starlette.requests import Request

from dispatch.api.deps import project_not_found, transaction
from dispatch.api.schemas import MAX_SHIFT, YEARS, ShiftIn, out_of_years
from dispatch.store import directory
from propdesk.auth.dependencies import require_staff
from propdesk.auth.roles import Role
from propdesk.service.input_types import Instant
from propdesk.service.problems import ProblemError, field_error, invalid
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1/rosters", tags=["rosters"])
EDITORS = (Role.TENANT_ADMIN, Role.DIRECTOR, Role.CS_SUPERVISOR, Role.DEPARTMENT_HEAD)


@router.post("/shifts", status_code=201)
async def add_shift(
    request: Request, body: ShiftIn, ctx: TenantContext = require_staff(*EDITORS)
) -> dict[str, Any]:
    if body.ends_at <= body.starts_at:
        raise invalid(
            "body.ends_at",
            "after_start",
            "must be after starts_at",
            detail="A shift ends after it starts.",
        )
    if body.ends_at - body.starts_at > MAX_SHIFT:
        raise invalid(
            "body.ends_at",
            "max_duration",
            f"at most {MAX_SHIFT.days} days after starts_at",
            detail=f"A shift lasts at most {MAX_SHIFT.days} days.",
        )
    assert ctx.tenant_id is not None
    async with transaction(request, ctx) as session:
        member = await directory.staff_facts(session, body.staff_id)
        if member is None or not member.active:
            raise invalid(
                "body.staff_id",
                "exists",
                "unknown staff member",
                detail=f"No active staff member {body.staff_id}.",
            )
        if await directory.get_project(session, body.project_id) is None:
            raise invalid(
                "body.project_id",
                "exists",
                "unknown project",
                detail=f"No project {body.project_id}.",
            )
        if body.project_id not in member.project_ids:
            # On duty for a project means receiving its complaints after hours: only staff
            # who work for it.
            raise invalid(
                "body.staff_id",
                "covers_project",
                "not staff of this project",
                detail=f"Staff member {body.staff_id} does not work for project {body.project_id}.",
            )
        # One person's shifts in a project do not overlap: a second one over the same hours
        # says nothing new, and no endpoint removes it. Two requests at once for the same
        # person queue on a lock, so the second sees the first.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"dispatch.roster:{body.project_id}:{body.staff_id}"},
        )
        clash = (
            await session.execute(
                text(
                    "SELECT id, starts_at, ends_at FROM dispatch.roster_shifts"
                    " WHERE project_id = :p AND staff_id = :s"
                    " AND starts_at < :b AND ends_at > :a ORDER BY starts_at, id LIMIT 1"
                ),
                {"p": body.project_id, "s": body.staff_id, "a": body.starts_at, "b": body.ends_at},
            )
        ).first()
        if clash is not None:
            raise ProblemError(
                409,
                "Conflict",
                code="shift-overlap",
                detail=(
                    f"Staff member {body.staff_id} already has shift {clash.id} in this project"
                    f" from {clash.starts_at.isoformat()} to {clash.ends_at.isoformat()}."
                ),
                errors=[
                    field_error(
                        "body.starts_at",
                        "no_overlap",
                        "overlaps another shift of the same staff member in this project",
                    )
                ],
                extensions={"overlapping_shift_id": clash.id},
            )
        shift_id = (
            await session.execute(
                text(
                    "INSERT INTO dispatch.roster_shifts (tenant_id, project_id, staff_id,"
                    " starts_at, ends_at, note, created_by) VALUES (:t, :p, :s, :a, :b, :n, :by)"
                    " RETURNING id"
                ),
                {
                    "t": ctx.tenant_id,
                    "p": body.project_id,
                    "s": body.staff_id,
                    "a": body.starts_at,
                    "b": body.ends_at,
                    "n": body.note,
                    "by": ctx.actor,
                },
            )
        ).scalar_one()
    return {"id": shift_id, **body.model_dump()}


@router.get("/on-duty")
async def on_duty_now(
    request: Request,
    project_id: UUID,
    # ISO 8601 text with a UTC offset: never a number (`iso8601`), never without an offset
    # (`timezone_required`).
    at: Instant | None = None,
    ctx: TenantContext = require_staff(*(r for r in Role if r is not Role.OPERATOR)),
) -> dict[str, Any]:
    if at is not None and out_of_years(at):
        raise invalid("query.at", "range", f"a time {YEARS}", detail=f"at must be a time {YEARS}.")
    at = at or datetime.now(UTC)
    async with transaction(request, ctx) as session:
        if await directory.get_project(session, project_id) is None:
            raise project_not_found(project_id)
        on_shift = {
            s.staff_id for s in await directory.shifts_at(session, project_id, at) if s.covers(at)
        }
        # As the assignment sees them: someone who left is on no one's duty any more.
        on_duty = await directory.active_staff(session, on_shift) if on_shift else set()
    return {"project_id": project_id, "at": at, "on_duty": sorted(str(s) for s in on_duty)}
