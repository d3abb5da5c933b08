"""Event consumers: dispatch's work-order steps onto the complaint record.

Each handler runs inside a consumer-runner transaction (inbox rows + writes, up to 32
events, in runs of one tenant), under the event's tenant context. One consumer takes every
work-order event, in lanes by project, so the steps of a case are applied in the order
JetStream holds them; the sequence check in
`domain.case_status` covers what arrives out of order anyway (redelivery after a nak).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from intake.flows.work_order_steps import apply_work_order_event
from propdesk.bus import Consumer
from propdesk.bus.consumer import by_project
from propdesk.events import Envelope

SCHEMA = "intake"
WORK_ORDER_SUBJECTS = ["pd.work_order.>"]


async def on_work_order_event(session: AsyncSession, env: Envelope) -> None:
    await apply_work_order_event(session, env)


def consumers() -> list[Consumer]:
    return [
        Consumer(
            name="intake-work-orders",
            schema=SCHEMA,
            subjects=WORK_ORDER_SUBJECTS,
            handler=on_work_order_event,
            description="work-order steps onto the complaint's status and timeline",
            # A complaint's steps stay in order in its project's lane (a complaint belongs
            # to one project); several steps share a transaction, projects run side by side.
            per_transaction=32,
            lanes=4,
            lane_key=by_project,
        )
    ]
