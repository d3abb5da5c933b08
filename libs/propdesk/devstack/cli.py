"""`python -m propdesk.devstack run|test|bench|migrate|lock` (what the Makefile calls).

run      servers under .state/ (or PROPDESK_*_URL), migrate, seed the demo company, run
         the services; Ctrl-C stops services, then servers.
test     a throwaway stack on free ports, then ruff check, ruff format --check, pytest
         (arguments after `--` go to pytest); exit status = the first failure.
bench    a throwaway stack (servers only), then `python -m bench` (arguments after `--`),
         which starts the service processes each scenario needs itself.
migrate  create the database if missing and upgrade every schema (no servers started).
lock     print constraints.txt for the installed closure of propdesk[dev].
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

from propdesk.devstack.ports import PortTakenError
from propdesk.devstack.stack import (
    DATABASE_NAME,
    DEFAULT_PG_PORT,
    Stack,
    StackConfig,
    missing_service_modules,
    scripts_dir,
)
from propdesk.devstack.supervisor import (
    Child,
    ChildDied,
    StopRequested,
    stop_signals_raise,
)


def _say(message: str) -> None:
    print(f"devstack: {message}", flush=True)


def _check_services_exist(config: StackConfig) -> bool:
    missing = missing_service_modules(config.services)
    if not missing:
        return True
    present = [n for n in config.services if n not in missing]
    _say(
        "cannot start service(s) "
        + ", ".join(missing)
        + ": no `<name>.service` module (SPEC) or no propdesk.service.runner yet.\n"
        + "    Start only some with PROPDESK_DEVSTACK_SERVICES="
        + ",".join(present)
        + " (empty = servers only)."
    )
    return False


def _print_table(stack: Stack, healthy: list[str], api_key: str | None) -> None:
    cfg = stack.config
    rows: list[tuple[str, str, str]] = []
    origin = "started" if "postgres" in stack.started else "given"
    rows.append(("PostgreSQL", stack.database_url, f"{origin}; app role propdesk_app"))
    nats_note = "started" if "nats" in stack.started else "given"
    if "nats" in stack.started and cfg.nats_http_port:
        nats_note += f"; monitoring http://127.0.0.1:{cfg.nats_http_port}/jsz"
    rows.append(("NATS", stack.nats_url, nats_note))
    rows.append(("Redis", stack.redis_url, "started" if "redis" in stack.started else "given"))
    for name in cfg.services:
        base = f"http://127.0.0.1:{cfg.service_ports[name]}"
        state = "healthy" if name in healthy else "starting"
        rows.append((name, base, f"{state}; docs {base}/docs"))
    width = max(len(r[0]) for r in rows)
    url_width = max(len(r[1]) for r in rows)
    lines = ["", f"propdesk local stack (state {cfg.state_dir}, logs {cfg.logs_dir})"]
    lines += [f"  {a:<{width}}  {b:<{url_width}}  {c}" for a, b, c in rows]
    if api_key:
        intake = f"http://127.0.0.1:{cfg.service_ports['intake']}"
        lines += [
            "",
            f"  demo tenant DEMO, API key: {api_key}",
            f"  curl -s -H 'X-API-Key: {api_key}' {intake}/v1/complaints",
        ]
    lines += [
        "",
        f"  in another shell, `. {cfg.state_dir}/env` points the propdesk CLI at this stack",
        "  Ctrl-C stops the services, then the servers.",
        "",
    ]
    print("\n".join(lines), flush=True)


def cmd_run() -> int:
    config = StackConfig.from_env("run")
    if not _check_services_exist(config):
        return 2
    stack = Stack(config)
    try:
        with stop_signals_raise():
            stack.start_servers()
            migrated = stack.prepare_database()
            _say(f"migrated: {', '.join(migrated) or '(no service has migrations yet)'}")
            _say(f"addresses for your shell: . {stack.write_env_file()}")
            from propdesk.devstack.demo import seed_demo

            seed = seed_demo(config.state_dir, stack.database_url, stack.child_env())
            stack.start_services()
            healthy = stack.wait_services_healthy()
            _print_table(stack, healthy, seed.api_key if seed else None)
            stack.supervisor.watch()
    except StopRequested as stop:
        _say(f"{stop} received; stopping services, then servers")
        return 0
    except ChildDied as died:
        _say(str(died))
        return 1
    except PortTakenError as taken:
        _say(str(taken))
        return 1
    finally:
        stack.teardown()
        _say("stopped")
    return 0


def _run_foreground(stack: Stack, name: str, argv: list[str]) -> int:
    """Run a command with the console's output while watching the servers."""
    child = Child(name, argv, env=stack.child_env(), inherit_output=True, stop_signal=signal.SIGINT)
    child.start()
    try:
        while True:
            rc = child.poll()
            if rc is not None:
                return rc
            stack.supervisor.check()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.2)
    finally:
        if child.running():
            child.stop(timeout=30)


