"""First-asked responsibility (首问责任制) and who may act on a work order.

The owner is whoever received the case first: the duty leader outside working hours (he
is the receiver of record from dispatch), else the handler who first accepts it. The
owner stays the owner until a hand-over is accepted by its receiver; every change of
owner is one entry in the chain, never an overwrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from dispatch.domain.lifecycle import State

APPROVER_ROLES = frozenset({"department_head", "director", "cs_supervisor"})
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


def owner_change_on_accept(order: OrderView, actor: UUID, at: datetime) -> OwnerChange | None:
    if order.state is State.HANDOVER_PENDING:
        return OwnerChange(
            order.owner_id,
            actor,
            order.pending_handover_department_id or order.department_id,
            "handover_accepted",
            "the receiver accepted the hand-over",
            at,
        )
    if order.owner_id is None:
        return OwnerChange(
            None, actor, order.department_id, "first_receiver", "first to accept the case", at
        )
    if order.owner_id != actor:
        # A reassigned case accepted by its new handler: the hand-over takes effect now.
        return OwnerChange(
            order.owner_id,
            actor,
            order.department_id,
            "handover_accepted",
            "the new handler accepted the reassigned case",
            at,
        )
    return None


class NotAllowed(Exception):
    """The actor may not take this step on this order (a 403 naming why)."""


def check_handler(order: OrderView, actor: UUID | None, roles: frozenset[str]) -> None:
    """Accept, reject, progress, resolve: the assigned handler (or, on a pending hand-over,
    its receiver); department heads and supervisors may act for their staff."""
    expected = (
        order.pending_handover_to if order.state is State.HANDOVER_PENDING else order.handler_id
    )
    if actor is not None and actor == expected:
        return
    if roles & (SUPERVISING_ROLES | {"department_head"}):
        return
    raise NotAllowed("only the assigned handler or a department head may do this")


def check_owner_or_supervisor(order: OrderView, actor: UUID | None, roles: frozenset[str]) -> None:
    if actor is not None and actor in (order.owner_id, order.handler_id):
        return
    if roles & (SUPERVISING_ROLES | {"department_head", "affairs_assistant"}):
        return
    raise NotAllowed("only the case's owner, its handler or a supervisor may hand it over")


def needs_approval(compensation: object | None, decisions: list[str]) -> bool:
    """Plan, finance or compensation decisions need a superior's approval (DOMAIN.md)."""
    return compensation is not None or bool(decisions)


def check_approval(
    compensation: object | None, decisions: list[str], roles: frozenset[str]
) -> None:
    if needs_approval(compensation, decisions) and not roles & APPROVER_ROLES:
        raise NotAllowed(
            "a resolution with compensation, plan or finance decisions needs an approver role "
            "(" + ", ".join(sorted(APPROVER_ROLES)) + ")"
        )


def overnight_handover_due(
    state: State, overnight_handover_at: datetime | None, now: datetime
) -> bool:
    """A case the duty leader received after hours and has not got handled by the next
    working morning goes to the service center (in writing: a recorded hand-over)."""
    from dispatch.domain.lifecycle import UNHANDLED_STATES

    return (
        overnight_handover_at is not None
        and state in UNHANDLED_STATES
        and now >= (overnight_handover_at)
    )
