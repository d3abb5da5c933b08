"""`python -m bench [costs] [intake] [dispatch] [options]`, normally through `make bench`,
which starts a throwaway stack (PostgreSQL, NATS, Redis; no services) and passes
PROPDESK_*_URL to this process.

First, on the quiet machine, what one PostgreSQL round trip and one JetStream message cost
here (`bench.message_costs`, scenario costs).

Starts its own intake service process (the real `propdesk-service intake`: API, relay,
consumers, jobs), onboards the benchmark companies, runs the scenarios, prints the
figures and writes them to .state/bench/latest.json (and with --write-docs into
docs/benchmarks.md). The intake scenario adds the bare baseline process and nothing
else; the dispatch scenario starts the services it needs (--dispatch-services).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.load import load_pool
from bench.message_costs import message_costs
from bench.processes import intake_argv, start_server
from bench.report import machine, render, write_docs
from bench.scenarios import Bench, Options, dispatch_scenario, intake_scenario
from bench.tenants import onboard_tenants
from propdesk.devstack.ports import free_port

SCENARIOS = ("costs", "intake", "dispatch")
REQUIRED_ENV = ("PROPDESK_DATABASE_URL", "PROPDESK_NATS_URL", "PROPDESK_REDIS_URL")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("scenarios", nargs="*", help=f"of {', '.join(SCENARIOS)}; default: all")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=5.0, help="discarded seconds per phase")
    p.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    p.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    p.add_argument("--dispatch-seconds", type=float, default=15.0)
    p.add_argument(
        "--dispatch-rates",
        default="",
        help="comma list of open-loop rates for the dispatch scenario, run in this order;"
        " default: 20, 100, then --rate (the lighter first, on a quiet machine)",
    )
    p.add_argument(
        "--after-hours-rates",
        default=None,
        help="comma list of rates the dispatch scenario measures again with every project"
        " after hours (the duty leader receives, one event more; bench/working_hours.py);"
        " default: --rate; '' for none. The --dispatch-rates are measured within hours",
    )
    p.add_argument(
        "--dispatch-services",
        default="dispatch,reporting",
        help="services the bench starts for the dispatch scenario, next to its intake"
        " (comma list; dispatch is required). A name given again is another replica;"
        " `intake` here is a replica of the bench's intake, and the load goes to them in"
        " turn (e.g. intake,dispatch,dispatch,reporting: two of each, as deploy/k8s runs)",
    )
    p.add_argument(
        "--settle-max",
        type=float,
        default=30.0,
        help="at most this long, wait for the machine to go idle before each phase",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the intake process with py-spy during the closed loop (collapsed stacks)",
    )
    p.add_argument(
        "--intake-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the benchmarked intake process, e.g."
        " PROPDESK_TRACE_DATABASE=false (repeatable)",
    )
    p.add_argument("--json", type=Path, default=Path(".state/bench/latest.json"))
    p.add_argument(
        "--logs",
        type=Path,
        default=None,
        help="keep the started services' logs in this directory (default: the throwaway"
        " stack's, removed with it)",
    )
    p.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = p.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if "dispatch" not in args.dispatch_services.split(","):
        p.error("--dispatch-services must include dispatch")
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    scenarios = args.scenarios or list(SCENARIOS)
    shown = [a for a in sys.argv[1:] if a != "--write-docs"]
    env = dict(os.environ)
    log_dir = args.logs or Path(env.get("PROPDESK_STATE_DIR") or tempfile.mkdtemp()) / "bench-logs"
    options = Options(
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        rate=args.rate,
        dispatch_seconds=args.dispatch_seconds,
        dispatch_rates=[float(r) for r in args.dispatch_rates.split(",") if r.strip()]
        or sorted({20.0, 100.0, args.rate}),
        settle_max=args.settle_max,
        profile_dir=args.profile,
        dispatch_services=tuple(n.strip() for n in args.dispatch_services.split(",") if n),
        after_hours_rates=[args.rate]
        if args.after_hours_rates is None
        else [float(r) for r in args.after_hours_rates.split(",") if r.strip()],
    )
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # --write-docs does not change the figures, so the command shown leaves it out.
        "command": "make bench" + (f' ARGS="{shlex.join(shown)}"' if shown else ""),
        "machine": machine(),
        "options": {k: v for k, v in vars(options).items() if k != "profile_dir"},
    }
    intake_env = dict(kv.split("=", 1) for kv in args.intake_env)
    results["options"]["intake_env"] = intake_env
    if "costs" in scenarios:
        print("bench: costs: one PostgreSQL round trip, one JetStream message", flush=True)
        results["costs"] = await message_costs(env)
    if not {"intake", "dispatch"} & set(scenarios):
        return results
    port = free_port()
    print(f"bench: starting intake (propdesk-service intake --port {port})", flush=True)
    intake = await asyncio.to_thread(
        start_server, "intake", intake_argv(port), port, {**env, **intake_env}, log_dir
    )
    pool = load_pool()
    try:
        t0 = time.monotonic()
        companies = await onboard_tenants(f"http://127.0.0.1:{port}")
        print(f"bench: onboarded {len(companies)} companies in {time.monotonic() - t0:.1f} s")
        bench = Bench(options, env, log_dir, pool, intake, companies, run_id=f"{int(time.time())}")
        if "intake" in scenarios:
            results["intake"] = await intake_scenario(bench)
        if "dispatch" in scenarios:
            results["dispatch"] = await dispatch_scenario(bench)
    finally:
        pool.shutdown()
        await asyncio.to_thread(intake.stop)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [v for v in REQUIRED_ENV if not os.environ.get(v)]
    if missing:
        print(f"bench: {', '.join(missing)} not set; run it with `make bench`", file=sys.stderr)
        return 2
    results = asyncio.run(main_async(args))
    text = render(results)
    print("\n" + text + "\n", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"bench: figures written to {args.json}")
    if args.write_docs:
        write_docs(Path("docs/benchmarks.md"), text)
        print("bench: docs/benchmarks.md updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
