"""The dispatch HTTP app, from the shared factory."""

from __future__ import annotations

from fastapi import FastAPI

from dispatch.api import calendars, rosters, routing_rules, work_orders
from dispatch.api.deps import install_domain_errors
from propdesk.service.app import create_service_app
from propdesk.service.readiness import nats_check, postgres_check
from propdesk.service.resources import ServiceResources

ROUTERS = (work_orders.router, routing_rules.router, calendars.router, rosters.router)


def create_app(res: ServiceResources, *, configure_logs: bool = True) -> FastAPI:
    checks = {"postgres": postgres_check(res.engine)}
    if res.nc is not None:
        checks["nats"] = nats_check(res.nc)
    app = create_service_app(
        "dispatch",
        settings=res.settings,
        routers=ROUTERS,
        readiness=checks,
        configure_logs=configure_logs,
    )
    app.state.sessions = res.sessions
    install_domain_errors(app)
    return app
