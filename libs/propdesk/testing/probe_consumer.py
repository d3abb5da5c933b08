"""`python -m propdesk.testing.probe_consumer NAME TENANT [PER_TRANSACTION LANES LINGER]
[--failing]`: a consumer process for the fault tests. Applies `bustest` events of one tenant
into bus_test.applied, one per transaction unless told to share transactions (and lanes, and
a linger, as `Consumer` takes them); with `--failing` its handler fails every event (which
ends in dead_letters). Prints its counters when stopped with SIGTERM. Honours
PROPDESK_FAULT like any propdesk process."""

from __future__ import annotations

import asyncio
import signal
import sys

from propdesk.bus.consumer import Consumer, ConsumerRunner
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory
from propdesk.settings import get_settings
from propdesk.testing.bus_schema import SCHEMA, applied_recorder


async def _failing(session, env) -> None:
    raise ValueError("the probe's handler fails every event")


async def main(
    name: str,
    tenant: str,
    per_transaction: int = 1,
    lanes: int = 1,
    linger: float = 0.0,
    *,
    failing: bool = False,
) -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    engine = create_engine(settings)
    nc = await connect(settings, name=f"probe-{name}")
    await ensure_stream(nc.jetstream(), settings)
    runner = ConsumerRunner(
        Consumer(
            name=name,
            schema=SCHEMA,
            subjects=[f"pd.bustest.*.{tenant}.>"],
            handler=_failing if failing else applied_recorder(name),
            per_transaction=per_transaction,
            lanes=lanes,
            linger_seconds=linger,
        ),
        settings,
        session_factory(engine),
        nc,
    )
    print("ready", flush=True)
    try:
        await runner.run(stop)
    finally:
        print(
            f"handled={runner.handled} duplicates={runner.duplicates}"
            f" dead_lettered={runner.dead_lettered}",
            flush=True,
        )
        await nc.close()
        await engine.dispose()


if __name__ == "__main__":
    args = sys.argv[1:]
    failing = "--failing" in args
    name, tenant, *batching = [a for a in args if a != "--failing"]
    if batching:
        asyncio.run(
            main(
                name,
                tenant,
                int(batching[0]),
                int(batching[1]),
                float(batching[2]),
                failing=failing,
            )
        )
    else:
        asyncio.run(main(name, tenant, failing=failing))
