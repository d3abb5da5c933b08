from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from dispatch.domain.lifecycle import (
    OPEN_STATES,
    TRANSITIONS,
    Action,
    IllegalTransition,
    State,
    allowed_actions,
    next_state,
)
from dispatch.domain.ownership import (
    NotAllowed,
    OrderView,
    check_approval,
    check_handler,
    overnight_handover_due,
    owner_change_on_accept,
)

HAPPY_PATH = [
    (Action.ACCEPT, State.ACCEPTED),
    (Action.PROGRESS, State.IN_PROGRESS),
    (Action.PROGRESS, State.IN_PROGRESS),
    (Action.GIVE_FEEDBACK, State.IN_PROGRESS),
    (Action.RESOLVE, State.RESOLVED),
    (Action.SIGN_OFF, State.SIGNED_OFF),
    (Action.GIVE_FEEDBACK, State.FEEDBACK_GIVEN),
    (Action.CLOSE, State.CLOSED),
    (Action.REOPEN, State.REOPENED),
    (Action.ACCEPT, State.ACCEPTED),
]


def test_happy_path() -> None:
    s = State.DISPATCHED
    for action, expected in HAPPY_PATH:
        s = next_state(s, action)
        assert s is expected


def test_reject_reassign_and_hand_over() -> None:
    assert next_state(State.DISPATCHED, Action.REJECT) is State.REJECTED
    assert next_state(State.REJECTED, Action.REASSIGN) is State.DISPATCHED
    assert next_state(State.IN_PROGRESS, Action.HAND_OVER) is State.HANDOVER_PENDING
    assert next_state(State.HANDOVER_PENDING, Action.ACCEPT) is State.ACCEPTED
    assert next_state(State.HANDOVER_PENDING, Action.REJECT) is State.IN_PROGRESS
    assert next_state(State.ACCEPTED, Action.TRANSFER) is State.DISPATCHED


LEGAL = set(TRANSITIONS)
ILLEGAL = [(s, a) for s in State for a in Action if (s, a) not in LEGAL]


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=lambda v: v.value)
def test_every_illegal_transition_names_the_current_state(state: State, action: Action) -> None:
    with pytest.raises(IllegalTransition) as err:
        next_state(state, action)
    assert err.value.current is state
    assert state.value in str(err.value)
    assert action.value in str(err.value)


def test_illegal_count_is_what_the_table_implies() -> None:
    # Guards the parametrisation above against an accidentally empty list.
    assert len(ILLEGAL) == len(State) * len(Action) - len(TRANSITIONS)
    assert len(ILLEGAL) >= 70


def test_closed_allows_only_reopen() -> None:
    assert allowed_actions(State.CLOSED) == [Action.REOPEN]
    assert State.CLOSED not in OPEN_STATES
    for s in OPEN_STATES:
        assert Action.FOLLOW_UP in allowed_actions(s)


def test_first_receiver_then_handover_chain() -> None:
    dept, a, b = uuid4(), uuid4(), uuid4()
    now = datetime(2026, 11, 24, tzinfo=UTC)
    fresh = OrderView(State.DISPATCHED, dept, a, None)
    first = owner_change_on_accept(fresh, a, now)
    assert first and first.kind == "first_receiver" and first.to_staff_id == a
    pending = OrderView(State.HANDOVER_PENDING, dept, a, a, pending_handover_to=b)
    change = owner_change_on_accept(pending, b, now)
    assert change and (change.from_staff_id, change.to_staff_id) == (a, b)
    assert change.kind == "handover_accepted"
    same = OrderView(State.REOPENED, dept, a, a)
    assert owner_change_on_accept(same, a, now) is None


def test_who_may_act() -> None:
    a, b = uuid4(), uuid4()
    order = OrderView(State.DISPATCHED, uuid4(), a, None)
    check_handler(order, a, frozenset({"handler"}))
    with pytest.raises(NotAllowed):
        check_handler(order, b, frozenset({"handler"}))
    check_handler(order, b, frozenset({"department_head"}))
    pending = OrderView(State.HANDOVER_PENDING, uuid4(), a, a, pending_handover_to=b)
    check_handler(pending, b, frozenset({"handler"}))
    with pytest.raises(NotAllowed):
        check_handler(pending, a, frozenset({"handler"}))


def test_compensation_needs_an_approver() -> None:
    check_approval(None, [], frozenset({"handler"}))
    with pytest.raises(NotAllowed, match="approver"):
        check_approval({"amount": "200"}, [], frozenset({"handler"}))
    with pytest.raises(NotAllowed):
        check_approval(None, ["finance: waive fee"], frozenset({"handler"}))
    check_approval({"amount": "200"}, [], frozenset({"department_head"}))


def test_overnight_handover_due() -> None:
    morning = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)
    assert overnight_handover_due(State.ACCEPTED, morning, morning)
    assert not overnight_handover_due(State.ACCEPTED, morning, morning - timedelta(seconds=1))
    assert not overnight_handover_due(State.RESOLVED, morning, morning)
    assert not overnight_handover_due(State.ACCEPTED, None, morning)
