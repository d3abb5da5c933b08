"""`Invalidations.connect` promises that once it returns, the process hears every later
announcement, on the real NATS."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from propdesk.bus.streams import connect
from propdesk.db.invalidations import Invalidations
from propdesk.settings import Settings


async def test_an_announcement_right_after_connect_is_heard(settings: Settings) -> None:
    """nats-py's flush can return before the server has the subscription (its PING goes
    out ahead of the pending SUB): with one flush, some connects in sixty missed an
    announcement made the moment they returned. And the message each connect sends itself
    to be sure is no invalidation to anyone else."""
    name = f"test-{uuid4().hex[:8]}"
    speaker_nc = await connect(settings, "invalidations-speaker")
    speaker_heard: list[str] = []
    speaker = Invalidations(name, speaker_heard.append)
    await speaker.connect(speaker_nc)
    missed = 0
    try:
        for i in range(60):
            heard: list[str] = []
            listener_nc = await connect(settings, f"invalidations-listener-{i}")
            try:
                await Invalidations(name, heard.append).connect(listener_nc)
                speaker.announce(f"target-{i}")
                await speaker.settle()
                for _ in range(50):
                    if heard:
                        break
                    await asyncio.sleep(0.01)
                missed += f"target-{i}" not in heard
            finally:
                await listener_nc.close()
    finally:
        await speaker_nc.close()
    assert missed == 0, f"{missed} of 60 fresh subscriptions missed the next announcement"
    assert speaker_heard == [], "the listeners' connects were taken for invalidations"
