"""The case status and how work-order steps move it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from intake.domain.case_status import (
    HANDLED_STATUSES,
    OPEN_STATUSES,
    CaseStatus,
    StepMark,
    decide_status,
    is_late,
)

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
WO = uuid4()


def mark(seq: int, minutes: int = 0, wo=WO) -> StepMark:
    return StepMark(wo, seq, T0 + timedelta(minutes=minutes))


def test_every_status_has_a_label_and_open_and_handled_do_not_overlap() -> None:
    assert all(s.label_zh for s in CaseStatus)
    assert not OPEN_STATUSES & HANDLED_STATUSES
    assert CaseStatus.INVALID not in OPEN_STATUSES | HANDLED_STATUSES
    assert CaseStatus.REOPENED in HANDLED_STATUSES  # a reopened case counts as handled once


def test_first_step_moves_received_to_dispatched() -> None:
    d = decide_status("received", None, mark(1), "dispatched")
    assert (d.status, d.changed, d.late) == (CaseStatus.DISPATCHED, True, False)


def test_late_accepted_never_overwrites_closed() -> None:
    d = decide_status("closed", mark(7, 60), mark(2, 5), "accepted")
    assert (d.status, d.changed, d.late) == (CaseStatus.CLOSED, False, True)


def test_same_sequence_is_not_late() -> None:
    # accepted and handed_over are one transaction in dispatch: one sequence number.
    assert not is_late(mark(2), mark(2))
    d = decide_status("accepted", mark(2), mark(2), "accepted")
    assert not d.late and not d.changed


def test_a_step_that_skips_states_still_lands_on_the_newest_state() -> None:
    d = decide_status("dispatched", mark(1), mark(5), "signed_off")
    assert d.status is CaseStatus.SIGNED_OFF and d.changed


def test_another_work_order_is_ordered_by_time() -> None:
    other = uuid4()
    assert is_late(mark(9, 30), mark(1, 10, wo=other))
    assert not is_late(mark(9, 30), mark(1, 40, wo=other))


def test_invalid_is_terminal_and_unknown_states_are_ignored() -> None:
    d = decide_status("invalid", mark(1), mark(2), "accepted")
    assert d.status is CaseStatus.INVALID and not d.changed and "invalid" in (d.why or "")
    d = decide_status("accepted", mark(1), mark(2), "escalated_to_mars")
    assert d.status is CaseStatus.ACCEPTED and not d.changed


@pytest.mark.parametrize(
    ("state", "status"),
    [("rejected", "dispatched"), ("handover_pending", "in_progress"), ("reopened", "reopened")],
)
def test_state_mapping(state: str, status: str) -> None:
    assert decide_status("dispatched", mark(1), mark(2), state).status == status
