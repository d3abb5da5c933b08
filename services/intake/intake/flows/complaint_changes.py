"""Changes staff make to a recorded complaint: classification override, invalidation
(request, approve, reject) and flags. Each locks the complaint row, changes it, and writes
timeline + outbox in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from intake.api.schemas import ClassificationOverrideIn, DecisionIn, FlagIn, InvalidationIn
from intake.domain.case_status import CaseStatus
from intake.domain.grading import staff_override_reason
from intake.flows import history
from intake.flows.representation import complaint_body
from intake.store import complaints as store
from propdesk.db.session import tenant_transaction
from propdesk.events.contracts.complaint import (
    ComplaintFlagged,
    ComplaintInvalidationApproved,
    ComplaintInvalidationRejected,
    ComplaintInvalidationRequested,
    ComplaintOverridden,
    ComplaintStatusChanged,
)
from propdesk.service.problems import ProblemError
from propdesk.tenancy import TenantContext
from propdesk.uuid7 import uuid7


def not_found(complaint_id: UUID) -> ProblemError:
    # Same answer whether the complaint is another tenant's, outside the caller's projects,
    # or does not exist: existence is not revealed.
    return ProblemError(
        404, "Not Found", code="complaint-not-found", detail=f"No complaint {complaint_id}."
    )


def conflict(code: str, detail: str) -> ProblemError:
    return ProblemError(409, "Conflict", code=code, detail=detail)


async def _locked(s: AsyncSession, complaint_id: UUID) -> Row:
    row = await store.get_complaint(s, complaint_id, for_update=True)
    if row is None:
        raise not_found(complaint_id)
    return row


def _common(row: Row) -> dict[str, Any]:
    return {"complaint_id": row.id, "reference": row.reference, "project_id": row.project_id}


async def _emit(
    s: AsyncSession,
    ctx: TenantContext,
    row: Row,
    payload: Any,
    reason: str,
    status_after: str | None = None,
) -> None:
    """The change's timeline row and event. The row records the case's status after the
    change (`status_after`; unchanged by default), as work-order steps do, so a reader of
    the timeline (Open311's updates feed) never has to guess it."""
    seq = await history.bump_version(s, row.id)
    await history.record(
        s,
        ctx,
        project_id=row.project_id,
        complaint_id=row.id,
        seq=seq,
        payload=payload,
        reason=reason,
        data={"status_after": status_after or row.status},
    )


async def _reloaded(s: AsyncSession, complaint_id: UUID) -> dict[str, Any]:
    row = await store.get_complaint(s, complaint_id)
    assert row is not None
    return complaint_body(row._mapping)


async def override_classification(
    sessions: async_sessionmaker[AsyncSession],
    ctx: TenantContext,
    complaint_id: UUID,
    body: ClassificationOverrideIn,
) -> dict[str, Any]:
    async with tenant_transaction(sessions, ctx) as s:
        row = await _locked(s, complaint_id)
        category = body.category.value if body.category else row.category
        grade = body.grade.value if body.grade else row.grade
        changes: dict[str, Any] = {}
        if category != row.category:
            changes |= {
                "category": category,
                "category_source": "staff",
                "category_reason": f"overridden by {ctx.actor}: {body.reason}",
            }
        if grade != row.grade:
            changes |= {
                "grade": grade,
                "grade_reasons": [staff_override_reason(grade, body.reason)],
            }
        if not changes:
            raise conflict("no-change", "The complaint already has this classification.")
        await store.update_complaint(s, row.id, changes)
        await _emit(
            s,
            ctx,
            row,
            ComplaintOverridden(
                **_common(row),
                previous_category=row.category,
                category=category,
                previous_grade=row.grade,
                grade=grade,
                reason=body.reason,
                by=ctx.actor,
            ),
            body.reason,
        )
        return await _reloaded(s, row.id)


async def request_invalidation(
    sessions: async_sessionmaker[AsyncSession],
    ctx: TenantContext,
    complaint_id: UUID,
    body: InvalidationIn,
) -> dict[str, Any]:
    async with tenant_transaction(sessions, ctx) as s:
        row = await _locked(s, complaint_id)
        if row.validity == "invalid":
            raise conflict("already-invalid", "The complaint is already invalid.")
        if await store.pending_invalidation(s, row.id) is not None:
            raise conflict(
                "invalidation-pending", "An invalidation request is already waiting for approval."
            )
        request_id = uuid7()
        await store.insert_invalidation(
            s,
            {
                "id": request_id,
                "tenant_id": ctx.tenant_id,
                "project_id": row.project_id,
                "complaint_id": row.id,
                "reason": body.reason,
                "requested_by": ctx.actor,
            },
        )
        await _emit(
            s,
            ctx,
            row,
            ComplaintInvalidationRequested(
                **_common(row), request_id=request_id, reason=body.reason, requested_by=ctx.actor
            ),
            body.reason,
        )
        return {
            "request_id": str(request_id),
            "status": "pending",
            "complaint": await _reloaded(s, row.id),
        }


async def decide_invalidation(
    sessions: async_sessionmaker[AsyncSession],
    ctx: TenantContext,
    complaint_id: UUID,
    body: DecisionIn,
    *,
    approve: bool,
) -> dict[str, Any]:
    async with tenant_transaction(sessions, ctx) as s:
        row = await _locked(s, complaint_id)
        pending = await store.pending_invalidation(s, row.id)
        if pending is None:
            raise conflict("no-pending-invalidation", "No invalidation request is pending.")
        if pending.requested_by == ctx.actor:
            raise ProblemError(
                403,
                "Forbidden",
                code="own-request",
                detail="The requester of an invalidation cannot decide it; another "
                "supervisor must (四眼原则).",
            )
        status = "approved" if approve else "rejected"
        await store.decide_invalidation(s, pending.id, status, ctx.actor, body.comment)
        payload_cls = ComplaintInvalidationApproved if approve else ComplaintInvalidationRejected
        if approve:
            # Abnormal closure (非正常关闭): invalid and closed, never deleted.
            await store.update_complaint(
                s, row.id, {"validity": "invalid", "status": CaseStatus.INVALID.value}
            )
        await _emit(
            s,
            ctx,
            row,
            payload_cls(
                **_common(row),
                request_id=pending.id,
                reason=pending.reason,
                requested_by=pending.requested_by,
                decided_by=ctx.actor,
                comment=body.comment,
            ),
            body.comment or pending.reason,
            status_after=CaseStatus.INVALID.value if approve else None,
        )
        if approve:
            # Followers of the case state hear of every status change in one vocabulary.
            seq = await history.bump_version(s, row.id)
            await history.outbox.add(
                s,
                history.envelope(
                    ctx,
                    project_id=row.project_id,
                    complaint_id=row.id,
                    seq=seq,
                    payload=ComplaintStatusChanged(
                        **_common(row),
                        previous_status=row.status,
                        status=CaseStatus.INVALID.value,
                        cause=ComplaintInvalidationApproved.event_type,
                        at=datetime.now(UTC),
                        reason=pending.reason,
                    ),
                ),
            )
        return {
            "request_id": str(pending.id),
            "status": status,
            "complaint": await _reloaded(s, row.id),
        }


async def flag_complaint(
    sessions: async_sessionmaker[AsyncSession],
    ctx: TenantContext,
    complaint_id: UUID,
    body: FlagIn,
) -> dict[str, Any]:
    async with tenant_transaction(sessions, ctx) as s:
        row = await _locked(s, complaint_id)
        await store.insert_flag(
            s,
            {
                "tenant_id": ctx.tenant_id,
                "project_id": row.project_id,
                "complaint_id": row.id,
                "flag": body.flag,
                "reason": body.reason,
                "actor": ctx.actor,
            },
        )
        if body.flag not in row.flags:
            await store.update_complaint(s, row.id, {"flags": [*row.flags, body.flag]})
        await _emit(
            s,
            ctx,
            row,
            ComplaintFlagged(**_common(row), flag=body.flag, reason=body.reason, by=ctx.actor),
            body.reason,
        )
        return await _reloaded(s, row.id)
