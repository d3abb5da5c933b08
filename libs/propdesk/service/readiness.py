"""Readiness: can this replica do its work now? Each check is a zero-argument coroutine
function that returns when its dependency answers and raises when it does not.

A check named in `degraded_only` (Redis, `CACHE_ONLY`: the idempotency fast path and the
rate limit) is run and reported like any other, but its failure leaves the replica ready
and "degraded": what depends on it falls back (idempotency on PostgreSQL) or fails open
(rate limits), so taking every replica out of the load balancer would turn a slower
service into no service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ReadinessCheck = Callable[[], Awaitable[None]]
ReadinessChecks = Mapping[str, ReadinessCheck]

# Checks whose failure degrades a replica but never makes it unready: Redis is a cache.
CACHE_ONLY: frozenset[str] = frozenset({"redis"})


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


def verdict(
    results: Sequence[CheckResult], degraded_only: Collection[str] = ()
) -> tuple[str, list[CheckResult]]:
    """("ready" | "degraded" | "not-ready", the failures that make it so)."""
    failed = [r for r in results if not r.ok]
    blocking = [r for r in failed if r.name not in degraded_only]
    if blocking:
        return "not-ready", blocking
    if failed:
        return "degraded", failed
    return "ready", []
