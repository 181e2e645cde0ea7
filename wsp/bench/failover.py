"""Failover benchmark: the worker that owns a live session is SIGKILLed; how soon do captions resume?

:func:`failover_once` runs one session on a :class:`~wsp.bench.processes.LocalPipeline` (real
processes, scripted engine): audio goes through the ingest WebSocket at real-time pace to a display on
the publisher, and once the display has shown a few finals the worker holding the session's lease is
killed. :func:`measure` says how long the display waited for its next final caption, and whether any
word was lost or repeated or any seq skipped. ``wsp bench failover`` prints it all as one JSON object.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from asr_worker.core.words import Word
from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.contract import leases
from wsp.bench.processes import Display, LocalPipeline, PipelineError, Received, audio_for, stream
from wsp.client import open_session

log = logging.getLogger(__name__)

KILL_AFTER_FINALS = 3
"""The owner is killed once the display has shown this many final captions."""
RESUME_TARGET_S = 5.0
"""The target: captions resume within this long of a worker's death, with no word lost or repeated."""


def numbered_script(count: int) -> list[Word]:
    """``word1 word2 ...`` with a full stop every sixth word: every word distinct, so losses are countable."""
    tokens = [f"word{i}" + ("." if i % 6 == 0 else "") for i in range(1, count + 1)]
    return ScriptedTranscriber.from_text(" ".join(tokens))


# -- the failover run ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FailoverOutcome:
    """What one failover run saw: the display's events, who died, who took over, and when."""

    received: list[Received]
    killed: str
    successor: str
    killed_at: float
    """``time.monotonic()`` just before the SIGKILL."""
    killed_wall: float
    """``time.time()`` just before the SIGKILL (finals emitted after it come from the successor)."""
    taken_over_s: float
    """From the kill until the successor held the lease."""
    epoch: int


async def failover_once(pipeline: LocalPipeline, words: list[Word]) -> FailoverOutcome:
    """One session in English (one track), its owner SIGKILLed after :data:`KILL_AFTER_FINALS` finals."""
    info = await open_session(pipeline.ingest_url, None, language="en")
    display = Display(info.captions_url)
    db = AsyncRedis.from_url(pipeline.redis_url)
    watching = asyncio.create_task(display.run())
    pushing: asyncio.Task[Any] | None = None
    audio_s = words[-1].end + 1.0
    try:
        await asyncio.wait_for(display.connected.wait(), 10)
        pushing = stream(info.audio_url, audio_for(words))
        await display.wait_finals(KILL_AFTER_FINALS, timeout_s=audio_s)
        killed = await leases.holder(db, info.id)
        if killed is None or killed not in pipeline.procs:
            raise PipelineError(f"session {info.id} is held by {killed!r}, not by a worker of this pipeline")
        killed_at, killed_wall = time.monotonic(), time.time()
        pipeline.kill(killed)
        deadline = killed_at + pipeline.lease_ttl_s + 10
        while (successor := await leases.holder(db, info.id)) in (None, killed):
            if time.monotonic() > deadline:
                raise PipelineError(f"no worker took session {info.id} over from {killed}")
            await asyncio.sleep(0.02)
        taken_over_s = time.monotonic() - killed_at
        await asyncio.wait_for(pushing, audio_s + 10)
        await asyncio.wait_for(watching, pipeline.lease_ttl_s + 20)
        epoch = await leases.epoch(db, info.id)
    finally:
        for task in (watching, pushing):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (watching, pushing) if t is not None), return_exceptions=True)
        await db.aclose()
    assert successor is not None
    return FailoverOutcome(display.received, killed, successor, killed_at, killed_wall, taken_over_s, epoch)


def measure(outcome: FailoverOutcome, words: list[Word]) -> dict[str, Any]:
    """Figures of one run: resume time at the display, words lost or repeated, gaps in the seqs."""
    finals = [r for r in outcome.received if r.event.type == "final"]
    tokens = [t for r in finals for t in r.event.text.split()]
    expected = [w.text for w in words]
    got, want = Counter(tokens), Counter(expected)
    seqs = [r.event.seq or 0 for r in finals]
    after = [r for r in finals if r.at > outcome.killed_at and r.event.emitted_at >= outcome.killed_wall]
    return {
        "resume_s": round(after[0].at - outcome.killed_at, 3) if after else None,
        "taken_over_s": round(outcome.taken_over_s, 3),
        "words_lost": sum((want - got).values()),
        "words_duplicated": sum((got - want).values()),
        "words_in_order": tokens == expected,
        "seq_gaps": len(set(range(1, max(seqs, default=0) + 1)) - set(seqs)),
        "seqs_in_order": seqs == list(range(1, len(seqs) + 1)),
        "finals": len(finals),
        "killed": outcome.killed,
        "successor": outcome.successor,
        "epoch": outcome.epoch,
    }


def run_bench(runs: int, lease_ttl_s: float) -> dict[str, Any]:
    """``runs`` failovers on one local pipeline (the killed worker is replaced before the next run)."""
    words = numbered_script(math.ceil((2 * KILL_AFTER_FINALS + lease_ttl_s + 6) / 0.5))
    results = []
    with tempfile.TemporaryDirectory(prefix="wsp-failover-") as tmp:
        script = Path(tmp) / "script.json"
        write_script(script, words)
        with LocalPipeline(Path(tmp), script, lease_ttl_s) as pipeline:
            pipeline.start(workers=2)
            for number in range(1, runs + 1):
                pipeline.ensure_workers(2)
                results.append(measure(asyncio.run(failover_once(pipeline, words)), words))
                log.info("failover run %d: %s", number, results[-1])
    resumes = [r["resume_s"] for r in results if r["resume_s"] is not None]
    clean = all(r["words_lost"] == r["words_duplicated"] == r["seq_gaps"] == 0 for r in results)
    return {
        "lease_ttl_s": lease_ttl_s,
        "audio_s": round(words[-1].end + 1.0, 2),
        "words": len(words),
        "runs": results,
        "resume_s": {
            "min": min(resumes, default=None),
            "median": statistics.median(resumes) if resumes else None,
            "max": max(resumes, default=None),
        },
        "target": {"resume_s_max": RESUME_TARGET_S, "words_lost": 0, "words_duplicated": 0},
        "meets_target": clean and len(resumes) == len(results) and max(resumes) <= RESUME_TARGET_S,
    }
