"""The case's status (投诉状态) and how dispatch's work-order steps move it.

Intake owns the complaint record; dispatch owns the work order. The record follows the work
order through its events, so the front desk, the Open311 API and the other services read
one status per case without asking dispatch.

    received ─▶ dispatched ─▶ accepted ─▶ in_progress ─▶ resolved ─▶ signed_off
                                                                        │
          reopened ◀── resolved | signed_off | feedback_given | closed  ▼
                                        closed ◀── feedback_given ◀─────┘
    invalid: abnormal closure (非正常关闭) approved in intake; terminal.

**Ordering.** Work-order events may arrive late or out of order (redelivery after a nak,
two consumers' replicas). Each carries the work order's sequence (`aggregate_seq`, one
step per increment) and the step's instant `at`. A step older than the last one applied
is written to the timeline (it happened) but never moves the status: a late `accepted`
never overwrites a later `closed`. Each event carries the work order's state *after* its
step, so applying the newest event's state is always right, whatever came before.

**Open and handled.** An *open* case (received … in_progress) is what a repeat from the
same household joins as a duplicate. A *handled* case (resolved and after, and reopened:
the complainant was not satisfied) is what makes a new complaint on the same matter a
second complaint (二次投诉). Invalid cases are neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class CaseStatus(StrEnum):
    RECEIVED = "received"  # 已受理: recorded, no work order yet
    DISPATCHED = "dispatched"  # 已派单: routed to a department, not yet accepted
    ACCEPTED = "accepted"  # 已接单: a handler owns it
    IN_PROGRESS = "in_progress"  # 处理中
    RESOLVED = "resolved"  # 已处理: the handler reports it solved
    SIGNED_OFF = "signed_off"  # 已签字: the responsible department signed
    FEEDBACK_GIVEN = "feedback_given"  # 已反馈: the result was told to the complainant
    CLOSED = "closed"  # 已结案: callback done, archived
    REOPENED = "reopened"  # 重新打开: the complainant was not satisfied
    INVALID = "invalid"  # 无效关闭: abnormal closure approved

    @property
    def label_zh(self) -> str:
        return STATUS_LABELS_ZH[self]


STATUS_LABELS_ZH: dict[CaseStatus, str] = {
    CaseStatus.RECEIVED: "已受理",
    CaseStatus.DISPATCHED: "已派单",
    CaseStatus.ACCEPTED: "已接单",
    CaseStatus.IN_PROGRESS: "处理中",
    CaseStatus.RESOLVED: "已处理",
    CaseStatus.SIGNED_OFF: "已签字",
    CaseStatus.FEEDBACK_GIVEN: "已反馈",
    CaseStatus.CLOSED: "已结案",
    CaseStatus.REOPENED: "重新打开",
    CaseStatus.INVALID: "无效关闭",
}

OPEN_STATUSES: frozenset[CaseStatus] = frozenset(
    {CaseStatus.RECEIVED, CaseStatus.DISPATCHED, CaseStatus.ACCEPTED, CaseStatus.IN_PROGRESS}
)
HANDLED_STATUSES: frozenset[CaseStatus] = frozenset(
    {
        CaseStatus.RESOLVED,
        CaseStatus.SIGNED_OFF,
        CaseStatus.FEEDBACK_GIVEN,
        CaseStatus.CLOSED,
        CaseStatus.REOPENED,
    }
)
# Statuses a work-order step can no longer move.
TERMINAL_STATUSES: frozenset[CaseStatus] = frozenset({CaseStatus.INVALID})

# Dispatch's work-order states (dispatch/domain/lifecycle.py) as the case sees them. A
# rejected order waits for customer service to reassign it: for the complainant it is still
# dispatched. A pending hand-over stays with its current owner, in progress.
WORK_ORDER_STATES: dict[str, CaseStatus] = {
    "dispatched": CaseStatus.DISPATCHED,
    "rejected": CaseStatus.DISPATCHED,
    "accepted": CaseStatus.ACCEPTED,
    "in_progress": CaseStatus.IN_PROGRESS,
    "handover_pending": CaseStatus.IN_PROGRESS,
    "resolved": CaseStatus.RESOLVED,
    "signed_off": CaseStatus.SIGNED_OFF,
    "feedback_given": CaseStatus.FEEDBACK_GIVEN,
    "closed": CaseStatus.CLOSED,
    "reopened": CaseStatus.REOPENED,
}


def is_open(status: str) -> bool:
    return status in OPEN_STATUSES


def status_for_work_order_state(state: str) -> CaseStatus | None:
    """The case status a work-order state means; None for a state this version does not
    know (a newer dispatch): the step is recorded, the status is left alone."""
    return WORK_ORDER_STATES.get(state)


@dataclass(frozen=True, slots=True)
class StepMark:
    """Where a work-order event stands in its work order's history."""

    work_order_id: UUID
    seq: int
    at: datetime


def is_late(last: StepMark | None, incoming: StepMark) -> bool:
    """Whether `incoming` is older than the last step applied to the case. Within one work
    order the sequence decides (steps of one transaction share it, so equal is not late);
    across work orders, which only a re-created order would produce, the step time does."""
    if last is None:
        return False
    if last.work_order_id == incoming.work_order_id:
        return incoming.seq < last.seq
    return incoming.at < last.at


@dataclass(frozen=True, slots=True)
class StatusDecision:
    status: CaseStatus  # the case's status after the step
    changed: bool
    late: bool
    why: str | None = None  # when the step does not move the status although it could


def decide_status(
    current: str, last: StepMark | None, incoming: StepMark, state: str
) -> StatusDecision:
    """What a work-order step does to the case's status."""
    now = CaseStatus(current)
    if is_late(last, incoming):
        return StatusDecision(now, False, True, "an older step than the last one applied")
    if now in TERMINAL_STATUSES:
        return StatusDecision(now, False, False, f"the case is {now.value}")
    target = status_for_work_order_state(state)
    if target is None:
        return StatusDecision(now, False, False, f"unknown work-order state {state!r}")
    return StatusDecision(target, target != now, False)
