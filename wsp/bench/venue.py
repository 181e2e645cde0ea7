"""``wsp bench venue``: what a venue technician asks of a hardened deployment, on real processes.

1. **First caption with abandoned sessions.** One worker with two places (scripted engine, the
   deployment's other defaults, an API key). A real session streams at real-time pace; the delay from its
   first audio to its first final at a display is measured on an idle deployment, then with ``abandoned``
   sessions present: half created and never streamed, half streamed a second and went silent (longer ago
   than ``WSP_SESSION_PARK_S``). Between runs the operator ends the abandoned ones (``POST .../end``).
2. **Redis memory under a flood.** ``sessions`` sessions, no API key, each pushing audio as fast as the
   service takes it for ``seconds`` (a refused connection comes back after :data:`RECONNECT_PAUSE_S` and
   goes on where the audio stands); Redis ``used_memory`` sampled every :data:`SAMPLE_S` against its
   ``maxmemory``.
3. **Secrets in logs.** Every token issued in both runs, and the API key, is searched for in every log
   file the services wrote (JSON lines, as compose writes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from asr_worker.core.words import Word
from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import sessions
from common.settings import Settings
from wsp.bench.processes import Display, LocalPipeline, audio_for, stream

SAMPLE_S = 0.5
"""How often Redis memory is read during the flood."""
RECONNECT_PAUSE_S = 0.1
"""A flooding sender's pause after a refusal before it connects again."""
FLOOD_FRAME_S = 1.0
"""Audio per frame a flooding sender sends."""
WORDS = "one two three four five six."
"""What the real sessions say (the scripted engine hears it)."""
ABANDONED_AUDIO_S = 1.0
"""What an abandoned session streamed before it went silent."""
JSON_LOGS = {"WSP_LOG_FORMAT": "json"}
"""The services log as compose has them log."""
WORKER_CAPACITY = 2
LEASE_TTL_S = 3.0
FIRST_CAPTION_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class VenuePlan:
    abandoned: int = 10
    runs: int = 3
    sessions: int = 100
    seconds: float = 60.0
    maxmemory: str = "1gb"
    workdir: Path | None = None


def run_bench(plan: VenuePlan) -> dict[str, Any]:
    """All three parts; the figures as one JSON-ready dict."""
    words = ScriptedTranscriber.from_text(WORDS)
    with contextlib.ExitStack() as stack:
        if plan.workdir is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsp-venue-")))
        else:
            tmp = plan.workdir
        script = tmp / "script.json"
        tmp.mkdir(parents=True, exist_ok=True)
        write_script(script, words)
        key = secrets.token_urlsafe(24)
        issued: list[str] = []
        with LocalPipeline(
            tmp / "first-caption",
            script,
            LEASE_TTL_S,
            WORKER_CAPACITY,
            extra_env={**JSON_LOGS, "WSP_API_KEY": key},
        ) as pipeline:
            pipeline.start(workers=1)
            first = asyncio.run(first_caption_runs(pipeline, plan, words, key, issued))
        with LocalPipeline(
            tmp / "flood", script, LEASE_TTL_S, WORKER_CAPACITY, JSON_LOGS, redis_maxmemory=plan.maxmemory
        ) as pipeline:
            pipeline.start(workers=1)
            flood = asyncio.run(flood_memory(pipeline, plan, issued))
        found = secrets_in_logs(tmp, [key, *issued])
    return {"first_caption_s": first, "redis_memory": flood, "secrets_in_logs": found}


# -- 1. first caption ---------------------------------------------------------------------------
async def first_caption_runs(
    pipeline: LocalPipeline, plan: VenuePlan, words: list[Word], key: str, issued: list[str]
) -> dict[str, Any]:
    keyed = {"Authorization": f"Bearer {key}"}
    alone: list[float] = []
    crowded: list[float] = []
    park_s = Settings().session_park_s
    async with httpx.AsyncClient(base_url=pipeline.ingest_url, headers=keyed, timeout=10) as http:
        for _ in range(plan.runs):
            alone.append(await real_session(http, pipeline, words, issued))
            abandoned = await abandon(http, plan.abandoned, issued)
            await asyncio.sleep(park_s + 1.5)  # the silent ones have been silent for longer than that
            crowded.append(await real_session(http, pipeline, words, issued))
            for sid in abandoned:  # the operator clears the room for the next run
                (await http.post(f"/v1/sessions/{sid}/end")).raise_for_status()
            await wait_closed(http, abandoned)
    return {
        "abandoned_sessions": plan.abandoned,
        "worker_places": WORKER_CAPACITY,
        "alone": [round(s, 3) for s in alone],
        "with_abandoned": [round(s, 3) for s in crowded],
        "alone_median": round(statistics.median(alone), 3),
        "with_abandoned_median": round(statistics.median(crowded), 3),
    }


async def real_session(
    http: httpx.AsyncClient, pipeline: LocalPipeline, words: list[Word], issued: list[str]
) -> float:
    """A session streamed at real-time pace to its end; seconds from its first audio to its first final.

    On the way every page and export that takes a token is fetched with one (the logs must hide them).
    """
    created = (await http.post("/v1/sessions", json={"language": "en", "title": "talk"})).json()
    issued += [created["audio_token"], created["read_token"]]
    display = Display(created["captions_url"])
    watching = asyncio.create_task(display.run())
    await asyncio.wait_for(display.connected.wait(), 10)
    began = time.monotonic()
    await stream(created["audio_url"], audio_for(words))
    await asyncio.wait_for(watching, FIRST_CAPTION_TIMEOUT_S)
    finals = [r for r in display.received if r.event.type == "final"]
    if not finals:
        return float("inf")
    await visit_every_door(pipeline, created)
    return finals[0].at - began


