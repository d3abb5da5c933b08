"""The intake FastAPI app: the platform factory plus intake's routers and API-key auth."""

from __future__ import annotations

from fastapi import FastAPI

from intake.api import apikeys, complaints, onboarding, rules, validity
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
]


def _optional_routers() -> list:
    # Open311 is written by another part of the team; mount it when present.
    try:
        from intake.api import open311
    except ImportError:
        return []
    return [open311.router]


def _optional_middleware() -> list:
    try:
        from intake.api.open311 import Open311ErrorFormat
    except ImportError:
        return []
    return [Open311ErrorFormat]


def create_app(res: ServiceResources) -> FastAPI:
    app = create_service_app(
        "intake",
        settings=res.settings,
        routers=[*ROUTERS, *_optional_routers()],
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
    for middleware in _optional_middleware():
        app.add_middleware(middleware)
    return app
