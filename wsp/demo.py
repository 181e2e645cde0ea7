"""``wsp demo``: the whole pipeline on one machine, end to end, as a venue would see it.

Starts the stack, creates a session, streams a file into the ingest WebSocket at real-time pace, and
prints the final captions exactly as a display receives them from the publisher. At the end it reports
the delay from audio reaching ingest to the caption reaching the display, and the error rate when a
reference transcript (the ``.txt`` beside the audio) exists.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from websockets.asyncio.client import connect

from common.audio import SAMPLE_RATE, float_to_pcm16, load_audio
from common.errors import WspError
from common.schemas import CAPTIONS_MESSAGE, ErrorMessage
from common.settings import Settings
from wsp.bench.scoring import error_rate, weighted_percentile
from wsp.client import open_session, push_audio
from wsp.stack import Stack


@dataclass
class TrackLog:
    texts: list[str] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


async def run_demo(
    settings: Settings,
    path: Path,
    language: str,
    tracks: list[dict[str, str]] | None,
    chunk_ms: int,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    audio = load_audio(path)
    pcm = float_to_pcm16(audio)
    stack = Stack(settings)
    print("starting: embedded Redis, ingest, ASR worker (loading the model), publisher ...", file=sys.stderr)
    urls = await stack.start()
    print(f"redis {urls.redis} | ingest {urls.ingest} | publisher {urls.publisher}", file=sys.stderr)
    try:
        info = await open_session(
            urls.ingest,
            None,
            language=language,
            tracks=tracks,
            title=path.name,
            api_key=settings.api_key_value(),
        )
        captions = info.captions_url  # carries the session's read token
        print(
            f"session {info.id}: streaming {path.name} ({audio.size / SAMPLE_RATE:.1f} s) in real time",
            file=sys.stderr,
        )
        async with connect(captions, open_timeout=10) as display:
            loop = asyncio.get_running_loop()
            began = loop.time()
            chunk = max(1, round(chunk_ms * SAMPLE_RATE / 1000)) * 2
            sender = asyncio.create_task(push_audio(info.audio_url, pcm, chunk, realtime=True))
            logs = await _show(display, began, out, loop)
            await sender
    finally:
        await stack.stop()
    return _summary(logs, path, language)


async def _show(
    display: Any, began: float, out: TextIO, loop: asyncio.AbstractEventLoop
) -> dict[str, TrackLog]:
    logs: dict[str, TrackLog] = {}
    ended: set[str] = set()
    async for raw in display:
        event = CAPTIONS_MESSAGE.validate_json(raw)
        if isinstance(event, ErrorMessage):
            raise WspError(f"the publisher refused the display: {event.message}")
        track = event.track
        if event.type == "end":
            ended.add(track)
            continue
        if event.type != "final":
            continue
        now = loop.time() - began
        log = logs.setdefault(track, TrackLog())
        log.texts.append(event.text)
        log.delays.append(now - float(event.end or 0.0))
        log.weights.append(max(1, len("".join(event.text.split()))))
        print(f"{track} #{event.seq:<4} [{now:6.1f}s] {event.text}", file=out, flush=True)
    return logs


def _summary(logs: dict[str, TrackLog], path: Path, language: str) -> dict[str, Any]:
    reference = path.with_suffix(".txt")
    summary: dict[str, Any] = {}
    for track, log in logs.items():
        joiner = "" if track in ("ja", "zh") else " "
        figures: dict[str, Any] = {
            "finals": len(log.texts),
            "latency_p50_s": round(weighted_percentile(log.delays, log.weights, 50), 3),
            "latency_p90_s": round(weighted_percentile(log.delays, log.weights, 90), 3),
        }
        if reference.is_file() and track == language:
            text = joiner.join(log.texts)
            figures["error_rate"] = round(error_rate(reference.read_text(encoding="utf-8"), text, track), 4)
        summary[track] = figures
    return summary
