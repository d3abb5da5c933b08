"""Readiness: can this replica do its work now? Each check is a zero-argument coroutine
function that returns when its dependency answers and raises when it does not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ReadinessCheck = Callable[[], Awaitable[None]]
ReadinessChecks = Mapping[str, ReadinessCheck]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    error: str | None = None


def postgres_check(engine: AsyncEngine) -> ReadinessCheck:
    async def check() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return check


def nats_check(nc: Any, *, timeout: float = 1.0) -> ReadinessCheck:
    """`nc` is a connected nats.aio.client.Client; a PING/PONG round trip proves the link."""

    async def check() -> None:
        if not nc.is_connected:
            raise ConnectionError("not connected to NATS")
        await nc.flush(timeout=timeout)

    return check


def redis_check(redis: Any) -> ReadinessCheck:
    """`redis` is a redis.asyncio.Redis client."""

    async def check() -> None:
        await redis.ping()

    return check


async def _run_one(name: str, check: ReadinessCheck, limit: float) -> CheckResult:
    try:
        await asyncio.wait_for(check(), limit)
    except TimeoutError:
        return CheckResult(name, False, f"no answer within {limit:g}s")
    except Exception as exc:
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}"[:300])
    return CheckResult(name, True)


async def run_checks(checks: ReadinessChecks, *, limit_seconds: float) -> list[CheckResult]:
    """All checks at once, so /readyz takes as long as the slowest, bounded by `limit_seconds`."""
    runs = (_run_one(name, check, limit_seconds) for name, check in checks.items())
    return list(await asyncio.gather(*runs))
