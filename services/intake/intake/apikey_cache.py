"""Verified API keys, per process: the identity a key's hash resolved to, for `TTL_SECONDS`,
so a call center's requests skip the key lookup.

A revocation drops every process's entries at once: the process that committed it (the
API, `propdesk apikey revoke`) empties its own and tells the others on core NATS
(`propdesk.db.invalidations`, subject `propdesk.cache.intake-apikeys`). So a revoked key
stops working on every replica as soon as NATS delivers the message, and within the TTL
if it is lost (NATS down). Revocations are rare: dropping every key, not the one, keeps it
simple and free of races (a lookup that began before the revocation is not stored after
it)."""

from __future__ import annotations

import time
from collections.abc import Callable

from nats.aio.client import Client as NATS

from intake.store.apikeys import KeyIdentity
from propdesk.db.invalidations import Invalidations

# The bound when an announcement is lost; otherwise one lookup per key in use per TTL.
TTL_SECONDS = 30.0
_MAX_ENTRIES = 10_000
_ALL = "*"


class ApiKeyCache:
    def __init__(
        self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[bytes, tuple[float, KeyIdentity]] = {}
        # Bumped by each revocation: a lookup that began before it is not stored.
        self.epoch = 0
        self._peers = Invalidations("intake-apikeys", self._heard)

    async def connect(self, nc: NATS) -> None:
        await self._peers.connect(nc)

    async def settle(self) -> None:
        await self._peers.settle()

    def get(self, digest: bytes) -> KeyIdentity | None:
        hit = self._entries.get(digest)
        if hit is None or hit[0] <= self.clock():
            return None
        return hit[1]

    def put(self, digest: bytes, identity: KeyIdentity, epoch: int) -> None:
        """Keep `identity`, unless a key was revoked since `epoch` (read before the lookup)."""
        if epoch != self.epoch:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[digest] = (self.clock() + self.ttl, identity)

    def revoked(self) -> None:
        """After this process committed a revocation: here and in every other process."""
        self._drop()
        self._peers.announce(_ALL)

    def _heard(self, _target: str) -> None:
        self._drop()

    def _drop(self) -> None:
        self.epoch += 1
        self._entries.clear()


CACHE = ApiKeyCache()
