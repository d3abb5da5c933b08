"""Waiting, in a race test, until the contenders really wait behind the test's own lock.

A race is made deterministic by holding a lock from another connection (the holder) until
every contender waits behind it, then letting them go. Counting every backend that waits
on a lock would also count a service's job or another test's: contenders could be let go
before they all wait and run one after another, and a test whose assertions accept either
order would pass without a race. Only backends waiting behind the holder count, directly
or queued behind one that does (a second contender for a row waits on the first one's
tuple lock), or behind whoever the holder itself waits for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from propdesk.settings import asyncpg_dsn
from propdesk.testing.waiting import eventually


async def until_waiting(database_url: str, holder: asyncpg.Connection, n: int, what: str) -> None:
    """Until `n` backends wait behind `holder`; `n` 0: until `holder` itself waits (its
    lock queued behind someone else's)."""
    watch = await asyncpg.connect(asyncpg_dsn(database_url))
    holder_pid = holder.get_server_pid()
    try:

        async def blocked() -> bool:
            rows = await watch.fetch(
                "SELECT pid, pg_blocking_pids(pid) AS by FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if n == 0:
                return any(r["pid"] == holder_pid for r in rows)
            seeds = {holder_pid, *(p for r in rows if r["pid"] == holder_pid for p in r["by"])}
            behind = set(seeds)
            grew = True
            while grew:
                new = {r["pid"] for r in rows if r["pid"] not in behind and behind & set(r["by"])}
                behind |= new
                grew = bool(new)
            return len(behind - seeds) >= n

        await eventually(blocked, what, within=10)
    finally:
        await watch.close()


@asynccontextmanager
async def lock_holder(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the database's owner (row-level security hides no row from it) to
    hold locks with."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield conn
    finally:
        await conn.close()


async def in_turn(
    database_url: str,
    lock_sql: str,
    args: Sequence[Any],
    contenders: Sequence[Callable[[], Awaitable[Any]]],
    *,
    release: str = "COMMIT",
) -> list[Any]:
    """Run the contenders while `lock_sql` (on `args`) is held by another transaction,
    each started once the ones before it wait (so they queue in this order); end that
    transaction with `release` once all wait, and return what each returned."""
    async with lock_holder(database_url) as holder:
        await holder.execute("BEGIN")
        tasks: list[asyncio.Task[Any]] = []
        try:
            await holder.execute(lock_sql, *args)
            for contender in contenders:
                tasks.append(asyncio.create_task(contender()))
                await until_waiting(
                    database_url, holder, len(tasks), f"{len(tasks)} contender(s) waiting"
                )
        finally:
            await holder.execute(release)
    return await asyncio.gather(*tasks)
