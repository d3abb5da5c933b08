"""The SLA service process: clocks, warnings, breaches and escalation.

This release carries the service's frame (API process, health, metrics, outbox relay,
bus tables); the SLA policies and durable timers arrive with their own issue.
"""

from __future__ import annotations

from fastapi import FastAPI

from propdesk.service.readiness import CACHE_ONLY
from propdesk.service.resources import ServiceResources
from propdesk.service.spec import ServiceSpec, resources_app


def create_app(res: ServiceResources) -> FastAPI:
    return resources_app(res, title="propdesk SLA service", degraded_only=CACHE_ONLY)


SPEC = ServiceSpec(name="sla", create_app=create_app)
