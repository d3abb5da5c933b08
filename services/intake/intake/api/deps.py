"""Request-scoped handles the routers need, taken from `app.state` (set by `intake.app`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from intake import idempotency_cache
from propdesk.auth.roles import SUPERVISOR_ROLES, Role

RECORD_ROLES = (
    Role.INTAKE_CLERK,
    Role.AFFAIRS_ASSISTANT,
    Role.CS_SUPERVISOR,
    Role.DIRECTOR,
    Role.TENANT_ADMIN,
    Role.DUTY_LEADER,
    Role.QUALITY,
    Role.INTEGRATION,
)
OVERRIDE_ROLES = (Role.AFFAIRS_ASSISTANT, *sorted(SUPERVISOR_ROLES))
REQUEST_INVALIDATION_ROLES = (
    Role.INTAKE_CLERK,
    Role.AFFAIRS_ASSISTANT,
    Role.DEPARTMENT_HEAD,
    *sorted(SUPERVISOR_ROLES),
)
DECIDE_ROLES = tuple(sorted(SUPERVISOR_ROLES))
FLAG_ROLES = OVERRIDE_ROLES
# Who may list the company's staff (`GET /v1/staff`): the supervisor-type roles.
STAFF_READ_ROLES = (
    Role.TENANT_ADMIN,
    Role.DIRECTOR,
    Role.CS_SUPERVISOR,
    Role.DEPARTMENT_HEAD,
    Role.QUALITY,
)


def sessions_of(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessions


def driver_pool_of(request: Request) -> Callable[[], Awaitable[asyncpg.Pool]]:
    """The service's asyncpg pool (created on first use), for the recording hot path."""
    return request.app.state.resources.driver_pool  # type: ignore[no-any-return]


def redis_of(request: Request) -> aioredis.Redis | None:
    return getattr(request.app.state, "redis", None)


def idempotency_prefetch_of(request: Request) -> idempotency_cache.Prefetched | None:
    """The replay-cache entry the API-key authenticator read with the rate limit, if any."""
    return getattr(request.state, "idempotency_prefetch", None)
