"""Jittered exponential backoff for retrying Redis connection failures (and nothing else)."""

from __future__ import annotations

import asyncio
import random

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)
"""Failures worth retrying: the server is unreachable, restarting, or too slow to answer."""


def backoff_s(attempt: int, base_s: float = 0.2, cap_s: float = 5.0) -> float:
    """Pause before retry number ``attempt`` (1, 2, ...): doubling from ``base_s`` up to ``cap_s``, ±50 %.

    The jitter keeps many clients that lost the same server from coming back at the same instant.
    """
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + random.random())


def reraise_if_cancelling() -> None:
    """Call first in an ``except`` of failures a loop retries: raise ``CancelledError`` again when the task
    running it is being cancelled.

    Cancelling a task that waits on Redis can surface as a connection error (the client closes the
    connection under the cancelled call); a loop that retries connection errors would carry on after it
    was told to stop, and a worker cancelled at shutdown would keep claiming sessions.
    """
    if cancelling():
        raise asyncio.CancelledError


def cancelling() -> bool:
    """Whether the task running this is being cancelled (whatever a call inside it made of that)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
