"""`/v1/complaints`: record, read, list, timeline, classification override."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Query
from starlette.requests import Request
from starlette.responses import Response

from intake.api.deps import (
    OVERRIDE_ROLES,
    RECORD_ROLES,
    driver_pool_of,
    idempotency_prefetch_of,
    redis_of,
    sessions_of,
)
from intake.api.directory import ProjectQuery
from intake.api.schemas import ClassificationOverrideIn, ComplaintIn
from intake.domain.case_status import CaseStatus
from intake.domain.vocabulary import Category, Channel, Grade
from intake.flows.complaint_changes import not_found, override_classification
from intake.flows.record_complaint import record_complaint
from intake.flows.representation import complaint_body
from intake.store import complaints as store
from intake.store import tenants as directory
from propdesk.auth.dependencies import require_staff
from propdesk.db.session import tenant_transaction
from propdesk.service.input_types import Instant
from propdesk.service.problems import invalid
from propdesk.service.text import NoNul
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1/complaints", tags=["complaints"])

MAX_IDEMPOTENCY_KEY = 255


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


RECORD_RESPONSES: dict[int | str, dict[str, object]] = {
    201: {
        "description": "A new case: the complaint as recorded, with `case.kind` `new` or "
        "`group` (then `group_case_id`, `group_reference`, `household_count`, "
        "`notify_complainant: true`)."
    },
    200: {
        "description": "A duplicate: the same household (unit or phone) on the same matter "
        "while its case is open. Nothing new is created: the call is counted (`calls`, "
        "`last_call_at`) and put on that case's timeline (`complaint.duplicate_joined`), and "
        "the answer is that case, with `case: {kind: duplicate, joined: <its id>, reference: "
        "<its reference>, reason, calls}`."
    },
}


@router.post("", status_code=201, responses=RECORD_RESPONSES)
async def create_complaint(
    request: Request,
    body: ComplaintIn,
    ctx: TenantContext = require_staff(*RECORD_ROLES),
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Record a complaint, or join the household's open case on the same matter.

    With an `Idempotency-Key`, a retry with the same body gets the first answer again
    (same status and body, header `Idempotent-Replayed: true`)."""
    if idempotency_key is not None and len(request.headers.getlist("idempotency-key")) > 1:
        # Which one would the caller mean? Each would make its own complaint.
        raise invalid("header.Idempotency-Key", "single", "one Idempotency-Key header")
    if idempotency_key is not None and (
        not idempotency_key.strip()
        or len(idempotency_key) > MAX_IDEMPOTENCY_KEY
        or not idempotency_key.isascii()  # HTTP gives other bytes as latin-1: mangled
        or not idempotency_key.isprintable()
    ):
        raise invalid(
            "header.Idempotency-Key",
            "format",
            f"1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
        )
    result = await record_complaint(
        sessions_of(request),
        driver_pool_of(request),
        redis_of(request),
        ctx,
        body,
        idempotency_key,
        prefetched=idempotency_prefetch_of(request),
    )
    headers = {"Location": f"/v1/complaints/{result.body['id']}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(result.status, result.body, headers)


def _encode_cursor(received_at: datetime, complaint_id: UUID) -> str:
    raw = orjson.dumps([received_at.isoformat(), str(complaint_id)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, cid = orjson.loads(raw)
        when, complaint_id = datetime.fromisoformat(at), UUID(cid)
        if when.utcoffset() is None:
            raise ValueError("naive")
        when.astimezone(UTC)  # out-of-range instants fail here, not in the driver
        return when, complaint_id
    except (
        binascii.Error,
        ValueError,
        TypeError,
        AttributeError,
        OverflowError,
        orjson.JSONDecodeError,
    ):
        raise invalid("query.cursor", "format", "not a cursor this API returned") from None


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        raise invalid(field, "timezone_required", "must include a UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise invalid(field, "range", "out of range") from None


@router.get("")
async def list_complaints(
    request: Request,
    ctx: TenantContext = require_staff(),
    project: ProjectQuery = None,
    status: CaseStatus | None = None,
    grade: Grade | None = None,
    category: Category | None = None,
    channel: Channel | None = None,
    received_from: Instant | None = None,
    received_to: Instant | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200), NoNul] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    after = _decode_cursor(cursor) if cursor else None
    received_from = _aware(received_from, "query.received_from")
    received_to = _aware(received_to, "query.received_to")
    if received_from is not None and received_to is not None and received_from > received_to:
        # An empty list would read as "no complaints then", not as a range given backwards.
        raise invalid(
            "query.received_from",
            "before_or_equal_to",
            "must not be after received_to",
            detail=f"received_from ({received_from.isoformat()}) is after received_to "
            f"({received_to.isoformat()}).",
        )
    async with tenant_transaction(sessions_of(request), ctx) as s:
        project_id = None
        if project is not None:
            found = await directory.project_by_ref(s, project)
            if found is None:
                # Unknown and out-of-scope projects look the same: nothing to list.
                return _json(200, {"items": [], "next_cursor": None})
            project_id = found.id
        rows = await store.list_complaints(
            s,
            project_id=project_id,
            status=status.value if status else None,
            grade=grade.value if grade else None,
            category=category.value if category else None,
            channel=channel.value if channel else None,
            received_from=received_from,
            received_to=received_to,
            q=q,
            after=after,
            limit=limit + 1,
        )
    items = [complaint_body(r._mapping) for r in rows[:limit]]
    next_cursor = (
        _encode_cursor(rows[limit - 1].received_at, rows[limit - 1].id)
        if len(rows) > limit
        else None
    )
    return _json(200, {"items": items, "next_cursor": next_cursor})


@router.get("/{complaint_id}")
async def get_complaint(
    request: Request, complaint_id: UUID, ctx: TenantContext = require_staff()
) -> Response:
    async with tenant_transaction(sessions_of(request), ctx) as s:
        row = await store.get_complaint(s, complaint_id)
    if row is None:
        raise not_found(complaint_id)
    return _json(200, complaint_body(row._mapping))


@router.get("/{complaint_id}/timeline")
async def get_timeline(
    request: Request, complaint_id: UUID, ctx: TenantContext = require_staff()
) -> Response:
    async with tenant_transaction(sessions_of(request), ctx) as s:
        row = await store.get_complaint(s, complaint_id)
        if row is None:
            raise not_found(complaint_id)
        events = await store.timeline(s, complaint_id)
    return _json(
        200,
        {
            "complaint_id": str(complaint_id),
            "reference": row.reference,
            "events": [
                {
                    "seq": i + 1,
                    "type": e.type,
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "reason": e.reason,
                    "data": e.data,
                }
                for i, e in enumerate(events)
            ],
        },
    )


@router.post("/{complaint_id}/classification")
async def override(
    request: Request,
    complaint_id: UUID,
    body: ClassificationOverrideIn,
    ctx: TenantContext = require_staff(*OVERRIDE_ROLES),
) -> Response:
    return _json(200, await override_classification(sessions_of(request), ctx, complaint_id, body))
