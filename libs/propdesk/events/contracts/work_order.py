"""Work-order (工作单) events, produced by the dispatch service.

Every event carries what the SLA, callback and reporting services need without asking
dispatch: the complaint, project, department, handler, owner, grade, category, state and
the instant of the step (`at`). Step-specific facts follow.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from propdesk.events.envelope import EventPayload


class _WorkOrderFacts(EventPayload):
    # No event_type: the registry skips this base.
    aggregate = "work_order"

    work_order_id: UUID
    complaint_id: UUID
    reference: str | None = None
    project_id: UUID
    department_id: UUID | None
    department_code: str | None
    handler_id: UUID | None
    owner_id: UUID | None
    grade: str
    category: str
    state: str
    at: datetime
    actor: str | None = None


class WorkOrderDispatched(_WorkOrderFacts):
    event_type = "work_order.dispatched"

    received_at: datetime
    recorded_at: datetime
    rule_id: str
    routing_reason: str
    assignment_reason: str
    inform: list[str] = []
    after_hours: bool = False
    # When the duty leader's unhandled case passes to the service center.
    overnight_handover_at: datetime | None = None
    # Years without holiday data between receipt and that hand-over (project-local dates):
    # working time there was counted on weekdays only. Added in a compatible way: left out
    # of the payload when empty, so the usual event is what readers of v1 always got.
    calendar_uncovered_years: list[int] = Field(default=[], exclude_if=lambda v: not v)


class WorkOrderAccepted(_WorkOrderFacts):
    event_type = "work_order.accepted"

    dispatched_at: datetime


class WorkOrderRejected(_WorkOrderFacts):
    event_type = "work_order.rejected"

    reason: str
    rejected_by: UUID | None


class WorkOrderReassigned(_WorkOrderFacts):
    event_type = "work_order.reassigned"

    from_department_id: UUID | None
    from_handler_id: UUID | None
    reason: str


class WorkOrderHandoverRequested(_WorkOrderFacts):
    event_type = "work_order.handover_requested"

    to_staff_id: UUID
    to_department_id: UUID | None
    reason: str


class WorkOrderHandedOver(_WorkOrderFacts):
    event_type = "work_order.handed_over"

    from_owner_id: UUID | None
    to_owner_id: UUID | None
    to_department_id: UUID | None
    kind: str  # first_receiver | handover_accepted | overnight_handover
    reason: str


class WorkOrderProgressed(_WorkOrderFacts):
    event_type = "work_order.progressed"

    note: str
    site_visit: bool = False
    photo_refs: list[str] = []


class WorkOrderResolved(_WorkOrderFacts):
    event_type = "work_order.resolved"

    resolution: str
    compensation: dict[str, object] | None = None
    decisions: list[str] = []
    approved_by: str | None = None


class WorkOrderSignedOff(_WorkOrderFacts):
    event_type = "work_order.signed_off"

    signed_by: str
    comment: str | None = None


class WorkOrderFeedbackGiven(_WorkOrderFacts):
    event_type = "work_order.feedback_given"

    channel: str
    content: str
    commitment: str | None = None
    first: bool  # the first feedback to the complainant (the 24-hour clock stops)
    result: bool  # the result feedback after sign-off (the callback may start)


class WorkOrderFollowedUp(_WorkOrderFacts):
    event_type = "work_order.followed_up"

    note: str


class WorkOrderClosed(_WorkOrderFacts):
    event_type = "work_order.closed"

    callback_result: str | None = None
    note: str | None = None


class WorkOrderReopened(_WorkOrderFacts):
    event_type = "work_order.reopened"

    reason: str
