"""Event consumers: the tenant directory and routing hints, and the complaint events that
make and annotate work orders (classified, regraded, duplicate_joined).

Each handler runs inside the consumer runner's one transaction (inbox row + writes), under
the event's tenant context.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.routing import parse_routing_hints
from dispatch.flows.dispatching import apply_override, apply_regrade, dispatch_classified
from dispatch.flows.duplicate_calls import record_duplicate_call
from dispatch.store import directory, routing_rules
from propdesk.bus import Consumer, PermanentError
from propdesk.bus.consumer import by_project
from propdesk.events import Envelope, parse_payload
from propdesk.events.contracts.complaint import (
    ComplaintClassified,
    ComplaintDuplicateJoined,
    ComplaintOverridden,
    ComplaintRegraded,
)
from propdesk.events.contracts.tenant import (
    DepartmentUpserted,
    ProjectUpserted,
    RoutingHintsUpserted,
    StaffUpserted,
    TenantUpserted,
)

log = logging.getLogger("dispatch.handlers")
SCHEMA = "dispatch"


async def on_directory_event(session: AsyncSession, env: Envelope) -> None:
    payload = parse_payload(env)
    tenant_id = env.tenant_id
    match payload:
        case TenantUpserted():
            await directory.upsert_tenant(session, payload)
        case ProjectUpserted():
            await directory.upsert_project(session, tenant_id, payload)
        case DepartmentUpserted():
            await directory.upsert_department(session, tenant_id, payload)
        case StaffUpserted():
            await directory.upsert_staff(session, tenant_id, payload)
        case RoutingHintsUpserted():
            parsed = parse_routing_hints(
                payload.hints, await directory.project_ids_by_code(session)
            )
            for problem in parsed.problems:
                log.warning(
                    "tenant %s routing hint %d ignored: %s %s",
                    tenant_id,
                    problem.index,
                    problem.field,
                    problem.message,
                )
            await routing_rules.replace_onboarding_rules(session, tenant_id, parsed.rules)
        case _:
            raise PermanentError(f"dispatch-directory does not handle {env.type}")


async def on_complaint_classified(session: AsyncSession, env: Envelope) -> None:
    """complaint.classified, complaint.regraded, complaint.overridden and
    complaint.duplicate_joined, on one consumer so a regrade, a staff correction or a repeat
    call is never applied before the classification it follows (a repeat call that still
    overtakes it is kept, see `duplicate_calls`)."""
    payload = parse_payload(env)
    match payload:
        case ComplaintClassified():
            await dispatch_classified(session, env.tenant_id, payload)
        case ComplaintRegraded():
            await apply_regrade(session, payload)
        case ComplaintOverridden():
            await apply_override(session, payload)
        case ComplaintDuplicateJoined():
            await record_duplicate_call(
                session, env.tenant_id, payload, event_id=env.id, recorded_by=env.actor
            )
        case _:
            raise PermanentError(f"dispatch-complaints does not handle {env.type}")


DIRECTORY_TYPES = (
    "tenant.upserted",
    "project.upserted",
    "department.upserted",
    "staff.upserted",
    "tenant.routing_upserted",
)


COMPLAINT_TYPES = (
    "complaint.classified",
    "complaint.regraded",
    "complaint.overridden",
    "complaint.duplicate_joined",
)


def consumers() -> list[Consumer]:
    return [
        Consumer(
            name="dispatch-directory",
            schema=SCHEMA,
            subjects=[f"pd.{t}.>" for t in DIRECTORY_TYPES],
            handler=on_directory_event,
            description="tenant directory and routing hints into dispatch's own tables",
        ),
        Consumer(
            name="dispatch-complaints",
            schema=SCHEMA,
            subjects=[f"pd.{t}.>" for t in COMPLAINT_TYPES],
            handler=on_complaint_classified,
            description="one work order per classified complaint; regrades and repeat calls",
            # A complaint's events stay in order in its project's lane; a project's
            # complaints are dispatched one after another (round-robin and open load see
            # the previous assignment), different projects concurrently.
            per_transaction=32,
            lanes=4,
            lane_key=by_project,
            # The assignment's statement (`store.dispatching`) was planned afresh for every
            # complaint: 0.9 ms of the database's CPU each, twice its execution.
            generic_plans=True,
        ),
    ]
