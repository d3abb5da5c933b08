"""The figures as a table for the console and for docs/benchmarks.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:figures:begin -->"
END = "<!-- bench:figures:end -->"


def machine() -> dict[str, Any]:
    import os

    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {"cpus": os.cpu_count(), "cpu_model": model, "ram_gib": round(mem_kib / 2**20, 1)}


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def intake_table(data: dict[str, Any]) -> list[str]:
    head = [
        "run",
        "loop",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "server CPU ms/req",
        "RSS MiB (peak)",
        "non-2xx / errors / unanswered",
    ]
    lines = [_row(head), _row(["---"] * len(head))]
    for f in data["phases"].values():
        loop = "closed, 32 conn" if f["mode"] == "closed" else "open, fixed rate"
        bad = sum(f["non_2xx"].values()) if f["non_2xx"] else 0
        lines.append(
            _row(
                [
                    f["label"],
                    loop,
                    f"{f['throughput_rps']:.0f}",
                    f"{f['p50_ms']}",
                    f"{f['p90_ms']}",
                    f"{f['p99_ms']}",
                    f"{f['max_ms']}",
                    f"{f['server_cpu_ms_per_request']}",
                    f"{f['server_rss_mib']} ({f['server_peak_rss_mib']})",
                    f"{bad} / {f['errors']} / {f.get('unfinished', 0)}",
                ]
            )
        )
    return lines


def cores_table(phases: list[dict[str, Any]]) -> list[str]:
    roles: list[str] = []
    for f in phases:
        for role in f["cores_by_role"]:
            if role not in roles:
                roles.append(role)
    lines = [_row(["cores used by", *[f["label"] for f in phases]])]
    lines.append(_row(["---"] * (len(phases) + 1)))
    for role in roles:
        lines.append(_row([role, *[f"{f['cores_by_role'].get(role, 0.0):.2f}" for f in phases]]))
    if any(f.get("machine_busy_cores") is not None for f in phases):
        busy = [f.get("machine_busy_cores") for f in phases]
        cells = ["" if b is None else f"{b:.2f}" for b in busy]
        lines.append(_row(["the whole machine (/proc/stat)", *cells]))
    return lines


# recorded → dispatched, split where dispatch picks the complaint up (`dispatch_scenario`).
SPLIT = (
    (
        "recorded_to_classified_seen",
        "of it: `recorded_at` → `complaint.classified` seen on NATS (intake's commit, relay)",
    ),
    (
        "classified_seen_to_dispatched",
        "of it: `complaint.classified` seen → work order `at` (dispatch)",
    ),
)


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    out.append(
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM. "
        f"Run {results['started_at']}, `{results['command']}`."
    )
    costs = results.get("costs")
    if costs:
        out += ["", "### one message", ""]
        head = ["µs per message", "wall", "server CPU", "of it kernel", "client CPU"]
        out.append(_row([*head, "WAL bytes (row written / marked)"]))
        out.append(_row(["---"] * 6))
        for name, c in costs.items():
            cells = [c["wall_us"], c["server_us"], c["server_kernel_us"], c["client_us"]]
            wal = f"{c['written_wal_bytes']} / {c['wal_bytes']}" if "wal_bytes" in c else ""
            if "wal_bytes" not in c and "written_wal_bytes" in c:
                wal = f"{c['written_wal_bytes']} / -"
            if "hot_percent" in c:
                wal += f" ({c['hot_percent']} % of the marks HOT)"
            out.append(_row([name, *[str(v) for v in cells], wal]))
    intake = results.get("intake")
    if intake:
        out += ["", "### intake", ""]
        out += intake_table(intake)
        ratio = intake["ratio_throughput"]
        out += [
            "",
            f"Throughput ratio propdesk / bare (closed loop): **{ratio:.2f}×** (aim ≥ 0.7×). "
            f"p99 at a fixed {results['options']['rate']:g} req/s: "
            f"**{intake['phases']['propdesk open']['p99_ms']} ms** (aim < 50 ms). "
            "FastAPI's native telemetry in the baseline process: "
            + (
                "**on** (the baseline is not bare!)"
                if intake.get("baseline_fastapi_telemetry_enabled")
                else "off"
            )
            + ".",
            "",
            "How intake filed the measured complaints (closed loop): "
            + ", ".join(
                f"{k} {v}" for k, v in intake["phases"]["propdesk closed"]["outcomes"].items()
            )
            + ".",
            "",
        ]
        out += cores_table(list(intake["phases"].values()))
    dispatch = results.get("dispatch")
    if dispatch:
        runs = dispatch["runs"]
        out += ["", "### dispatch", ""]
        out.append(_row(["offered rate", "measure", "p50 ms", "p90 ms", "p99 ms", "max ms"]))
        out.append(_row(["---"] * 6))
        keys = ("p50_ms", "p90_ms", "p99_ms", "max_ms")
        for run in runs:
            rate = _rate(run)
            r2d, seen, load = (
                run["recorded_to_dispatched"],
                run["response_to_event_seen"],
                run["load"],
            )
            out.append(_row([rate, "complaint `recorded_at` → work order `at` (server clocks)",
                             *[str(r2d[k]) for k in keys]]))  # fmt: skip
            out.append(_row([rate, "HTTP 201 → `work_order.dispatched` seen on NATS",
                             *[str(seen[k]) for k in keys]]))  # fmt: skip
            for key, measure in SPLIT:
                if run.get(key):  # runs written before the split have none
                    out.append(_row([rate, measure, *[str(run[key][k]) for k in keys]]))
            out.append(_row([rate, "intake POST latency (open loop)",
                             *[str(load[k]) for k in keys]]))  # fmt: skip
        out.append("")
        for run in runs:
            load = run["load"]
            out.append(
                f"- {_rate(run)} offered for {results['options']['dispatch_seconds']:g}"
                f" s: intake answered {load['ok']} ({load['throughput_rps']:.0f} req/s, "
                f"{load['unfinished']} unanswered after the grace period); "
                f"{run['dispatched']} of {run['complaints']} recorded complaints dispatched"
                f" ({run.get('dispatched_after_hours', '?')} of them after hours), "
                f"{run['not_dispatched_within_30s']} not within 30 s."
            )
        out += ["", *cores_table([run["load"] for run in runs])]
    aims = {**(intake or {}).get("aims", {}), **(dispatch or {}).get("aims", {})}
    if aims:
        verdicts = [f"{k} **{'met' if v else 'NOT met'}**" for k, v in aims.items()]
        out += ["", "Aims: " + "; ".join(verdicts) + "."]
    return "\n".join(out)


def _rate(run: dict[str, Any]) -> str:
    """ "100 req/s", and which of dispatch's paths the projects' hours chose."""
    hours = {"working": ", in hours", "after_hours": ", after hours"}.get(run.get("hours"), "")
    return f"{run['rate']:g} req/s{hours}"


def write_docs(path: Path, text: str) -> None:
    doc = path.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{path}: no {BEGIN} … {END} block to replace")
    path.write_text(pattern.sub(lambda _: block, doc))
