"""The client side of the pipeline load benchmark: audio senders and caption displays, each in a process.

:func:`sender_process` streams silence through the ingest WebSocket of every session at real-time pace (the
scripted engine hears its words in it) and records when each frame left; :func:`display_process` holds many
caption displays open on the publisher and records, for every final, when it arrived. They run as child
processes of their own so the clients' CPU is measured apart from the services' and a busy client does not
pass for a slow pipeline. Each writes one JSON file; :mod:`wsp.bench.load` reads them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from common import eventloop
from common.audio import SAMPLE_RATE
from common.contract import captions, keys
from common.schemas import (
    AUDIO_REPLY,
    CAPTIONS_MESSAGE,
    AudioEnd,
    AudioEnded,
    AudioReady,
    AudioStart,
    ErrorMessage,
)

log = logging.getLogger(__name__)

CONNECTS_AT_ONCE = 32
"""WebSocket handshakes a client process has in flight at once (a venue's displays do not all start
in the same millisecond either)."""
OPEN_TIMEOUT_S = 30.0
"""How long one WebSocket handshake may take."""
ENDED_TIMEOUT_S = 30.0
"""How long ingest may take to confirm the end of a stream."""
PROBE_POLL_S = 0.2
"""How often the live-channel probe checks whether it should stop."""


# -- audio ---------------------------------------------------------------------------------------
async def _until_ended(ws: ClientConnection) -> int:
    """Read ingest's acks until it confirms the end; the session's total samples."""
    while True:
        message = AUDIO_REPLY.validate_json(await ws.recv())
        if isinstance(message, ErrorMessage):
            raise RuntimeError(f"ingest refused the audio: {message.message} ({message.code})")
        if isinstance(message, AudioEnded):
            return message.samples


async def send_one(url: str, samples: int, frame_samples: int, origin: float) -> dict[str, Any]:
    """Stream ``samples`` of silence from loop time ``origin`` on at real-time pace, then end.

    Frame ``k`` holds samples ``[k * frame_samples, (k + 1) * frame_samples)`` and leaves once that much
    audio "has been recorded"; ``sent[k]`` is the unix time it left.
    """
    loop = asyncio.get_running_loop()
    frame = bytes(frame_samples * 2)
    sent: list[float] = []
    async with connect(url, max_size=1 << 20, open_timeout=OPEN_TIMEOUT_S) as ws:
        await ws.send(AudioStart(type="start").model_dump_json())
        ready = AUDIO_REPLY.validate_json(await ws.recv())
        if not isinstance(ready, AudioReady):
            raise RuntimeError(f"ingest refused the audio: {ready}")
        reader = asyncio.create_task(_until_ended(ws))
        try:
            pos = 0
            while pos < samples and not reader.done():
                size = min(frame_samples, samples - pos)
                await asyncio.sleep(max(0.0, origin + (pos + size) / SAMPLE_RATE - loop.time()))
                await ws.send(frame[: size * 2])
                sent.append(time.time())
                pos += size
            await ws.send(AudioEnd(type="end").model_dump_json())
            total = await asyncio.wait_for(reader, ENDED_TIMEOUT_S)
        finally:
            reader.cancel()
    return {"frame_samples": frame_samples, "sent": sent, "samples": total}


async def send_all(urls: list[str], seconds: float, frame_s: float) -> list[dict[str, Any]]:
    """Every session's audio at once, their starts spread evenly over one frame (independent venues)."""
    frame_samples = round(frame_s * SAMPLE_RATE)
    samples = round(seconds * SAMPLE_RATE)
    start = asyncio.get_running_loop().time() + 0.5
    spread = frame_s / max(1, len(urls))
    tasks = [send_one(url, samples, frame_samples, start + i * spread) for i, url in enumerate(urls)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    out = []
    for url, result in zip(urls, results, strict=True):
        if isinstance(result, BaseException):
            log.error("audio of %s failed: %s", url.split("?")[0], result)
            out.append({"frame_samples": frame_samples, "sent": [], "samples": 0, "error": repr(result)})
        else:
            out.append(result)
    return out


# -- displays ------------------------------------------------------------------------------------
def new_display_log() -> dict[str, Any]:
    """What a display records: finals as [track, seq, emitted_at, end, received, text], how it closed."""
    return {"finals": [], "partials": 0, "others": 0, "close_code": None, "error": ""}


async def watch_one(
    url: str, gate: asyncio.Semaphore, settled: Callable[[], None], record: dict[str, Any]
) -> None:
    """One display until the publisher closes it, filling ``record`` (see :func:`new_display_log`).

    ``settled`` is called once the display is connected, or has failed to.
    """
    finals: list[tuple[Any, ...]] = record["finals"]
    try:
        try:
            async with gate:
                ws = await connect(url, open_timeout=OPEN_TIMEOUT_S, max_queue=None)
        finally:
            settled()
        async with ws:
            async for raw in ws:
                received = time.time()
                event = CAPTIONS_MESSAGE.validate_json(raw)
                kind = event.type
                if isinstance(event, ErrorMessage):
                    record["others"] += 1
                elif kind == "final":
                    finals.append((event.track, event.seq, event.emitted_at, event.end, received, event.text))
                elif kind == "partial":
                    record["partials"] += 1
                else:
                    record["others"] += 1
        record["close_code"] = ws.close_code
    except ConnectionClosed as exc:
        record["close_code"] = exc.rcvd.code if exc.rcvd is not None else None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        record["error"] = repr(exc)


async def watch_all(urls: list[str], ready: Callable[[], None], deadline_s: float) -> list[dict[str, Any]]:
    """Open every display, call ``ready`` once all are connected, collect until each closes or the deadline.

    A display still open at ``deadline_s`` is closed and marked so.
    """
    if not urls:
        ready()
        return []
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    count = 0
    all_settled = asyncio.Event()

    def one_settled() -> None:
        nonlocal count
        count += 1
        if count == len(urls):
            all_settled.set()

    records = [new_display_log() for _ in urls]
    tasks = [
        asyncio.create_task(watch_one(url, gate, one_settled, record))
        for url, record in zip(urls, records, strict=True)
    ]
    await all_settled.wait()
    ready()
    _, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task, record in zip(tasks, records, strict=True):
        if task in pending:
            record["error"] = "still open at the deadline"
    return records


# -- the live channels, straight from Redis --------------------------------------------------------
async def probe_live(
    redis_url: str, ready: Callable[[], None], stop: Callable[[], bool]
) -> list[tuple[Any, ...]]:
    """Every final published on any session's live channel, as [sid, track, seq, emitted_at, received],
    until ``stop()``.

    One pattern subscription on its own connection: when a final reached Redis subscribers, which splits
    the latency into the worker's part (commit to publish) and the publisher's (publish to display).
    """
    client = Redis.from_url(redis_url)
    pubsub = client.pubsub()
    seen: list[tuple[Any, ...]] = []
    try:
        await pubsub.psubscribe(keys.live_pattern())
        ready()
        while not stop():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=PROBE_POLL_S)
            if message is None or message["type"] != "pmessage":
                continue
            received = time.time()
            caption = captions.decode(message["data"])
            if caption is not None and caption.event.type == "final":
                event = caption.event
                sid = keys.sid_of_live(message["channel"].decode())
                seen.append((sid, event.track, event.seq, event.emitted_at, received))
    finally:
        await pubsub.aclose()
        await client.aclose()
    return seen


