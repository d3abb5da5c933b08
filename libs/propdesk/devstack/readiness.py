"""Running a readiness probe's coroutine from synchronous code, inside an event loop or not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a short-lived thread, so callers already inside a loop (async tests)
    can use the same blocking start()/stop() as the command line."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="devstack-probe", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
