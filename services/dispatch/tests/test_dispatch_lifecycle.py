from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from dispatch.domain.lifecycle import (
    OPEN_STATES,
    TRANSITIONS,
    Action,
    CallbackNotSatisfied,
    IllegalTransition,
    State,
    allowed_actions,
    check_close,
    next_state,
)
from dispatch.domain.ownership import (
    NotAllowed,
    OrderView,
    StaffFacts,
    acting_for,
    assignee_unfit,
    board_scope,
    check_approval,
    check_handler,
    check_owner_or_supervisor,
    check_reassigner,
    check_sign_off,
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
    a, b, head = uuid4(), uuid4(), uuid4()
    eng, cs = uuid4(), uuid4()
    heads = frozenset({"department_head"})
    order = OrderView(State.DISPATCHED, eng, a, None)
    check_handler(order, a, frozenset({"handler"}))
    with pytest.raises(NotAllowed):
        check_handler(order, b, frozenset({"handler"}))
    # A department head acts for his own department's staff only.
    check_handler(order, head, heads, eng)
    for elsewhere in (cs, None):
        with pytest.raises(NotAllowed, match="department"):
            check_handler(order, head, heads, elsewhere)
    check_handler(order, head, frozenset({"director"}))
    pending = OrderView(
        State.HANDOVER_PENDING, eng, a, a, pending_handover_to=b, pending_handover_department_id=cs
    )
    check_handler(pending, b, frozenset({"handler"}))
    with pytest.raises(NotAllowed):
        check_handler(pending, a, frozenset({"handler"}))
    # On a pending hand-over, the receiver's head acts for the receiver.
    check_handler(pending, head, heads, cs)
    with pytest.raises(NotAllowed):
        check_handler(pending, head, heads, eng)


def test_acting_for_keeps_the_handler_first_asked() -> None:
    a, head = uuid4(), uuid4()
    now = datetime(2026, 11, 24, tzinfo=UTC)
    order = OrderView(State.DISPATCHED, uuid4(), a, None)
    assert acting_for(order, a) is None
    assert acting_for(order, head) == a
    assert acting_for(OrderView(State.DISPATCHED, uuid4(), None, None), head) is None
    change = owner_change_on_accept(order, a, now, accepted_by=str(head))
    assert change and change.to_staff_id == a and str(head) in change.reason


def test_other_heads_reassign_hand_over_sign_off_and_board() -> None:
    a, head = uuid4(), uuid4()
    eng, cs = uuid4(), uuid4()
    heads = frozenset({"department_head"})
    order = OrderView(State.RESOLVED, eng, a, a)
    for check in (check_reassigner, check_sign_off):
        check(order, heads, eng)
        with pytest.raises(NotAllowed):
            check(order, heads, cs)
        check(order, frozenset({"cs_supervisor"}))
    check_reassigner(order, frozenset({"affairs_assistant"}))
    check_owner_or_supervisor(order, head, heads, eng)
    with pytest.raises(NotAllowed):
        check_owner_or_supervisor(order, head, heads, cs)
    assert board_scope(heads, eng, frozenset({eng})) == eng
    assert board_scope(frozenset({"director"}), None, frozenset({eng})) is None
    with pytest.raises(NotAllowed):
        board_scope(heads, cs, frozenset({eng}))
    with pytest.raises(NotAllowed):
        board_scope(heads, None, frozenset({eng}))


def test_who_may_receive_an_order() -> None:
    project, other, eng, cs, s = uuid4(), uuid4(), uuid4(), uuid4(), uuid4()
    engineer = StaffFacts(s, eng, frozenset({project}), active=True)
    assert assignee_unfit(engineer, s, project_id=project, department_id=eng) is None
    assert assignee_unfit(engineer, s, project_id=project, department_id=None) is None
    unfit = assignee_unfit(engineer, s, project_id=project, department_id=cs, department_code="cs")
    assert unfit and unfit.rule == "in_department" and "cs" in unfit.message
    unfit = assignee_unfit(engineer, s, project_id=other, department_id=None)
    assert unfit and unfit.rule == "covers_project"
    retired = StaffFacts(s, eng, frozenset({project}), active=False)
    for nobody in (None, retired):
        unfit = assignee_unfit(nobody, s, project_id=project, department_id=None)
        assert unfit and unfit.rule == "exists"


def test_close_needs_a_satisfied_callback() -> None:
    check_close(State.FEEDBACK_GIVEN, "satisfied")
    check_close(State.FEEDBACK_GIVEN, "basically_satisfied")
    with pytest.raises(CallbackNotSatisfied, match="reopen"):
        check_close(State.FEEDBACK_GIVEN, "dissatisfied")


def test_compensation_needs_an_approver() -> None:
    eng, cs = uuid4(), uuid4()
    check_approval(None, [], frozenset({"handler"}))
    with pytest.raises(NotAllowed, match="approver"):
        check_approval({"amount": "200"}, [], frozenset({"handler"}))
    with pytest.raises(NotAllowed):
        check_approval(None, ["finance: waive fee"], frozenset({"handler"}))
    head = frozenset({"department_head"})
    check_approval({"amount": "200"}, [], head, department_id=eng, actor_department=eng)
    with pytest.raises(NotAllowed, match="approver"):
        check_approval({"amount": "5000"}, [], head, department_id=eng, actor_department=cs)
    check_approval({"amount": "5000"}, [], frozenset({"director"}), department_id=eng)


def test_overnight_handover_due() -> None:
    morning = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)
    assert overnight_handover_due(State.ACCEPTED, morning, morning)
    assert not overnight_handover_due(State.ACCEPTED, morning, morning - timedelta(seconds=1))
    assert not overnight_handover_due(State.RESOLVED, morning, morning)
    assert not overnight_handover_due(State.ACCEPTED, None, morning)
