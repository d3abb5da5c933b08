"""The work-order state machine (工作单): one transition table, no I/O.

    dispatched ─accept─▶ accepted ─progress─▶ in_progress ─resolve─▶ resolved
        │  ▲                │  ▲                   │                    │
      reject│reassign   hand_over│accept        hand_over            sign_off
        ▼  │                ▼  │                   ▼                    ▼
      rejected        handover_pending ◀───────────┘               signed_off
                                                                        │ give_feedback
    reopened ◀─reopen── resolved | signed_off | feedback_given | closed  ▼
                                                     closed ◀─close─ feedback_given

- `accept` on a pending hand-over is the receiver accepting it; `reject` there declines it
  and the case goes back to the current owner, in progress.
- `give_feedback` records the first feedback to the complainant (channel, content,
  commitment). Before sign-off it is recorded without moving the state (the 24-hour first
  feedback usually comes while the case is still being handled); after sign-off it is the
  result feedback and moves the case to feedback_given, ready for the callback.
- `follow_up` (the assistant's daily check) is allowed in every open state.
- `transfer` is the system's overnight hand-over to the service center.
- `close` needs the callback's result (回访): satisfied or basically satisfied. A
  dissatisfied owner's case is not closed but reopened (a second complaint, 二次投诉).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class State(StrEnum):
    DISPATCHED = "dispatched"
    REJECTED = "rejected"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    HANDOVER_PENDING = "handover_pending"
    RESOLVED = "resolved"
    SIGNED_OFF = "signed_off"
    FEEDBACK_GIVEN = "feedback_given"
    CLOSED = "closed"
    REOPENED = "reopened"


class Action(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    PROGRESS = "progress"
    RESOLVE = "resolve"
    SIGN_OFF = "sign_off"
    GIVE_FEEDBACK = "give_feedback"
    FOLLOW_UP = "follow_up"
    REASSIGN = "reassign"
    HAND_OVER = "hand_over"
    TRANSFER = "transfer"
    CLOSE = "close"
    REOPEN = "reopen"


S, A = State, Action
OPEN_STATES: frozenset[State] = frozenset(State) - {State.CLOSED}
# States the overnight transfer applies to: the case still needs someone to handle it.
UNHANDLED_STATES: frozenset[State] = frozenset(
    {S.DISPATCHED, S.REJECTED, S.ACCEPTED, S.IN_PROGRESS, S.HANDOVER_PENDING, S.REOPENED}
)

TRANSITIONS: Mapping[tuple[State, Action], State] = {
    (S.DISPATCHED, A.ACCEPT): S.ACCEPTED,
    (S.DISPATCHED, A.REJECT): S.REJECTED,
    (S.DISPATCHED, A.REASSIGN): S.DISPATCHED,
    (S.REJECTED, A.REASSIGN): S.DISPATCHED,
    (S.REOPENED, A.ACCEPT): S.ACCEPTED,
    (S.REOPENED, A.REJECT): S.REJECTED,
    (S.REOPENED, A.REASSIGN): S.DISPATCHED,
    (S.ACCEPTED, A.PROGRESS): S.IN_PROGRESS,
    (S.ACCEPTED, A.RESOLVE): S.RESOLVED,  # solved on the spot
    (S.ACCEPTED, A.HAND_OVER): S.HANDOVER_PENDING,
    (S.IN_PROGRESS, A.PROGRESS): S.IN_PROGRESS,
    (S.IN_PROGRESS, A.RESOLVE): S.RESOLVED,
    (S.IN_PROGRESS, A.HAND_OVER): S.HANDOVER_PENDING,
    (S.HANDOVER_PENDING, A.ACCEPT): S.ACCEPTED,
    (S.HANDOVER_PENDING, A.REJECT): S.IN_PROGRESS,
    (S.RESOLVED, A.SIGN_OFF): S.SIGNED_OFF,
    (S.SIGNED_OFF, A.GIVE_FEEDBACK): S.FEEDBACK_GIVEN,
    (S.FEEDBACK_GIVEN, A.CLOSE): S.CLOSED,
    (S.RESOLVED, A.REOPEN): S.REOPENED,
    (S.SIGNED_OFF, A.REOPEN): S.REOPENED,
    (S.FEEDBACK_GIVEN, A.REOPEN): S.REOPENED,
    (S.CLOSED, A.REOPEN): S.REOPENED,
    **{(s, A.FOLLOW_UP): s for s in OPEN_STATES},
    **{
        (s, A.GIVE_FEEDBACK): s
        for s in (S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS, S.HANDOVER_PENDING, S.RESOLVED)
    },
    **{(s, A.TRANSFER): S.DISPATCHED for s in UNHANDLED_STATES},
}


class IllegalTransition(Exception):
    def __init__(self, current: State, action: Action) -> None:
        allowed = ", ".join(a.value for a in allowed_actions(current)) or "none"
        super().__init__(
            f"cannot {action.value} a work order that is {current.value} (allowed: {allowed})"
        )
        self.current = current
        self.action = action


def next_state(current: State, action: Action) -> State:
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        raise IllegalTransition(current, action) from None


def allowed_actions(current: State) -> list[Action]:
    return [a for a in Action if (current, a) in TRANSITIONS]


CLOSING_CALLBACK_RESULTS: frozenset[str] = frozenset({"satisfied", "basically_satisfied"})


class CallbackNotSatisfied(Exception):
    """A close with a callback result that does not close the case (a 409 naming reopen)."""

    def __init__(self, current: State, callback_result: str) -> None:
        super().__init__(
            f"a {callback_result} callback does not close the case: reopen it instead "
            "(a second complaint)"
        )
        self.current = current
        self.callback_result = callback_result


def check_close(current: State, callback_result: str) -> None:
    if callback_result not in CLOSING_CALLBACK_RESULTS:
        raise CallbackNotSatisfied(current, callback_result)
