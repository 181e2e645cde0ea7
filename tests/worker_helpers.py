"""What the tests of ASR workers on a real Redis share across tiers: a session created and its audio streamed
the way ingest writes them, and its captions read back."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np
from redis.asyncio import Redis

from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.schemas import CaptionEvent, SessionRecord, TrackSpec
from tests.waiting import async_wait_until

CHUNK_S = 0.25
"""The length of each audio entry :func:`stream_audio` appends."""


class Stoppable(Protocol):
    def stop(self) -> None: ...


async def stop_worker(worker: Stoppable, task: asyncio.Task[None], timeout_s: float = 30.0) -> None:
    """Ask ``worker`` to stop and wait for its task; if it does not end in time, fail with the stack of every
    task still alive (where the stop is stuck), instead of hanging until the suite's timeout."""
    worker.stop()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if done:
        task.result()
        return
    where = io.StringIO()
    for alive in asyncio.all_tasks():
        alive.print_stack(file=where)
    raise AssertionError(
        f"the worker did not stop within {timeout_s} s; the tasks alive:\n{where.getvalue()}"
    )


async def create_session(
    redis: Redis, sid: str, language: str = "ja", tracks: list[TrackSpec] | None = None
) -> None:
    """What ingest writes when a session is created (by default Japanese with an English translation)."""
    record = SessionRecord(
        id=sid,
        language=language,
        tracks=tracks or [TrackSpec(name="ja"), TrackSpec(name="en", task="translate")],
        created_at=time.time(),
    )
    await redis.hset(
        keys.session(sid), mapping={"record": record.model_dump_json(), "status": "open", "samples": 0}
    )
    await redis.zadd(keys.sessions_active(), {sid: record.created_at})


async def stream_audio(redis: Redis, sid: str, seconds: float, pace_s: float = 0.0) -> None:
    """Audio entries then the end marker, the way ingest appends them (silence: the engine is scripted)."""
    chunk = float_to_pcm16(np.zeros(int(CHUNK_S * SAMPLE_RATE), dtype=np.float32))
    step = int(CHUNK_S * SAMPLE_RATE)
    sample0 = 0
    while sample0 < seconds * SAMPLE_RATE:
        fields = {"kind": "audio", "sample0": sample0, "pcm": chunk, "at": repr(time.time())}
        await redis.xadd(keys.audio(sid), fields)  # type: ignore[arg-type]
        await redis.hincrby(keys.session(sid), "samples", step)
        sample0 += step
        if pace_s:
            await asyncio.sleep(pace_s)
    await redis.xadd(keys.audio(sid), {"kind": "end", "sample0": sample0, "at": repr(time.time())})


async def captions(redis: Redis, sid: str) -> list[CaptionEvent]:
    rows: Any = await redis.xrange(keys.captions(sid))
    return [CaptionEvent.model_validate_json(fields[b"event"]) for _, fields in rows]


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> None:
    await async_wait_until(check, timeout_s, "the workers to get there")


async def ended(redis: Redis, sid: str) -> bool:
    return await redis.hget(keys.session(sid), "status") == b"ended"


async def finals_at_least(redis: Redis, sid: str, count: int) -> bool:
    return sum(e.type == "final" for e in await captions(redis, sid)) >= count


async def epoch(redis: Redis, sid: str) -> int:
    """The session's fencing token (raised on every takeover of its lease)."""
    value: Any = await redis.get(keys.epoch(sid))
    return int(value)
