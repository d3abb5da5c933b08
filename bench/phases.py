"""One measured phase: warm-up (discarded), then the load, with the server's CPU, memory and
the whole machine's CPU by role read around the measured part only."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import cpu
from bench.load import LoadSpec, Result, Workload, run_load
from bench.processes import ServerProcess

QUIET_BUSY_FRACTION = 0.15


@dataclass
class Phase:
    label: str
    mode: str
    result: Result
    server_cpu_seconds: float
    rss_mib: float
    peak_rss_mib: float
    cores_by_role: dict[str, float]
    settle_seconds: float
    machine_busy_cores: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        r = self.result
        n = len(r.latencies)
        return {
            "label": self.label,
            "mode": self.mode,
            "seconds": round(r.elapsed, 2),
            "requests": n,
            "ok": r.ok,
            "non_2xx": {str(s): c for s, c in r.statuses.items() if not 200 <= s < 300},
            "errors": r.errors,
            "unfinished": r.unfinished,
            "throughput_rps": round(r.throughput, 1),
            "p50_ms": round(r.percentile(50) * 1000, 1),
            "p90_ms": round(r.percentile(90) * 1000, 1),
            "p99_ms": round(r.percentile(99) * 1000, 1),
            "max_ms": round(max(r.latencies, default=float("nan")) * 1000, 1),
            # Per answered request: abandoned ones may or may not have cost the server.
            "server_cpu_ms_per_request": round(self.server_cpu_seconds / r.ok * 1000, 2)
            if r.ok
            else None,
            "server_rss_mib": round(self.rss_mib, 1),
            "server_peak_rss_mib": round(self.peak_rss_mib, 1),
            "client_cpu_cores": round(r.client_cpu_seconds / r.elapsed, 2) if r.elapsed else None,
            "cores_by_role": {k: round(v, 2) for k, v in self.cores_by_role.items()},
            "machine_busy_cores": None
            if self.machine_busy_cores is None
            else round(self.machine_busy_cores, 2),
            "settle_seconds": round(self.settle_seconds, 1),
            "outcomes": dict(r.tags.most_common()),
            **self.extra,
        }


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (pip install py-spy) sampling the server: collapsed stacks for `bench.profile`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("py-spy")
    argv = [str(exe), "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--idle"]
    argv += ["--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def sample_waits(dsn: str, out: Path) -> None:
    """What PostgreSQL sessions are doing, sampled every 50 ms until cancelled; the counts
    are written to `out` (which statements wait, and on what)."""
    import asyncpg

    counts: Counter[str] = Counter()
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            rows = await conn.fetch(
                "SELECT state, wait_event_type, wait_event, left(regexp_replace(query,"
                " '\\s+', ' ', 'g'), 90) AS q FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND state <> 'idle'"
            )
            counts["(samples)"] += 1
            for r in rows:
                counts[f"{r['state']} | {r['wait_event_type']}:{r['wait_event']} | {r['q']}"] += 1
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
        text = "\n".join(f"{n:6d}  {k}" for k, n in counts.most_common(60)) + "\n"
        await asyncio.to_thread(out.write_text, text)


async def reset_statements(dsn: str) -> bool:
    """Start pg_stat_statements' counts afresh, planning time included; False if the
    server has not loaded it."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        # Planning is not execution: a statement planned afresh on every call shows up
        # only here (the bench's server is throwaway: the setting goes with it).
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
        await conn.execute("SELECT pg_reload_conf()")
        await conn.execute("SELECT pg_stat_statements_reset()")
        return True
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()


