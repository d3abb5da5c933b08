"""The connections one service process holds: database, NATS, Redis."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from propdesk.bus import bell
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, end_transaction, session_factory
from propdesk.settings import Settings, asyncpg_dsn


@dataclass
class ServiceResources:
    name: str
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    nc: NATS | None = None
    server_settings: dict[str, str] = field(default_factory=dict)
    _driver_pool: asyncpg.Pool | None = field(default=None, init=False, repr=False)
    _driver_pool_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @classmethod
    async def open(
        cls, name: str, settings: Settings, *, nats: bool = True, local_relay: bool = False
    ) -> ServiceResources:
        """`local_relay`: this process runs the relay of its schema, so its writers ring it
        after commit and their connections tell the outbox trigger not to NOTIFY
        (`propdesk.bus.bell`)."""
        server_settings = bell.local_settings() if local_relay else {}
        engine = create_engine(settings, connect_args={"server_settings": server_settings})
        res = cls(
            name=name,
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            server_settings=server_settings,
            redis=aioredis.from_url(
                settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            ),
        )
        from propdesk.telemetry import exporting, instrument_engine, instrument_redis

        # Per-statement and per-command spans, when spans are kept at all: without an
        # exporter their hooks cost intake ~0.4 ms of CPU per complaint for nothing.
        if settings.trace_database and exporting():
            instrument_engine(engine)
        if settings.trace_redis and exporting():
            instrument_redis(res.redis)
        if nats:
            res.nc = await connect(settings, name=f"propdesk-{name}")
            await ensure_stream(res.nc.jetstream(), settings)
        return res

    async def driver_pool(self) -> asyncpg.Pool:
        """A pool of plain asyncpg connections (the app role) for hot paths that run their
        own statements and transactions: no statement building, no per-statement span.
        Created on first use. Such a path must set the tenant context in each transaction,
        as `propdesk.db.session.context_sql` does."""
        if self._driver_pool is None:
            async with self._driver_pool_lock:
                if self._driver_pool is None:
                    self._driver_pool = await asyncpg.create_pool(
                        asyncpg_dsn(self.settings.app_db_url),
                        min_size=1,
                        max_size=self.settings.db_pool_size,
                        reset=end_transaction,
                        server_settings=self.server_settings,
                    )
        return self._driver_pool

    async def close(self) -> None:
        if self._driver_pool is not None:
            with contextlib.suppress(Exception):
                await self._driver_pool.close()
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
