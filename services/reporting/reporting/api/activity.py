from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from propdesk.auth.dependencies import require_staff
from propdesk.db.session import tenant_transaction
from propdesk.service.problems import ProblemError, field_error
from propdesk.tenancy import TenantContext
from reporting import activity

router = APIRouter(prefix="/v1", tags=["activity"])

MAX_RANGE_DAYS = 366


class ActivityRow(BaseModel):
    project_id: UUID
    project_code: str | None
    day: date
    event_type: str
    count: int


@router.get("/activity", response_model=list[ActivityRow])
async def get_activity(
    request: Request,
    since: date | None = Query(
        None, alias="from", description="first local day (default: 30 days ago)"
    ),
    until: date | None = Query(None, alias="to", description="last local day (default: today)"),
    project_id: UUID | None = Query(None, alias="project"),
    ctx: TenantContext = require_staff(),
) -> list[dict]:
    until = until or date.today()
    since = since or until - timedelta(days=30)
    if since > until:
        raise ProblemError(
            422,
            "Invalid date range",
            code="invalid-range",
            errors=[
                field_error("query.from", "before_or_equal_to", "'from' must not be after 'to'")
            ],
        )
    if (until - since).days > MAX_RANGE_DAYS:
        raise ProblemError(
            422,
            "Date range too long",
            code="invalid-range",
            errors=[field_error("query.to", "max_days", f"at most {MAX_RANGE_DAYS} days")],
        )
    async with tenant_transaction(request.app.state.resources.sessions, ctx) as session:
        return await activity.activity(session, since=since, until=until, project_id=project_id)
