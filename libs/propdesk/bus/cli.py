"""`python -m propdesk.bus.cli`: operate the outbox of a service schema.

relay SCHEMA                      run a standalone relay (what `propdesk-service` runs inside)
prune SCHEMA                      delete published rows older than the retention period
republish SCHEMA --since --until  re-queue published events of a time range (ISO-8601)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import datetime

from propdesk.bus.relay import Relay, prune_published, republish
from propdesk.bus.streams import connect, ensure_stream
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


def _instant(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} needs a time zone, e.g. 2026-11-26T08:00+08:00"
        )
    return dt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m propdesk.bus.cli")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("relay").add_argument("schema")
    sub.add_parser("prune").add_argument("schema")
    rp = sub.add_parser("republish")
    rp.add_argument("schema")
    rp.add_argument("--since", type=_instant, required=True)
    rp.add_argument("--until", type=_instant, required=True)
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.cmd == "relay":
        asyncio.run(run_relay(args.schema, settings))
    elif args.cmd == "prune":
        n = asyncio.run(prune_published(settings, args.schema))
        print(f"pruned {n} published outbox rows from {args.schema}")
    else:
        n = asyncio.run(republish(settings, args.schema, args.since, args.until))
        print(f"re-queued {n} events of {args.schema} for publishing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