def cmd_test(pytest_args: list[str]) -> int:
    config = StackConfig.from_env("test")
    stack = Stack(config)
    ruff = str(scripts_dir() / "ruff")
    steps = [
        ("ruff check", [ruff, "check", "."]),
        ("ruff format", [ruff, "format", "--check", "."]),
        ("pytest", [sys.executable, "-m", "pytest", *pytest_args]),
    ]
    results: list[tuple[str, int]] = []
    try:
        with stop_signals_raise():
            stack.start_servers()
            stack.prepare_database()
            _say(
                "test stack: "
                f"{stack.database_url}  {stack.nats_url}  {stack.redis_url}  ({config.state_dir})"
            )
            for name, argv in steps:
                _say(f"$ {' '.join(argv)}")
                results.append((name, _run_foreground(stack, name, argv)))
    except StopRequested as stop:
        _say(f"{stop} received; stopping")
        return 130
    except ChildDied as died:
        _say(str(died))
        return 1
    finally:
        stack.teardown()
    for name, rc in results:
        _say(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'}")
    return next((rc for _, rc in results if rc != 0), 0)


def cmd_bench(bench_args: list[str]) -> int:
    if not (Path("bench") / "__main__.py").exists():
        _say("bench/__main__.py does not exist yet: nothing to run")
        return 2
    # No services here: the bench starts the processes each scenario measures, so the
    # intake scenario runs intake alone against the baseline (see docs/benchmarks.md).
    config = StackConfig.from_env("bench")
    stack = Stack(config)
    try:
        with stop_signals_raise():
            stack.start_servers()
            stack.prepare_database()
            return _run_foreground(stack, "bench", [sys.executable, "-m", "bench", *bench_args])
    except StopRequested as stop:
        _say(f"{stop} received; stopping")
        return 130
    except ChildDied as died:
        _say(str(died))
        return 1
    finally:
        stack.teardown()


def cmd_migrate() -> int:
    """Against PROPDESK_DATABASE_URL, else the database a running `make run` serves."""
    config = StackConfig.from_env("migrate")
    stack = Stack(config)
    stack.database_url = config.external_database_url or (
        f"postgresql://postgres@127.0.0.1:{config.pg_port or DEFAULT_PG_PORT}/{DATABASE_NAME}"
    )
    stack.nats_url = config.external_nats_url or f"nats://127.0.0.1:{config.nats_port}"
    stack.redis_url = config.external_redis_url or f"redis://127.0.0.1:{config.redis_port}/0"
    migrated = stack.prepare_database()
    _say(f"migrated {stack.database_url}: {', '.join(migrated) or '(nothing)'}")
    return 0


def _passthrough(args: list[str]) -> list[str]:
    return args[1:] if args[:1] == ["--"] else args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="propdesk-devstack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run servers and services until Ctrl-C")
    test = sub.add_parser("test", help="lint and test against a throwaway stack")
    test.add_argument("args", nargs=argparse.REMAINDER, help="pytest arguments after --")
    bench = sub.add_parser("bench", help="run `python -m bench` against throwaway servers")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="bench arguments after --")
    sub.add_parser("migrate", help="create the database and upgrade every schema")
    sub.add_parser("lock", help="print constraints.txt")
    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run()
    if args.command == "test":
        return cmd_test(_passthrough(args.args))
    if args.command == "bench":
        return cmd_bench(_passthrough(args.args))
    if args.command == "migrate":
        return cmd_migrate()
    from propdesk.devstack.lock import main as lock_main

    return lock_main()
