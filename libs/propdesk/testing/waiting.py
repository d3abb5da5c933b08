"""Test support: wait for an asynchronous outcome (an event consumed, a row written)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], what: str, within: float = 15.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {within}s (last: {value!r})")
        await asyncio.sleep(0.05)
