"""The reporting service process: read models built from every service's events."""

from __future__ import annotations

from fastapi import FastAPI

from propdesk.bus.consumer import Consumer
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
    per_transaction=256,
    lanes=2,
    batch=256,
    # Nobody waits on these counts by the millisecond: gather a fifth of a second's events.
    linger_seconds=0.2,
)


def create_app(res: ServiceResources) -> FastAPI:
    return resources_app(res, routers=[activity_router], title="propdesk reporting service")


SPEC = ServiceSpec(
    name="reporting",
    create_app=create_app,
    consumers=lambda _res: [ACTIVITY_CONSUMER],
)
