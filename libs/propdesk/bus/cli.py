"""`python -m propdesk.bus.cli`: operate the outbox of a service schema.

relay SCHEMA                      run a standalone relay (what `propdesk-service` runs inside)
prune SCHEMA                      delete published outbox rows and inbox rows past their
                                  retention periods (what every service does hourly)
republish SCHEMA --since --until  re-queue published events of a time range (ISO-8601)
provision                         create or update the stream and every service's durables
                                  (as the NATS user operator, before the services start)
dead-letters list SCHEMA          the schema's open dead letters (--all: replayed ones too)
dead-letters replay SCHEMA        publish open dead letters again once their cause is fixed
                                  (--id N ... and/or --consumer NAME narrow it; --all-open)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from datetime import datetime

import asyncpg
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS

from propdesk.bus.dead_letters import (
    list_dead_letters,
    replay_age_limit_days,
    replay_dead_letters,
)
from propdesk.bus.relay import Relay, republish
from propdesk.bus.retention import prune_inbox, prune_published
from propdesk.bus.streams import connect, ensure_stream, provision
from propdesk.settings import Settings, get_settings


async def run_relay(schema: str, settings: Settings) -> None:
    from propdesk.service.logging import configure_logging
    from propdesk.telemetry import setup_telemetry

    configure_logging(f"{schema}-relay", settings)
    setup_telemetry(f"{schema}-relay", settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    nc = await connect(settings, name=f"propdesk-{schema}-relay")
    try:
        await ensure_stream(nc.jetstream(), settings)
        await Relay(schema, settings, nc).run(stop)
    finally:
        await nc.drain()


# JetStream answers a cluster still electing its leaders (or placing replicas) with these:
# worth waiting out at a deployment's start, unlike a refusal.
_SETTLING = (nats.errors.TimeoutError, nats.errors.NoServersError, nats.js.errors.ServerError)
_SETTLING_CODES = {10005, 10008}  # no suitable peers for placement; cluster not ready


def _settling(exc: BaseException) -> bool:
    if _refused():
        return False  # a permissions violation does not pass with time
    if isinstance(exc, nats.js.errors.APIError) and exc.err_code in _SETTLING_CODES:
        return True
    return isinstance(exc, _SETTLING)


async def run_provision(settings: Settings, wait: float) -> int:
    """Provision the bus; while the cluster is still settling (just started: no leaders,
    no peers yet), try again every 2 s for up to `wait` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            durables = await _provision_once(settings)
            break
        except nats.errors.Error as exc:
            if not _settling(exc) or loop.time() >= deadline:
                raise
            print(f"waiting for JetStream ({str(exc) or repr(exc)})", file=sys.stderr)
            await asyncio.sleep(2)
    print(f"stream {settings.stream_name} and {len(durables)} durables: {', '.join(durables)}")
    return 0


async def _provision_once(settings: Settings) -> list[str]:
    nc = await _one_off_connection(settings, "propdesk-bus-provision")
    try:
        return await provision(nc.jetstream(), settings)
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


def _schema(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a service schema, e.g. intake")
    return value


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return n


def _instant(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} needs a time zone, e.g. 2026-11-26T08:00+08:00"
        )
    return dt


async def show_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    rows = await list_dead_letters(
        settings,
        args.schema,
        consumer=args.consumer,
        include_replayed=args.all,
        limit=args.limit,
    )
    if args.json:
        print(orjson.dumps([r.as_dict() for r in rows]).decode())
        return 0
    for r in rows:
        state = f"replayed {r.replayed_at.isoformat()}" if r.replayed_at else "open"
        print(
            f"{r.id}\t{r.created_at.isoformat()}\t{r.consumer}\t{r.subject}"
            f"\tevent {r.event_id or '-'}\ttenant {r.tenant_id or '-'}"
            f"\t{r.deliveries} deliveries\t{state}\t{r.error[:200]}"
        )
    if not rows:
        print(f"no {'' if args.all else 'open '}dead letters in {args.schema}")
    return 0


# What the server said on the one-off connections of this command (reported once, by
# `main`): a permissions violation is told apart from a NATS that is slow or away.
_NATS_ERRORS: list[str] = []


async def _collect(exc: Exception) -> None:
    _NATS_ERRORS.append(str(exc))


def _refused() -> bool:
    return any("permissions violation" in e.lower() for e in _NATS_ERRORS)


async def _one_off_connection(settings: Settings, name: str) -> NATS:
    """A connection for one command: it fails fast (two tries per server) when NATS is not
    there, rather than wait for it, and what the server says is collected for `main`."""
    return await connect(
        settings, name=name, allow_reconnect=False, max_reconnect_attempts=1, error_cb=_collect
    )


