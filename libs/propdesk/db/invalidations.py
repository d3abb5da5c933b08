"""What one process dropped from a cache, told to the caches of the same name in every
other process (the other replicas; a service when the CLI changed something).

On core NATS, subject `propdesk.cache.<name>`: outside the event stream's `pd.>`, never
stored. A message is `<origin>:<target>`; a process skips its own, and every process
ignores the marker a process sends itself on connect. Fire and forget: a
message lost (NATS down) leaves the other processes' entries until they expire, so a
cache that relies on this keeps a TTL it can live with as the bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from uuid import uuid4

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

log = logging.getLogger("propdesk.db.invalidations")
SUBJECT_PREFIX = "propdesk.cache."
# A process's message to itself on connect (`Invalidations.connect`): no target, ignored by
# the others. (A process of the release before it reads one as an invalidation of the
# target "": a cache of tenants logs it as ignored, the API-key cache drops its entries.)
_MARKER = "subscribed!"
ECHO_TIMEOUT = 5.0


class Invalidations:
    def __init__(self, name: str, heard: Callable[[str], None]) -> None:
        self.name = name  # the subject token: letters, digits, dashes
        self._heard = heard  # applies another process's target to this process's cache
        self._nc: NATS | None = None
        self._origin = uuid4().hex
        self._echoed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def subject(self) -> str:
        return SUBJECT_PREFIX + self.name

    async def connect(self, nc: NATS) -> None:
        """Announce this process's invalidations, and hear the others'."""
        self._nc = nc
        self._echoed = asyncio.Event()  # of this connect's event loop (a CLI runs several)
        await nc.subscribe(self.subject, cb=self._on_message)
        # Until the server has the subscription, announcements made elsewhere pass this
        # process by: once connect returns, it hears every later one. A flush does not
        # say so: nats-py (2.16) writes its PING to the socket at once, ahead of the SUB
        # still in its pending buffer, so the PONG could come back before the server had
        # the subscription (about one time in twenty, measured). A message of its own on
        # the subject goes out after the SUB, so its echo proves the subscription.
        await nc.publish(self.subject, f"{_MARKER}{self._origin}".encode())
        try:
            await asyncio.wait_for(self._echoed.wait(), ECHO_TIMEOUT)
        except TimeoutError:
            log.warning(
                "%s: no echo from NATS within %ss: announcements of other processes may"
                " pass this one by until it arrives",
                self.name,
                ECHO_TIMEOUT,
            )

    async def _on_message(self, msg: Msg) -> None:
        data = msg.data.decode()
        if data.startswith(_MARKER):  # a process making sure it is subscribed
            if data == f"{_MARKER}{self._origin}":
                self._echoed.set()
            return
        origin, _, target = data.partition(":")
        if origin != self._origin:
            self._heard(target)

    def announce(self, target: str) -> None:
        """Tell the other processes (in the background; nothing when not connected)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        data = f"{self._origin}:{target}".encode()
        task = asyncio.get_running_loop().create_task(nc.publish(self.subject, data))
        self._tasks.add(task)
        task.add_done_callback(self._announced)

    def _announced(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The other processes' entries stay until they expire.
            log.warning("%s: invalidation not announced: %r", self.name, exc)

    async def settle(self) -> None:
        """Wait for the announcements under way (before closing NATS)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
