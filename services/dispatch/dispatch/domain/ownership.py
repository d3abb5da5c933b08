"""First-asked responsibility (首问责任制) and who may act on a work order.

The owner is whoever received the case first: the duty leader outside working hours (he
is the receiver of record from dispatch), else the handler who first accepts it. The
owner stays the owner until a hand-over is accepted by its receiver; every change of
owner is one entry in the chain, never an overwrite.

Who may act: the assigned handler; for him, the head of the order's own department (a
department head never acts on another department's orders, nor sees its board) and the
supervising roles, which cover every department. Whoever acts for a handler does not
become the owner: the handler does, and the record says who acted for whom.

To whom an order may go: active staff of the order's project, and of the order's
department when the order stays in (or is moved to) a department.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from dispatch.domain.lifecycle import UNHANDLED_STATES, State

DEPARTMENT_HEAD = "department_head"
APPROVER_ROLES = frozenset({DEPARTMENT_HEAD, "director", "cs_supervisor"})
SUPERVISING_ROLES = frozenset({"director", "cs_supervisor", "tenant_admin"})


@dataclass(frozen=True, slots=True)
class OwnerChange:
    from_staff_id: UUID | None
    to_staff_id: UUID | None
    to_department_id: UUID | None
    kind: str  # first_receiver | handover_accepted | overnight_handover
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderView:
    """What the rules need to know about a work order."""

    state: State
    department_id: UUID | None
    handler_id: UUID | None
    owner_id: UUID | None
    pending_handover_to: UUID | None = None
    pending_handover_department_id: UUID | None = None


def expected_actor(order: OrderView) -> UUID | None:
    """Whose step it is: the receiver of a pending hand-over, else the assigned handler."""
    return order.pending_handover_to if order.state is State.HANDOVER_PENDING else order.handler_id


def acting_department(order: OrderView) -> UUID | None:
    """The department whose head may act for the expected actor."""
    if order.state is State.HANDOVER_PENDING and order.pending_handover_department_id:
        return order.pending_handover_department_id
    return order.department_id


def acting_for(order: OrderView, actor: UUID | None) -> UUID | None:
    """The staff member a head or supervisor acts for (the assigned handler or the
    hand-over's receiver), or None when the actor acts for himself or nobody is assigned."""
    expected = expected_actor(order)
    return expected if expected is not None and expected != actor else None


def owner_change_on_accept(
    order: OrderView, acceptor: UUID, at: datetime, *, accepted_by: UUID | str | None = None
) -> OwnerChange | None:
    """The owner change when `acceptor` accepts; `accepted_by` is who actually did it when
    that was someone acting for the acceptor (the acceptor stays the one who owns it)."""
    on_behalf = f" (accepted for them by {accepted_by})" if accepted_by is not None else ""
    if order.state is State.HANDOVER_PENDING:
        return OwnerChange(
            order.owner_id,
            acceptor,
            order.pending_handover_department_id or order.department_id,
            "handover_accepted",
            "the receiver accepted the hand-over" + on_behalf,
            at,
        )
    if order.owner_id is None:
        return OwnerChange(
            None,
            acceptor,
            order.department_id,
            "first_receiver",
            "first to accept the case" + on_behalf,
            at,
        )
    if order.owner_id != acceptor:
        # A reassigned case accepted by its new handler: the hand-over takes effect now.
        return OwnerChange(
            order.owner_id,
            acceptor,
            order.department_id,
            "handover_accepted",
            "the new handler accepted the reassigned case" + on_behalf,
            at,
        )
    return None


class NotAllowed(Exception):
    """The actor may not take this step on this order (a 403 naming why). `facts`: what
    the order is now, where that tells the actor why (an order reassigned while his step
    waited: whose step it is now)."""

    def __init__(self, message: str, facts: dict[str, str | None] | None = None) -> None:
        super().__init__(message)
        self.facts = facts or {}


def heads_department(
    roles: frozenset[str], actor_department: UUID | None, department_id: UUID | None
) -> bool:
    """A department head acts for his own department only (the rule sign-off has always
    had): his staff record's department is the order's (or the board's) department."""
    return (
        DEPARTMENT_HEAD in roles
        and actor_department is not None
        and actor_department == department_id
    )


def check_handler(
    order: OrderView,
    actor: UUID | None,
    roles: frozenset[str],
    actor_department: UUID | None = None,
) -> None:
    """Accept, reject, progress, resolve: the assigned handler (or, on a pending hand-over,
    its receiver); the head of that department and supervisors may act for them."""
    if actor is not None and actor == expected_actor(order):
        return
    if roles & SUPERVISING_ROLES:
        return
    if heads_department(roles, actor_department, acting_department(order)):
        return
    expected = expected_actor(order)
    raise NotAllowed(
        "only the assigned handler, the head of the order's department or a supervisor may do this",
        {
            "current_state": order.state.value,
            "expected_actor": str(expected) if expected is not None else None,
        },
    )


def check_owner_or_supervisor(
    order: OrderView,
    actor: UUID | None,
    roles: frozenset[str],
    actor_department: UUID | None = None,
) -> None:
    if actor is not None and actor in (order.owner_id, order.handler_id):
        return
    if roles & (SUPERVISING_ROLES | {"affairs_assistant"}):
        return
    if heads_department(roles, actor_department, order.department_id):
        return
    raise NotAllowed(
        "only the case's owner, its handler, the head of its department or a supervisor "
        "may hand it over"
    )


def check_reassigner(
    order: OrderView, roles: frozenset[str], actor_department: UUID | None = None
) -> None:
    """Customer service and supervisors reassign any order; a department head those of
    his own department."""
    if roles & (SUPERVISING_ROLES | {"affairs_assistant"}):
        return
    if heads_department(roles, actor_department, order.department_id):
        return
    raise NotAllowed("a department head may only reassign his own department's orders")


def check_sign_off(
    order: OrderView, roles: frozenset[str], actor_department: UUID | None = None
) -> None:
    if roles & SUPERVISING_ROLES:
        return
    if heads_department(roles, actor_department, order.department_id):
        return
    raise NotAllowed("only the head of the responsible department may sign off")


def board_scope(
    roles: frozenset[str], actor_department: UUID | None, department_ids: frozenset[UUID]
) -> UUID | None:
    """Whose board of a department code the actor may see (`department_ids`: the
    departments of that code): all of them (None) for customer service, supervisors and
    the quality department,
    his own department for its head; anyone else is refused."""
    if roles & (SUPERVISING_ROLES | {"affairs_assistant", "quality"}):
        return None
    if DEPARTMENT_HEAD in roles and actor_department is not None:
        if actor_department in department_ids:
            return actor_department
    raise NotAllowed("a department head sees only his own department's board")


def needs_approval(compensation: object | None, decisions: list[str]) -> bool:
    """Plan, finance or compensation decisions need a superior's approval (DOMAIN.md)."""
    return compensation is not None or bool(decisions)


def check_approval(
    compensation: object | None,
    decisions: list[str],
    roles: frozenset[str],
    *,
    department_id: UUID | None = None,
    actor_department: UUID | None = None,
) -> None:
    """The approver is a supervisor, or the head of the order's own department."""
    if not needs_approval(compensation, decisions):
        return
    if roles & (APPROVER_ROLES - {DEPARTMENT_HEAD}):
        return
    if heads_department(roles, actor_department, department_id):
        return
    raise NotAllowed(
        "a resolution with compensation, plan or finance decisions needs an approver role "
        "(" + ", ".join(sorted(APPROVER_ROLES)) + "; a department head for his own "
        "department's orders)"
    )


@dataclass(frozen=True, slots=True)
class StaffFacts:
    """What the rules need to know about a staff member who may receive an order."""

    id: UUID
    department_id: UUID | None
    project_ids: frozenset[UUID]
    active: bool


@dataclass(frozen=True, slots=True)
class Unfit:
    """Why a staff member may not receive an order: a rule name and a message."""

    rule: str  # exists | covers_project | in_department
    message: str


def assignee_unfit(
    staff: StaffFacts | None,
    staff_id: UUID,
    *,
    project_id: UUID,
    department_id: UUID | None,
    department_code: str | None = None,
) -> Unfit | None:
    """None when `staff` may receive an order of `project_id` in `department_id` (None:
    no department to belong to); else why not."""
    if staff is None or not staff.active:
        return Unfit("exists", f"no active staff member {staff_id}")
    if project_id not in staff.project_ids:
        return Unfit("covers_project", f"staff member {staff_id} does not work on this project")
    if department_id is not None and staff.department_id != department_id:
        named = department_code or str(department_id)
        return Unfit("in_department", f"staff member {staff_id} is not in department {named}")
    return None


# What the overnight receiver may still hold at the next working start: received, declined,
# being handled, or a hand-over of his not yet accepted. Not a resolved case, and not a
# reopened one either: it was resolved once and is back with customer service, not his.
OVERNIGHT_STATES: frozenset[State] = UNHANDLED_STATES - {State.REOPENED}


def overnight_handover_stands(order: OrderView, receiver_id: UUID | None) -> bool:
    """Whether a case received after hours is still the overnight receiver's (the duty
    security shift leader, its first owner), so that what he has not closed by the next
    working morning passes to the service center. He may have accepted it and be working
    on it: that still counts. It ends for good when the case leaves his hands (reassigned,
    a hand-over accepted, accepted by someone else) or is resolved."""
    return (
        receiver_id is not None
        and order.state in OVERNIGHT_STATES
        and order.owner_id == receiver_id
        and order.handler_id == receiver_id
    )


def overnight_handover_due(
    state: State, overnight_handover_at: datetime | None, now: datetime
) -> bool:
    """A case the duty leader received after hours and has not got handled by the next
    working morning goes to the service center (in writing: a recorded hand-over)."""
    return (
        overnight_handover_at is not None
        and state in OVERNIGHT_STATES
        and now >= overnight_handover_at
    )
