"""The event loop every process of the pipeline runs on: uvloop where it is installed, asyncio's own
elsewhere (uvloop does not exist on Windows).

uvloop does the same work as asyncio's selector loop with a fraction of the CPU, which matters most where
one process holds a thousand WebSockets (the publisher) or a hundred audio streams (ingest, workers).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def freeze_startup_objects() -> None:
    """Exempt everything allocated so far (modules, the application, settings) from garbage collection.

    A service keeps these objects for life. Without this every full collection walks them again; with a
    thousand displays connected that is a pause of tens of milliseconds in which no caption moves.
    """
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Like :func:`asyncio.run`, on the loop of :func:`loop_factory`."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
