"""The reporting service process: read models built from every service's events."""

from __future__ import annotations

from fastapi import FastAPI

from propdesk.bus.consumer import Consumer
from propdesk.service.readiness import CACHE_ONLY
from propdesk.service.resources import ServiceResources
from propdesk.service.spec import ServiceSpec, resources_app
from reporting import activity
from reporting.api.activity import router as activity_router

ACTIVITY_CONSUMER = Consumer(
    name="reporting-activity",
    schema="reporting",
    subjects=["pd.project.upserted.>", "pd.complaint.>", "pd.work_order.>"],
    handler=activity.handle,
    description="daily activity per project and event type",
    # A fetched batch in few transactions and one counting statement per tenant; lanes by
    # tenant (the default) keep a project.upserted ahead of the events that follow it.
    batch_handler=activity.handle_batch,
    per_transaction=512,
    lanes=2,
    batch=512,
    # Nobody waits on these counts by the millisecond: gather half a second's events. Each
    # tenant's run costs two statements (row-level security: one tenant per statement), so
    # the longer the window, the more events each statement counts: at 100 complaints/s
    # over 20 tenants, 0.2 s windows took about four statements per complaint.
    linger_seconds=0.5,
)


def create_app(res: ServiceResources) -> FastAPI:
    return resources_app(
        res, routers=[activity_router], title="propdesk reporting service", degraded_only=CACHE_ONLY
    )


SPEC = ServiceSpec(
    name="reporting",
    create_app=create_app,
    consumers=lambda _res: [ACTIVITY_CONSUMER],
)
