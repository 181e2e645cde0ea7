"""Waiting for something a test can observe, instead of sleeping and hoping it happened.

``wait_until(lambda: db.exists(key), 10, "the session to be stored")`` polls the condition until it holds
(and returns its truthy value) or fails with an AssertionError naming what was awaited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL_S = 0.02
"""How often a condition is looked at: short against any timeout here, long against a Redis round trip."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = INTERVAL_S) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}; last seen {value!r}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Awaitable[T]], timeout: float, what: str, interval: float = INTERVAL_S
) -> T:
    """:func:`wait_until` for the event loop: ``predicate`` is a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}; last seen {value!r}")
        await asyncio.sleep(interval)
