"""Time-ordered UUIDs (RFC 9562, version 7) for the ids the platform makes by the thousand.

A version-4 id is random, so every row keyed by one lands on a random page of its B-tree
index: each insert dirties a page no other recent insert touched, and after every
checkpoint the first change to each such page writes the whole 8 kB page to the WAL. A
version-7 id starts with the Unix time in milliseconds, so ids made close together sort
together and their index entries go to the same few right-hand pages, as a sequence's do,
while staying unguessable (74 random bits) and unique without a round trip.

Python gains `uuid.uuid7` in 3.14; this is the same layout for 3.11+. Within one
millisecond the ids of a process are in random order (the RFC's "method 1" without the
counter): index locality needs the time prefix, not a strict order, and nothing here reads
order from ids (`received_at`, `occurred_at` and the outbox's sequence do that).
"""

from __future__ import annotations

import os
import time
from uuid import UUID

_RANDOM_BITS = (1 << 74) - 1  # rand_a (12 bits) and rand_b (62 bits)


def uuid7_at(unix_ms: int, random: int) -> UUID:
    """The version-7 UUID of `unix_ms` (48 bits) and 74 random bits."""
    if not 0 <= unix_ms < 1 << 48:
        raise ValueError(f"unix_ms out of range: {unix_ms}")
    rand = random & _RANDOM_BITS
    value = (
        unix_ms << 80  # unix_ts_ms
        | 0x7 << 76  # ver
        | (rand >> 62) << 64  # rand_a
        | 0b10 << 62  # var
        | (rand & ((1 << 62) - 1))  # rand_b
    )
    return UUID(int=value)


def uuid7() -> UUID:
    """A new version-7 UUID: now, in milliseconds, then 74 random bits."""
    return uuid7_at(time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10), "big"))


def unix_ms_of(value: UUID) -> int:
    """The millisecond timestamp a version-7 UUID carries."""
    if value.version != 7:
        raise ValueError(f"not a version-7 UUID: {value}")
    return value.int >> 80
