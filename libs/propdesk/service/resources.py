"""The connections one service process holds: database, NATS, Redis."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory
from propdesk.settings import Settings


@dataclass
class ServiceResources:
    name: str
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    nc: NATS | None = None

    @classmethod
    async def open(cls, name: str, settings: Settings, *, nats: bool = True) -> ServiceResources:
        engine = create_engine(settings)
        res = cls(
            name=name,
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            redis=aioredis.from_url(
                settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            ),
        )
        from propdesk.telemetry import instrument_engine, instrument_redis

        if settings.trace_database:
            instrument_engine(engine)
        if settings.trace_redis:
            instrument_redis(res.redis)
        if nats:
            res.nc = await connect(settings, name=f"propdesk-{name}")
            await ensure_stream(res.nc.jetstream(), settings)
        return res

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        await self.engine.dispose()

    def readiness_checks(self) -> dict:
        """/readyz checks for every connection this process holds."""
        from propdesk.service.readiness import nats_check, postgres_check, redis_check

        checks = {"postgres": postgres_check(self.engine), "redis": redis_check(self.redis)}
        if self.nc is not None:
            checks["nats"] = nats_check(self.nc)
        return checks
