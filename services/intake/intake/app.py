"""The intake FastAPI app: the platform factory plus intake's routers and API-key auth."""

from __future__ import annotations

from fastapi import FastAPI

from intake.api import apikeys, complaints, directory, onboarding, open311, rules, validity
from intake.auth import ApiKeyAuthenticator
from propdesk.service.app import create_service_app
from propdesk.service.readiness import CACHE_ONLY
from propdesk.service.resources import ServiceResources

ROUTERS = [
    complaints.router,
    validity.router,
    onboarding.router,
    apikeys.router,
    rules.router,
    directory.router,
    open311.router,
]


def create_app(res: ServiceResources) -> FastAPI:
    app = create_service_app(
        "intake",
        settings=res.settings,
        routers=ROUTERS,
        # PostgreSQL and NATS (the relay, the work-order consumer, the caches' news) must
        # answer; Redis is cache only: down, idempotency falls back to PostgreSQL and the
        # rate limit fails open, so the replica reports itself degraded but stays ready.
        readiness=res.readiness_checks(),
        degraded_only=CACHE_ONLY,
        configure_logs=False,
    )
    app.state.sessions = res.sessions
    app.state.redis = res.redis
    app.state.resources = res
    app.state.authenticators.append(ApiKeyAuthenticator(res.sessions, res.redis))
    # Added last, so outermost: Open311 paths get the spec's error list even for the
    # answers of the platform's middleware (body limit, last-resort 500).
    app.add_middleware(open311.Open311ErrorFormat)
    return app
