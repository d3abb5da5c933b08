"""Version-7 UUIDs: the RFC 9562 layout, and ids made later sort later."""

from __future__ import annotations

import time
from uuid import UUID

import pytest

from propdesk.uuid7 import unix_ms_of, uuid7, uuid7_at


def test_layout_matches_rfc_9562_example() -> None:
    # RFC 9562, appendix A.6: 2022-02-22 19:22:22 UTC = 0x017F22E279B0 ms,
    # rand_a 0xCC3, rand_b 0x18C4DC0C0C07398F.
    rand = (0xCC3 << 62) | 0x18C4DC0C0C07398F
    assert uuid7_at(0x017F22E279B0, rand) == UUID("017F22E2-79B0-7CC3-98C4-DC0C0C07398F")


def test_version_variant_and_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == "specified in RFC 4122"
    assert before <= unix_ms_of(value) <= after


def test_later_ids_sort_later() -> None:
    first = uuid7_at(1_000, (1 << 74) - 1)  # the largest id of its millisecond
    second = uuid7_at(1_001, 0)  # the smallest of the next
    assert first < second
    assert str(first) < str(second)  # as text too, as PostgreSQL compares uuid bytes


def test_ids_are_distinct() -> None:
    ids = {uuid7() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_random_bits_are_all_used() -> None:
    seen = 0
    for _ in range(200):
        seen |= uuid7().int & ((1 << 80) - 1)
    # Every bit of rand_a and rand_b was set at least once; version and variant are fixed.
    assert seen == (0x7 << 76) | (0xFFF << 64) | (0b10 << 62) | ((1 << 62) - 1)


def test_out_of_range_time_is_refused() -> None:
    with pytest.raises(ValueError):
        uuid7_at(1 << 48, 0)
    with pytest.raises(ValueError):
        unix_ms_of(UUID("00000000-0000-4000-8000-000000000000"))
