"""What one message costs on this machine, measured in the same run as the scenarios: a
PostgreSQL round trip, a transaction's BEGIN and COMMIT, a JetStream publish (PubAck
awaited; the stack's NATS fsyncs every write), and a JetStream delivery with its ack.

For each: wall time, the server process's CPU and the client's (this thread's, on uvloop
like the services), per message. A complaint costs the platform a few dozen such messages
before any of its own work (`docs/benchmarks.md`, "The floor"), so these figures say how
far the machine itself lets the platform go."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAYLOAD = b"x" * 1200  # about a complaint event's envelope


def _cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def _pid_listening(port: int, name: str) -> int | None:
    """The process named `name` whose command line mentions the port (NATS: its config)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if name not in cmd:
            continue
        conf = next((a for a in cmd.split() if a.endswith(".conf")), None)
        try:
            if conf is None or f":{port}" in (entry / "cwd" / conf).read_text():
                return int(entry.name)
        except OSError:
            continue  # another user's server, or gone meanwhile
    return None


async def _measure(
    n: int, server_pid: int, once: Callable[[int], Awaitable[Any]]
) -> dict[str, float]:
    u0, s0 = _cpu(server_pid)
    c0, t0 = time.thread_time(), time.perf_counter()
    for i in range(n):
        await once(i)
    c1, t1 = time.thread_time(), time.perf_counter()
    u1, s1 = _cpu(server_pid)
    per = 1e6 / n
    return {
        "wall_us": round((t1 - t0) * per),
        "server_us": round((u1 - u0 + s1 - s0) * per),
        "server_kernel_us": round((s1 - s0) * per),
        "client_us": round((c1 - c0) * per),
    }


async def _postgres(dsn: str, n: int) -> dict[str, dict[str, float]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")

        async def round_trip(i: int) -> None:
            await conn.fetchval("SELECT $1::int", i)

        async def begin_commit(_i: int) -> None:
            async with conn.transaction():
                pass

        for _ in range(200):  # warm the prepared statement and the caches
            await round_trip(0)
        return {
            "postgres round trip (SELECT $1)": await _measure(n, pid, round_trip),
            "postgres BEGIN + COMMIT (two round trips)": await _measure(n, pid, begin_commit),
        }
    finally:
        await conn.close()


async def _jetstream(url: str, n: int) -> dict[str, dict[str, float]]:
    import nats

    port = urlsplit(url.split(",")[0]).port or 4222
    pid = _pid_listening(port, "nats-server")
    if pid is None:
        return {}
    nc = await nats.connect(url, name="bench-message-costs")
    js = nc.jetstream()
    stream, subject = f"BENCHCOSTS{uuid4().hex[:6].upper()}", f"benchcosts.{uuid4().hex[:6]}"
    try:
        await js.add_stream(name=stream, subjects=[f"{subject}.>"])

        async def publish(i: int) -> None:
            await js.publish(f"{subject}.x", PAYLOAD, headers={"Nats-Msg-Id": f"{stream}-{i}"})

        sub = await js.pull_subscribe(f"{subject}.>", durable="costs", stream=stream)

        async def deliver(_i: int) -> None:
            [msg] = await sub.fetch(1, timeout=5)
            await msg.ack()

        return {
            "JetStream publish, PubAck awaited": await _measure(n, pid, publish),
            "JetStream delivery (pull of one) + ack": await _measure(n, pid, deliver),
        }
    finally:
        try:
            await js.delete_stream(stream)
        finally:
            await nc.close()


def _run(dsn: str, nats_url: str, n: int) -> dict[str, dict[str, float]]:
    import uvloop

    async def both() -> dict[str, dict[str, float]]:
        return {**await _postgres(dsn, n), **await _jetstream(nats_url, n)}

    return uvloop.run(both())


async def message_costs(env: dict[str, str], n: int = 2000) -> dict[str, dict[str, float]]:
    """Per-message figures, measured on a thread of their own (its CPU is the client's)."""
    from propdesk.settings import asyncpg_dsn

    dsn = asyncpg_dsn(env["PROPDESK_DATABASE_URL"])
    return await asyncio.to_thread(_run, dsn, env["PROPDESK_NATS_URL"], n)
