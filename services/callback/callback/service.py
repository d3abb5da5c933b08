"""The callback service process: callbacks after resolution, surveys, reopening.

This release carries the service's frame (API process, health, metrics, outbox relay,
bus tables); callback tasks and surveys arrive with their own issue.
"""

from __future__ import annotations

from fastapi import FastAPI

from propdesk.service.readiness import CACHE_ONLY
from propdesk.service.resources import ServiceResources
from propdesk.service.spec import ServiceSpec, resources_app


def create_app(res: ServiceResources) -> FastAPI:
    return resources_app(res, title="propdesk callback service", degraded_only=CACHE_ONLY)


SPEC = ServiceSpec(name="callback", create_app=create_app)