async def write_statements(dsn: str, out: Path, seconds: float) -> None:
    """The statements PostgreSQL spent its time on since `reset_statements`, costliest
    first: total and mean execution time, mean planning time and how many of the calls
    were planned, calls, and calls per second of the phase. (PostgreSQL 18 counts a
    statement on same-named tables of several schemas, the outboxes say, as one.)"""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT total_exec_time + total_plan_time AS total, mean_exec_time AS mean,"
            " max_exec_time AS max, total_plan_time / greatest(plans, 1) AS plan_mean,"
            " plans, calls, rows,"
            " shared_blks_hit + shared_blks_read AS blocks, wal_bytes,"
            " left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS q"
            " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
            " ORDER BY total_exec_time + total_plan_time DESC LIMIT 60"
        )
    finally:
        await conn.close()
    all_ms = sum(r["total"] for r in rows) or 1.0
    head = (
        "share",
        "total ms",
        "mean ms",
        "max ms",
        "plan ms",
        "planned",
        "calls/s",
        "rows",
        "WAL kB",
    )
    lines = [" ".join(f"{h:>9}" for h in head) + "  query"]
    for r in rows:
        cells = (
            f"{100 * r['total'] / all_ms:.1f}%",
            f"{r['total']:.0f}",
            f"{r['mean']:.3f}",
            f"{r['max']:.1f}",
            f"{r['plan_mean']:.3f}",
            f"{100 * r['plans'] / max(r['calls'], 1):.0f}%",
            f"{r['calls'] / seconds:.1f}",
            str(r["rows"]),
            str(int(r["wal_bytes"]) // 1024),
        )
        lines.append(" ".join(f"{c:>9}" for c in cells) + f"  {r['q']}")
    await asyncio.to_thread(out.write_text, "\n".join(lines) + "\n")


async def write_events(dsn: str, out: Path, since: float, seconds: float) -> None:
    """The events each service's outbox took during the phase, by type, per second."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        schemas = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox'"
            " ORDER BY 1"
        )
        lines = [f"{'events/s':>9}  schema  type"]
        for row in schemas:
            schema = row["table_schema"]
            counts = await conn.fetch(
                f'SELECT event_type, count(*) AS n FROM "{schema}".outbox'
                " WHERE created_at >= to_timestamp($1) GROUP BY 1 ORDER BY 2 DESC",
                since,
            )
            lines += [f"{c['n'] / seconds:9.1f}  {schema}  {c['event_type']}" for c in counts]
    finally:
        await conn.close()
    await asyncio.to_thread(out.write_text, "\n".join(lines) + "\n")


def stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def wait_quiet(max_seconds: float) -> float:
    """Wait until the machine is nearly idle (the event consumers have caught up with the
    previous phase), at most `max_seconds`; the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < max_seconds:
        if cpu.machine_busy_fraction(1.0) < QUIET_BUSY_FRACTION:
            break
    return time.monotonic() - start


async def measure(
    pool: ProcessPoolExecutor,
    server: ServerProcess,
    label: str,
    spec: LoadSpec,
    workload: Workload,
    *,
    own_pids: dict[int, str],
    settle_max: float,
    profile_to: Path | None = None,
    database_dsn: str | None = None,
    also_profile: dict[int, Path] | None = None,
) -> Phase:
    """`also_profile`: other processes (pid → output) to sample with py-spy alongside."""
    settled = await asyncio.to_thread(wait_quiet, settle_max)
    if spec.warmup > 0:
        await run_load(pool, replace(spec, seconds=spec.warmup, warmup=0), workload)
    before = cpu.snapshot(own_pids)
    ticks_before = cpu.machine_ticks()
    server_cpu0 = server.cpu_seconds()
    profiler = start_profiler(server.pid, profile_to) if profile_to else None
    others = [start_profiler(pid, out) for pid, out in (also_profile or {}).items()]
    waits = (
        asyncio.create_task(sample_waits(database_dsn, profile_to.with_suffix(".waits.txt")))
        if profile_to and database_dsn
        else None
    )
    statements = (
        profile_to is not None and database_dsn is not None and await reset_statements(database_dsn)
    )
    started = time.time()
    result = await run_load(
        pool, replace(spec, warmup=0, start_index=spec.start_index + 1_000_000), workload
    )
    if statements and profile_to is not None and database_dsn is not None:
        await write_statements(
            database_dsn, profile_to.with_suffix(".statements.txt"), result.elapsed
        )
        await write_events(
            database_dsn, profile_to.with_suffix(".events.txt"), started, result.elapsed
        )
    for p in [profiler, *others]:
        if p is not None:
            await asyncio.to_thread(stop_profiler, p)
    if waits is not None:
        waits.cancel()
        await asyncio.gather(waits, return_exceptions=True)
    server_cpu = server.cpu_seconds() - server_cpu0
    after = cpu.snapshot(own_pids)
    ticks_after = cpu.machine_ticks()
    return Phase(
        label=label,
        mode=spec.mode,
        result=result,
        server_cpu_seconds=server_cpu,
        rss_mib=server.rss_mib(),
        peak_rss_mib=server.peak_rss_mib(),
        cores_by_role=cpu.usage(before, after),
        machine_busy_cores=cpu.machine_busy_cores(ticks_before, ticks_after),
        settle_seconds=settled,
    )
