"""Complaint (case) events, produced by the intake service."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from propdesk.events.envelope import EventPayload


class ComplaintReceived(EventPayload):
    event_type = "complaint.received"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    channel: str
    received_at: datetime
    recorded_at: datetime
    category: str | None = None
    unit_id: UUID | None = None
    building: str | None = None
    place: str | None = None
    summary: str
    receiver: str | None = None
    external_reference: str | None = None
    # The full record, so dispatch, callback and reporting never read intake's tables.
    project_code: str | None = None
    room: str | None = None
    household_id: UUID | None = None
    complainant_name: str | None = None
    complainant_phone: str | None = None
    occurred_at: datetime | None = None
    content: str | None = None
    demand: str | None = None
    attachments: list[dict[str, str | None]] = []
    group_case_id: UUID | None = None
    complainant_email: str | None = None
    lat: float | None = None  # WGS84 degrees
    long: float | None = None
    device_id: str | None = None
    # 二次投诉: the earlier case on the same matter, and how many handled cases came before
    # this one (1 = second complaint, 2 = third). The grade already reflects it.
    previous_case_id: UUID | None = None
    prior_cases: int = 0
    # "dissatisfied": a callback result forwarded by the call center, group or quality dept.
    forwarded_result: str | None = None


class ComplaintClassified(EventPayload):
    event_type = "complaint.classified"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    channel: str
    category: str
    grade: str
    grade_reasons: list[str]
    category_reason: str
    received_at: datetime
    recorded_at: datetime
    building: str | None = None
    unit_id: UUID | None = None
    group_case_id: UUID | None = None
    # Where the matter is (地下车库B2, 3号门岗): dispatch's place rules route on it.
    place: str | None = None


class ComplaintRegraded(EventPayload):
    event_type = "complaint.regraded"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    previous_grade: str | None
    grade: str
    grade_reasons: list[str]
    reason: str
    group_case_id: UUID | None = None


class ComplaintGrouped(EventPayload):
    """The complaint is part of a group case (群体性投诉): three or more households on the
    same matter. `notify_complainant` asks whoever talks to the caller to tell them."""

    event_type = "complaint.grouped"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    group_case_id: UUID
    group_reference: str
    household_count: int
    member_ids: list[UUID]
    category: str | None = None
    notify_complainant: bool = True
    notify_reason: str = "group_case"


class ComplaintDuplicateJoined(EventPayload):
    """The same household called again about an open case on the same matter: the call is
    recorded on that case (no new complaint, no new work order). The aggregate is the open
    case; the fields after `reason` describe the call that joined it."""

    event_type = "complaint.duplicate_joined"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    reason: str
    # How many times the household has called about this case, the first call included.
    calls: int = Field(ge=2)
    call_id: UUID
    channel: str
    received_at: datetime
    recorded_at: datetime
    receiver: str | None = None
    external_reference: str | None = None
    complainant_name: str | None = None
    complainant_phone: str | None = None
    summary: str
    content: str
    demand: str | None = None
    attachments: list[dict[str, str | None]] = []


class ComplaintOverridden(EventPayload):
    """Staff corrected the category and/or grade, with a reason."""

    event_type = "complaint.overridden"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    previous_category: str | None
    category: str | None
    previous_grade: str | None
    grade: str | None
    reason: str
    by: str


class ComplaintInvalidationRequested(EventPayload):
    event_type = "complaint.invalidation_requested"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    request_id: UUID
    reason: str
    requested_by: str


class ComplaintInvalidationApproved(EventPayload):
    """Abnormal closure (非正常关闭) approved: the complaint is invalid and closed."""

    event_type = "complaint.invalidation_approved"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    request_id: UUID
    reason: str
    requested_by: str
    decided_by: str
    comment: str | None = None


class ComplaintInvalidationRejected(EventPayload):
    event_type = "complaint.invalidation_rejected"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    request_id: UUID
    reason: str
    requested_by: str
    decided_by: str
    comment: str | None = None


class ComplaintFlagged(EventPayload):
    """Marked malicious or defamatory: kept, never deleted."""

    event_type = "complaint.flagged"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    flag: str
    reason: str
    by: str


class ComplaintStatusChanged(EventPayload):
    """The case's status moved (received → dispatched → … → closed, reopened, invalid), so
    SLA, callback and reporting can follow the case without reading work-order events.

    `cause` is the event that moved it (e.g. `work_order.accepted`); `at` is when the step
    happened, which may be earlier than this event when work-order events arrive late."""

    event_type = "complaint.status_changed"
    aggregate = "complaint"

    complaint_id: UUID
    reference: str
    project_id: UUID
    previous_status: str
    status: str
    cause: str
    at: datetime
    work_order_id: UUID | None = None
    department_code: str | None = None
    handler_id: UUID | None = None
    reason: str | None = None