async def visit_every_door(pipeline: LocalPipeline, created: dict[str, Any]) -> None:
    """Fetch, with the session's tokens on the URL, every page and export that takes one."""
    sid, audio, read = created["id"], created["audio_token"], created["read_token"]
    async with httpx.AsyncClient(timeout=10) as http:
        await http.get(f"{pipeline.ingest_url}/", params={"session": sid, "token": audio, "read": read})
        await http.get(f"{pipeline.ingest_url}/v1/sessions/{sid}", params={"token": read})
        await http.get(created["display_url"])
        for ext in ("srt", "vtt"):
            await http.get(
                f"{pipeline.publisher_url}/v1/sessions/{sid}/captions.{ext}", params={"token": read}
            )


async def abandon(http: httpx.AsyncClient, count: int, issued: list[str]) -> list[str]:
    """``count`` sessions: half never streamed, half streamed :data:`ABANDONED_AUDIO_S` and went silent."""
    sids = []
    silence = float_to_pcm16(np.zeros(round(ABANDONED_AUDIO_S * SAMPLE_RATE), dtype=np.float32))
    for number in range(count):
        created = (await http.post("/v1/sessions", json={"language": "en", "title": "abandoned"})).json()
        issued += [created["audio_token"], created["read_token"]]
        sids.append(created["id"])
        if number % 2:
            async with connect(created["audio_url"]) as ws:
                await ws.send(json.dumps({"type": "start"}))
                await ws.recv()
                await ws.send(silence)
                while json.loads(await ws.recv()).get("samples", 0) < len(silence) // 2:
                    pass  # acknowledged; then the page is closed without an end
    return sids


async def wait_closed(http: httpx.AsyncClient, sids: list[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = (await http.get("/v1/sessions")).json()["sessions"]
        if not {s["id"] for s in listed} & set(sids):
            return
        await asyncio.sleep(0.2)


# -- 2. memory ----------------------------------------------------------------------------------
async def flood_memory(pipeline: LocalPipeline, plan: VenuePlan, issued: list[str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=pipeline.ingest_url, timeout=30) as http:
        created = [
            (await http.post("/v1/sessions", json={"language": "en"})).json() for _ in range(plan.sessions)
        ]
    issued += [t for c in created for t in (c["audio_token"], c["read_token"])]
    frame = float_to_pcm16(np.zeros(round(FLOOD_FRAME_S * SAMPLE_RATE), dtype=np.float32))
    closes: Counter[str] = Counter()
    samples: list[int] = []
    db = redis.asyncio.Redis.from_url(pipeline.redis_url)
    stop = time.monotonic() + plan.seconds
    try:
        limit = int((await db.info("memory"))["maxmemory"])
        sampler = asyncio.create_task(sample_memory(db, samples))
        await asyncio.gather(*(flood_one(c["audio_url"], frame, stop, closes) for c in created))
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        views = [await sessions.load(db, c["id"]) for c in created]
        held = [view.samples if view is not None else 0 for view in views]
    finally:
        await db.aclose()
    return {
        "sessions": plan.sessions,
        "seconds": plan.seconds,
        "maxmemory_bytes": limit,
        "used_memory_peak_bytes": max(samples),
        "used_memory_end_bytes": samples[-1],
        "peak_of_limit": round(max(samples) / limit, 3) if limit else None,
        "audio_accepted_s_per_session": round(statistics.mean(held) / SAMPLE_RATE, 1),
        "refusals": dict(closes),
    }


async def sample_memory(db: Any, samples: list[int]) -> None:
    while True:
        samples.append(int((await db.info("memory"))["used_memory"]))
        await asyncio.sleep(SAMPLE_S)


async def flood_one(url: str, frame: bytes, stop: float, closes: Counter[str]) -> None:
    """Push frames as fast as the service takes them until ``stop``, reconnecting after each refusal."""
    while time.monotonic() < stop:
        try:
            async with connect(url, max_size=1 << 20, open_timeout=30) as ws:
                await ws.send(json.dumps({"type": "start"}))
                await ws.recv()
                reader = asyncio.create_task(_drain(ws))  # acks and the refusal: read, so pings are answered
                try:
                    while time.monotonic() < stop:
                        await ws.send(frame)
                finally:
                    reader.cancel()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            reason = closed.rcvd.reason if closed.rcvd else ""
            closes[f"{code} {reason}".strip()] += 1
        except (OSError, TimeoutError, WebSocketException) as exc:
            closes[type(exc).__name__] += 1
        await asyncio.sleep(RECONNECT_PAUSE_S)


# -- 3. secrets ---------------------------------------------------------------------------------
def secrets_in_logs(workdir: Path, secrets_issued: list[str]) -> dict[str, Any]:
    logs = {
        str(p.relative_to(workdir)): p.read_text(errors="replace") for p in sorted(workdir.rglob("*.log"))
    }
    hits = {name: sum(text.count(s) for s in secrets_issued) for name, text in logs.items()}
    return {
        "secrets_searched": len(secrets_issued),
        "log_files": len(logs),
        "log_lines": sum(text.count("\n") for text in logs.values()),
        "hits": sum(hits.values()),
        "hits_by_file": {name: n for name, n in hits.items() if n},
        "redacted_tokens_seen": sum(text.count("token=***") for text in logs.values()),
    }


async def _drain(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass
