"""The scenarios `python -m bench` runs.

- `intake`: one propdesk intake process (API, its outbox relay and consumers, as deployed)
  against one bare FastAPI + asyncpg process inserting the same row. No other propdesk
  service runs meanwhile, so the ratio compares like with like; the events intake
  publishes wait in JetStream.
- `dispatch`: the bench starts the services the pipeline needs (dispatch, reporting by
  default) next to the same intake process, lets them catch up with the backlog, then
  measures received → dispatched and the whole platform's CPU under open-loop load.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import orjson

from bench.baseline_app import SCHEMA_SQL
from bench.load import LoadSpec, percentile
from bench.phases import Phase, measure
from bench.processes import ServerProcess, baseline_argv, service_argv, start_server
from bench.tenants import Company
from bench.working_hours import set_hours
from bench.workload import ComplaintWorkload
from propdesk.devstack.ports import free_port
from propdesk.settings import asyncpg_dsn

HOST = "127.0.0.1"


@dataclass
class Options:
    seconds: float
    warmup: float
    connections: int
    rate: float
    dispatch_seconds: float
    dispatch_rates: list[float]
    settle_max: float
    profile_dir: Path | None = None
    dispatch_services: tuple[str, ...] = ("dispatch", "reporting")
    catch_up_max: float = 600.0
    # Rates measured again with every project after hours (`bench.working_hours`), after
    # the `dispatch_rates` within working hours.
    after_hours_rates: list[float] = field(default_factory=list)


@dataclass
class Bench:
    options: Options
    env: dict[str, str]
    log_dir: Path
    pool: ProcessPoolExecutor
    intake: ServerProcess
    companies: list[Company]
    run_id: str

    @property
    def api_keys(self) -> list[str]:
        return [c.api_key for c in self.companies]

    def own_pids(self, *servers: ServerProcess) -> dict[int, str]:
        return {s.pid: s.name for s in (self.intake, *servers)}

    def workload(self, tag: str, seed: int) -> ComplaintWorkload:
        return ComplaintWorkload(self.api_keys, run_tag=f"{self.run_id}-{tag}", seed=seed)


def _closed(port: int, o: Options) -> LoadSpec:
    return LoadSpec(HOST, port, "closed", o.seconds, o.warmup, connections=o.connections)


def _open(port: int, o: Options, seconds: float | None = None, ids: bool = False) -> LoadSpec:
    return LoadSpec(
        HOST, port, "open", seconds or o.seconds, o.warmup, rate=o.rate, collect_ids=ids
    )


async def intake_scenario(b: Bench) -> dict[str, Any]:
    o = b.options
    dsn = asyncpg_dsn(b.env["PROPDESK_DATABASE_URL"])
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA_SQL)
    finally:
        await conn.close()
    port = free_port()
    baseline = await asyncio.to_thread(
        start_server,
        "baseline",
        baseline_argv(port),
        port,
        {**b.env, "BENCH_BASELINE_DSN": dsn},
        b.log_dir,
    )
    phases: list[Phase] = []
    try:
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"http://{HOST}:{port}/healthz")).json()
        baseline_telemetry = bool(health.get("telemetry"))
        own = b.own_pids(baseline)
        # The baseline first: propdesk's runs leave events for the other services to
        # consume, which would otherwise compete with the baseline for the two cores.
        for label, server, spec, seed in (
            ("baseline closed", baseline, _closed(port, o), 11),
            ("baseline open", baseline, _open(port, o), 12),
            ("propdesk closed", b.intake, _closed(b.intake.port, o), 21),
            ("propdesk open", b.intake, _open(b.intake.port, o), 22),
        ):
            print(f"bench: {label} ({spec.mode} loop) ...", flush=True)
            phase = await measure(
                b.pool,
                server,
                label,
                spec,
                b.workload(label.replace(" ", "-"), seed),
                own_pids=own,
                settle_max=o.settle_max,
                profile_to=o.profile_dir / f"{label.replace(' ', '-')}.txt"
                if o.profile_dir and server is b.intake
                else None,
                database_dsn=dsn,
            )
            phases.append(phase)
            print(f"bench:   {summary_line(phase.figures())}", flush=True)
    finally:
        await asyncio.to_thread(baseline.stop)
    by_label = {p.label: p.figures() for p in phases}
    base, prop = by_label["baseline closed"], by_label["propdesk closed"]
    ratio = prop["throughput_rps"] / base["throughput_rps"] if base["throughput_rps"] else None
    open_p99 = by_label["propdesk open"]["p99_ms"]
    return {
        "baseline_fastapi_telemetry_enabled": baseline_telemetry,
        "phases": by_label,
        "ratio_throughput": round(ratio, 3) if ratio is not None else None,
        "aims": {
            "throughput_ratio_at_least_0.7": ratio is not None and ratio >= 0.7,
            f"p99_under_50ms_at_{o.rate:g}_rps": open_p99 < 50,
        },
    }


def summary_line(f: dict[str, Any]) -> str:
    line = (
        f"{f['throughput_rps']:.0f} req/s, p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, "
        f"RSS {f['server_rss_mib']} MiB, server CPU {f['server_cpu_ms_per_request']} ms/req"
    )
    if f["non_2xx"] or f["errors"] or f["unfinished"]:
        line += f", non-2xx {f['non_2xx']}, errors {f['errors']}"
        line += f", unanswered after the grace period {f['unfinished']}"
    return line


async def _wait_dispatch_ready(b: Bench, seen: dict[str, Any], limit_s: float) -> float:
    """One complaint per tenant; wait until each is dispatched (the dispatch service has
    consumed the onboarding events, routes, and has caught up with the events the intake
    scenario left in the stream: the probes come after them). Seconds it took."""
    start = time.monotonic()
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{b.intake.port}") as client:
        for n, key in enumerate(b.api_keys):
            wl = ComplaintWorkload([key], run_tag=f"{b.run_id}-probe", seed=n)
            _, path, headers, body = wl.make(n)
            r = await client.post(path, content=body, headers=headers)
            r.raise_for_status()
            ids.append(r.json()["id"])
    for _ in range(int(limit_s / 0.2)):
        if all(i in seen for i in ids):
            return time.monotonic() - start
        await asyncio.sleep(0.2)
    missing = [i for i in ids if i not in seen]
    raise RuntimeError(f"dispatch did not dispatch {len(missing)} probe complaint(s) in time")


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p90_ms": round(percentile(values, 90), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values, default=float("nan")), 1),
    }


async def dispatch_scenario(b: Bench) -> dict[str, Any]:
    """Open loop at each rate; every 201's complaint id is matched
    with its `work_order.dispatched` event (core NATS subscription on the stream's
    subjects, which observes without consuming). The path is also split where dispatch
    picks it up: when the complaint's `complaint.classified` reached NATS (intake's side:
    its commit, its relay, the publish) and from there to the work order's `at` (the
    stream, the delivery and the wait in dispatch's consumer: `at` is taken when dispatch
    starts on the complaint, before its assignment and commit)."""
    o = b.options
    seen: dict[str, tuple[float, float, float, bool]] = {}
    classified_seen: dict[str, float] = {}
    nc = await nats.connect(b.env["PROPDESK_NATS_URL"])

    async def on_classified(msg: Any) -> None:
        classified_seen.setdefault(orjson.loads(msg.data)["payload"]["complaint_id"], time.time())

    async def on_msg(msg: Any) -> None:
        observed = time.time()
        p = orjson.loads(msg.data)["payload"]
        at = datetime.fromisoformat(p["at"]).timestamp()
        recorded = datetime.fromisoformat(p["recorded_at"]).timestamp()
        seen.setdefault(p["complaint_id"], (recorded, at, observed, bool(p["after_hours"])))

    runs: list[dict[str, Any]] = []
    services: list[ServerProcess] = []
    plan = [("working", r) for r in o.dispatch_rates]
    plan += [("after_hours", r) for r in o.after_hours_rates]
    sub = await nc.subscribe("pd.work_order.dispatched.>", cb=on_msg)
    classified_sub = await nc.subscribe("pd.complaint.classified.>", cb=on_classified)
    try:
        for name in o.dispatch_services:
            port = free_port()
            print(f"bench: dispatch: starting {name} (propdesk-service {name} --port {port})")
            services.append(
                await asyncio.to_thread(
                    start_server, name, service_argv(name, port), port, b.env, b.log_dir
                )
            )
        print("bench: dispatch: waiting for dispatch to route a probe complaint per tenant")
        ready = await _wait_dispatch_ready(b, seen, o.catch_up_max)
        print(f"bench: dispatch: ready after {ready:.1f} s")
        own = b.own_pids(*services)
        dispatch = next(s for s in services if s.name == "dispatch")
        # Replicas of intake share the load, as a load balancer would send it.
        intake_replicas = tuple(s.port for s in services if s.name == "intake")
        hours_set = None
        for n, (hours, rate) in enumerate(plan):
            if hours != hours_set:
                projects = await set_hours(
                    f"http://{HOST}:{b.intake.port}",
                    f"http://{HOST}:{dispatch.port}",
                    b.companies,
                    hours,
                )
                hours_set = hours
                print(f"bench: dispatch: {projects} projects set to {hours.replace('_', ' ')}")
            tag = f"{rate:g}" + ("-after-hours" if hours == "after_hours" else "")
            label = f"propdesk open {rate:g}/s + dispatch" + (
                ", after hours" if hours == "after_hours" else ""
            )
            print(f"bench: dispatch: {label} ...", flush=True)
            spec = replace(
                _open(b.intake.port, o, seconds=o.dispatch_seconds, ids=True),
                rate=rate,
                extra_ports=intake_replicas,
            )
            prof = o.profile_dir
            phase = await measure(
                b.pool,
                b.intake,
                label,
                spec,
                b.workload(f"dispatch-{n}", 31 + n),
                own_pids=own,
                settle_max=o.settle_max,
                profile_to=prof / f"dispatch-{tag}.txt" if prof else None,
                database_dsn=asyncpg_dsn(b.env["PROPDESK_DATABASE_URL"]),
                also_profile={s.pid: prof / f"dispatch-{tag}-{s.name}.txt" for s in services}
                if prof
                else None,
            )
            sent = phase.result.responses
            for _ in range(150):  # up to 30 s for the last ones
                if all(cid in seen for cid, _ in sent):
                    break
                await asyncio.sleep(0.2)
            service_ms: list[float] = []  # work order `at` − complaint `recorded_at`
            client_ms: list[float] = []  # event seen on NATS − HTTP response received
            intake_side_ms: list[float] = []  # `complaint.classified` seen − `recorded_at`
            dispatch_side_ms: list[float] = []  # work order `at` − `classified` seen
            after_hours = 0
            for cid, responded in sent:
                if cid in seen:
                    recorded, at, observed, after = seen[cid]
                    service_ms.append((at - recorded) * 1000)
                    client_ms.append((observed - responded) * 1000)
                    after_hours += after
                    if cid in classified_seen:
                        intake_side_ms.append((classified_seen[cid] - recorded) * 1000)
                        dispatch_side_ms.append((at - classified_seen[cid]) * 1000)
            run = {
                "rate": rate,
                "hours": hours,
                "load": phase.figures(),
                "complaints": len(sent),
                "dispatched": len(service_ms),
                "dispatched_after_hours": after_hours,
                "not_dispatched_within_30s": len(sent) - len(service_ms),
                "recorded_to_dispatched": _stats(service_ms),
                "response_to_event_seen": _stats(client_ms),
                "recorded_to_classified_seen": _stats(intake_side_ms),
                "classified_seen_to_dispatched": _stats(dispatch_side_ms),
            }
            r2d = run["recorded_to_dispatched"]
            print(
                f"bench:   recorded → dispatched p50 {r2d['p50_ms']} ms, p99 {r2d['p99_ms']}"
                f" ms; {run['dispatched']}/{run['complaints']} dispatched"
                f" ({after_hours} after hours); intake " + summary_line(run["load"]),
                flush=True,
            )
            runs.append(run)
    finally:
        await sub.unsubscribe()
        await classified_sub.unsubscribe()
        await nc.close()
        for server in services:
            await asyncio.to_thread(server.stop)
    return {
        "services": ["intake", *o.dispatch_services],
        "catch_up_seconds": round(ready, 1),
        "runs": runs,
        "aims": dispatch_aims(runs, o.rate),
    }


def dispatch_aims(runs: list[dict[str, Any]], aim_rate: float) -> dict[str, bool]:
    """The aim holds at the intake benchmark's rate, on each path measured there; other
    rates are for reading only. A run counts for its path only if every order took it (a
    run at the one minute a day the hours leave out would mix the two): else not met."""

    def one_path(run: dict[str, Any]) -> bool:
        after = run.get("dispatched_after_hours", 0)
        return after == (run["dispatched"] if run.get("hours") == "after_hours" else 0)

    return {
        f"recorded_to_dispatched_p99_under_100ms_at_{run['rate']:g}_rps"
        + ("_after_hours" if run.get("hours") == "after_hours" else ""): (
            run["not_dispatched_within_30s"] == 0
            and run["recorded_to_dispatched"]["p99_ms"] < 100
            and run["load"]["unfinished"] == 0
            and one_path(run)
        )
        for run in runs
        if run["rate"] == aim_rate
    }
