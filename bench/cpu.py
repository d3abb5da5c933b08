"""Where the machine's CPU went during a measured phase, by process role (from /proc)."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _role(cmdline: list[str], own_pids: dict[int, str], pid: int) -> str:
    if pid in own_pids:
        return own_pids[pid]
    joined = " ".join(cmdline)
    if "propdesk-service" in joined:
        idx = next(i for i, a in enumerate(cmdline) if a.endswith("propdesk-service"))
        name = cmdline[idx + 1] if idx + 1 < len(cmdline) else "?"
        return f"{name} (devstack)"  # a service the bench did not start
    if "postgres" in os.path.basename(cmdline[0]) or joined.startswith("postgres:"):
        return "postgresql"
    if "nats-server" in joined:
        return "nats"
    if "redis-server" in joined:
        return "redis"
    if "multiprocessing" in joined:
        return "load generator"
    return "other"


def snapshot(own_pids: dict[int, str]) -> tuple[float, Counter[str]]:
    """(monotonic time, CPU seconds so far by role) over every process we may read."""
    by_role: Counter[str] = Counter()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            raw = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        cmdline = [a for a in raw.decode(errors="replace").split("\0") if a] or ["?"]
        # comm may hold spaces or parentheses; the fields after the last ')' are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        by_role[_role(cmdline, own_pids, pid)] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return time.monotonic(), by_role


def usage(
    before: tuple[float, Counter[str]], after: tuple[float, Counter[str]]
) -> dict[str, float]:
    """Cores used by role between two snapshots (1.0 = one core busy all the time);
    processes that started or ended in between count from zero."""
    seconds = after[0] - before[0]
    out = {
        role: (after[1][role] - before[1].get(role, 0.0)) / seconds
        for role in after[1]
        if after[1][role] - before[1].get(role, 0.0) > 0.005 * seconds
    }
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def machine_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine so far, every core together (/proc/stat)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(parts), parts[3] + parts[4]


def machine_busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Cores the whole machine kept busy between two `machine_ticks`: every process,
    those that started or ended in between included, which `usage` cannot see whole."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return (total - idle) / total * (os.cpu_count() or 1) if total else 0.0


def machine_busy_fraction(interval: float = 1.0) -> float:
    """Fraction of all cores busy over `interval` seconds (from /proc/stat)."""

    def read() -> tuple[int, int]:
        parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = parts[3] + parts[4]
        return sum(parts), idle

    total0, idle0 = read()
    time.sleep(interval)
    total1, idle1 = read()
    dt = total1 - total0
    return 1.0 - (idle1 - idle0) / dt if dt else 0.0
