"""Named crash points for the fault-injection tests.

`PROPDESK_FAULT=relay.after_publish` makes the relay SIGKILL itself after JetStream
acknowledged a batch and before the outbox rows are marked published: the exact window
where a careless design would lose or double an event. Unset in every real deployment;
checking it costs one dict lookup per batch.

The points (each tested by killing a real process there, `tests/faults`):
- `relay.after_publish`: JetStream has the batch, the outbox rows are not marked;
- `consumer.before_ack`: a consumer's transaction (one event, or one of a batch's
  transactions) committed, nothing of it acked;
- `consumer.before_dead_letter` / `consumer.after_dead_letter`: before the dead letter's
  transaction, and after its commit but before the terminate;
- `intake.after_commit`: a complaint's recording committed, the replay cache not written
  and no answer sent.

And one pause point, `PROPDESK_PAUSE=intake.recording:<seconds>`: a complaint's request
waits that long before it records (the graceful-shutdown test keeps it in flight while
the process is told to stop).
"""

from __future__ import annotations

import asyncio
import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("PROPDESK_FAULT") == name:
        marker = os.environ.get("PROPDESK_FAULT_MARKER")
        if marker:
            # Crash once: the restarted process (same environment) must run normally.
            if os.path.exists(marker):
                return
            with open(marker, "w") as f:
                f.write(name)
        os.kill(os.getpid(), signal.SIGKILL)


async def pause_point(name: str) -> None:
    spec = os.environ.get("PROPDESK_PAUSE")
    if spec:
        point, _, seconds = spec.partition(":")
        if point == name:
            await asyncio.sleep(float(seconds or 1))