async def replay(settings: Settings, args: argparse.Namespace) -> int:
    if not (args.id or args.consumer or args.all_open):
        print("say what to replay: --id N ..., --consumer NAME, or --all-open", file=sys.stderr)
        return 2
    nc = await _one_off_connection(settings, f"propdesk-{args.schema}-dead-letter-replay")
    try:
        report = await replay_dead_letters(
            settings,
            nc.jetstream(),
            args.schema,
            ids=args.id,
            consumer=args.consumer,
            allow_old=args.allow_old,
        )
    finally:
        await nc.drain()
    done = report.replayed
    if report.too_old:
        print(
            f"left open, their events older than {replay_age_limit_days(settings):g} days"
            " (the inbox retention less the stream's max age and a day): other consumers"
            " may no longer remember them and would apply them twice; --allow-old replays"
            f" them anyway: {', '.join(map(str, report.too_old))}",
            file=sys.stderr,
        )
    if report.not_open:
        print(
            "not open (no such dead letter, replayed already, or being replayed by someone"
            f" else): {', '.join(map(str, report.not_open))}",
            file=sys.stderr,
        )
    status = 1 if report.too_old or report.not_open else 0
    if args.json:
        print(
            orjson.dumps(
                [
                    {
                        "message_id": r.message_id,
                        "subject": r.subject,
                        "event_id": str(r.event_id) if r.event_id else None,
                        "dead_letter_ids": list(r.dead_letter_ids),
                        "duplicate": r.duplicate,
                    }
                    for r in done
                ]
            ).decode()
        )
        return status
    for r in done:
        again = " (the stream had it already)" if r.duplicate else ""
        ids = ", ".join(map(str, r.dead_letter_ids))
        print(f"replayed dead letter {ids} as {r.message_id} on {r.subject}{again}")
    n = sum(len(r.dead_letter_ids) for r in done)
    print(f"replayed {n} dead letters of {args.schema} in {len(done)} messages")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m propdesk.bus.cli")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("relay").add_argument("schema", type=_schema)
    sub.add_parser("prune").add_argument("schema", type=_schema)
    pv = sub.add_parser("provision")
    pv.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to keep trying while a cluster just started settles (default 120)",
    )
    rp = sub.add_parser("republish")
    rp.add_argument("schema", type=_schema)
    rp.add_argument("--since", type=_instant, required=True)
    rp.add_argument("--until", type=_instant, required=True)
    dl = sub.add_parser("dead-letters").add_subparsers(dest="action", required=True)
    ls = dl.add_parser("list")
    ls.add_argument("schema", type=_schema)
    ls.add_argument("--consumer", help="only this durable consumer's")
    ls.add_argument("--all", action="store_true", help="replayed ones too")
    ls.add_argument("--limit", type=_positive, default=100)
    ls.add_argument("--json", action="store_true")
    rd = dl.add_parser("replay")
    rd.add_argument("schema", type=_schema)
    rd.add_argument("--id", type=int, nargs="+", help="these dead letters (open ones)")
    rd.add_argument("--consumer", help="the open dead letters of this durable consumer")
    rd.add_argument("--all-open", action="store_true", help="every open dead letter")
    rd.add_argument(
        "--allow-old",
        action="store_true",
        help="replay dead letters of events too old to be safe from a second application",
    )
    rd.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        return _run(args, settings)
    except asyncpg.UndefinedTableError as exc:
        print(f"{parser.prog}: {args.schema!r} has no bus tables here: {exc}", file=sys.stderr)
    except nats.errors.Error as exc:  # before OSError: some of them are OSErrors
        where = re.sub(r"//[^/@,]*@", "//", settings.nats_url)  # no passwords on screen
        hint = ""
        if _refused():
            # A publish NATS does not permit gets no answer, only a violation on the side.
            hint = (
                " (a replay publishes any event type, provisioning changes the stream: run"
                " it as the NATS user `operator`, deploy/nats/auth.conf; a service's user"
                " may not)"
            )
        print(f"{parser.prog}: NATS at {where}: {str(exc) or repr(exc)}{hint}", file=sys.stderr)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{parser.prog}: the database refused or cannot be reached: {exc}", file=sys.stderr)
    return 3


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.cmd == "provision":
        return asyncio.run(run_provision(settings, args.wait))
    if args.cmd == "dead-letters":
        run = show_dead_letters if args.action == "list" else replay
        return asyncio.run(run(settings, args))
    if args.cmd == "relay":
        asyncio.run(run_relay(args.schema, settings))
    elif args.cmd == "prune":
        n = asyncio.run(prune_published(settings, args.schema))
        print(f"pruned {n} published outbox rows from {args.schema}")
        n = asyncio.run(prune_inbox(settings, args.schema))
        print(f"pruned {n} inbox rows from {args.schema}")
    else:
        n = asyncio.run(republish(settings, args.schema, args.since, args.until))
        print(f"re-queued {n} events of {args.schema} for publishing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