# -- process entry points ------------------------------------------------------------------------
def sender_process(urls: list[str], seconds: float, frame_s: float, out: str) -> None:
    """Child process: stream every session's audio; write the send log and this process's CPU seconds."""
    cpu0 = time.process_time()
    sessions = eventloop.run(send_all(urls, seconds, frame_s))
    Path(out).write_text(json.dumps({"sessions": sessions, "cpu_s": time.process_time() - cpu0}))


def display_process(urls: list[str], out: str, ready: Any, deadline_s: float) -> None:
    """Child process: run the displays; ``ready`` (a multiprocessing Event) is set once all are connected.

    Writes the displays' logs and the CPU seconds this process spent after ``ready``.
    """
    marks: list[float] = []

    def on_ready() -> None:
        eventloop.freeze_startup_objects()  # the connections, kept to the end: no full collections over them
        marks.append(time.process_time())
        ready.set()

    displays = eventloop.run(watch_all(urls, on_ready, deadline_s))
    cpu_s = time.process_time() - (marks[0] if marks else 0.0)
    Path(out).write_text(json.dumps({"displays": displays, "cpu_s": cpu_s}))


def probe_process(redis_url: str, out: str, ready: Any, stop: Any) -> None:
    """Child process: record every final on the live channels until ``stop`` (a multiprocessing Event)."""
    cpu0 = time.process_time()
    seen = eventloop.run(probe_live(redis_url, ready.set, stop.is_set))
    Path(out).write_text(json.dumps({"finals": seen, "cpu_s": time.process_time() - cpu0}))
