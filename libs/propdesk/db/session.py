"""Async SQLAlchemy engine and the tenant-scoped transaction.

The tenant is set with `set_config(name, value, true)` (the function form of SET LOCAL):
it lives exactly as long as the transaction, so a pooled connection (or PgBouncer in
transaction mode) never carries one tenant's context into another's work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from propdesk.settings import Settings, async_url, asyncpg_dsn
from propdesk.tenancy.context import TenantContext, use_context

CONTEXT_SETTINGS = ("app.tenant_id", "app.project_ids", "app.actor", "app.roles", "app.system")


def context_sql(first_param: int = 1) -> str:
    """The `set_config(..., true)` calls that set the tenant context, as select-list items
    of a plain asyncpg statement whose parameters from `$first_param` on are
    `context_args(ctx)`: a hot path sets the context in the statement it needs first."""
    return ", ".join(
        f"set_config('{name}', ${first_param + i}, true)" for i, name in enumerate(CONTEXT_SETTINGS)
    )


def context_args(ctx: TenantContext) -> list[str]:
    settings = ctx.settings()
    return [settings[name] for name in CONTEXT_SETTINGS]


_SET_CONTEXT = text(
    "SELECT set_config('app.tenant_id', :tenant_id, true),"
    " set_config('app.project_ids', :project_ids, true),"
    " set_config('app.actor', :actor, true),"
    " set_config('app.roles', :roles, true),"
    " set_config('app.system', :system, true)"
)


def async_engine(url: str, *, connect_args: dict[str, Any] | None = None, **kwargs) -> AsyncEngine:
    """An AsyncEngine whose connections asyncpg makes from the URL as a libpq-style DSN.

    SQLAlchemy's asyncpg dialect hands a URL's query parameters to `asyncpg.connect` as
    keyword arguments, and libpq's TLS parameters (`sslmode`, `sslrootcert`, `sslcert`,
    `sslkey`, ...) are not among them: a `PROPDESK_DATABASE_URL` asking for TLS failed
    with a TypeError, while the plain asyncpg connections of the hot paths and the relays
    read the same parameters from the DSN. Here asyncpg parses the DSN for every
    connection, so the one URL means the same to both."""
    dsn = asyncpg_dsn(url)
    args = dict(connect_args or {})

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(dsn, **args)

    # The URL itself still names the engine's database (spans and logs read `engine.url`:
    # server, port, database, user), without the query asyncpg alone reads.
    shown = make_url(async_url(url)).set(query={})
    return create_async_engine(shown, async_creator=connect, **kwargs)


def create_engine(settings: Settings, *, url: str | None = None, **kwargs) -> AsyncEngine:
    return async_engine(
        url or settings.app_db_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        **kwargs,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def apply_context(session: AsyncSession, ctx: TenantContext) -> None:
    s = ctx.settings()
    await session.execute(
        _SET_CONTEXT,
        {
            "tenant_id": s["app.tenant_id"],
            "project_ids": s["app.project_ids"],
            "actor": s["app.actor"],
            "roles": s["app.roles"],
            "system": s["app.system"],
        },
    )


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`'s transaction, for plain statements inside it
    (same transaction, same tenant context): a hot path's way around statement building
    and per-statement spans without leaving the session's unit of work."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


@asynccontextmanager
async def tenant_transaction(
    sessions: async_sessionmaker[AsyncSession], ctx: TenantContext
) -> AsyncIterator[AsyncSession]:
    """One transaction under `ctx`: commits on success, rolls back on error."""
    with use_context(ctx):
        async with sessions() as session, session.begin():
            await apply_context(session, ctx)
            yield session


_SET_CONTEXT_ONLY = f"SELECT {context_sql(1)}"


@asynccontextmanager
async def connection_transaction(
    conn: asyncpg.Connection, ctx: TenantContext
) -> AsyncIterator[asyncpg.Connection]:
    """One transaction under `ctx` on a plain asyncpg connection (what `tenant_transaction`
    is for a session): its first statement sets the context, transaction-local, so it
    holds through a pooler that drops startup parameters."""
    async with conn.transaction():
        await conn.execute(_SET_CONTEXT_ONLY, *context_args(ctx))
        yield conn


async def end_transaction(conn: asyncpg.Connection) -> None:
    """The reset of a pool whose connections keep no session state (everything they set
    is transaction-local): end an open transaction, instead of asyncpg's RESET ALL,
    unlock-all, CLOSE ALL and UNLISTEN round trip on every release."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


_AFTER_COMMIT = "propdesk.after_commit"


def after_commit(session: AsyncSession, fn: Callable[[], None]) -> None:
    """Call `fn` once the session's current transaction has committed; never if it rolls
    back. The same callable given twice in one transaction runs once. For what must count
    only what happened: a metric, a cache announcement, the outbox bell."""
    callbacks = session.sync_session.info.setdefault(_AFTER_COMMIT, [])
    if fn not in callbacks:
        callbacks.append(fn)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for fn in session.info.pop(_AFTER_COMMIT, ()):
        fn()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
