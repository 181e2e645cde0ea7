"""ASR workers against a real Redis server, with a scripted engine: captions, crash takeover, handover."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis

from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.schemas import CaptionEvent, TrackSpec
from tests.worker_helpers import (
    captions,
    create_session,
    ended,
    epoch,
    finals_at_least,
    stream_audio,
    wait_until,
)

EN_TEXT = (
    "Good evening everyone. Welcome to the autumn concert. Please switch off your phones. "
    "Photography is not allowed during the performance. The first half is Mozart."
)


EN_TIMELINE = ScriptedTranscriber.from_text(EN_TEXT)


def worker_spawner(redis_url: str, tmp_path: Path, ttl_s: float) -> Callable[[str], subprocess.Popen[bytes]]:
    """Starts `wsp worker --id ID` processes on the scripted English engine; each logs to tmp_path/ID.log."""
    script = tmp_path / "script.json"
    write_script(script, EN_TIMELINE)
    env = {
        **os.environ,
        "WSP_REDIS_URL": redis_url,
        "WSP_ENGINE": "scripted",
        "WSP_SCRIPT_FILE": str(script),
        "WSP_LEASE_TTL_S": str(ttl_s),
    }

    def spawn(worker_id: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "wsp.cli", "worker", "--id", worker_id]
        with (tmp_path / f"{worker_id}.log").open("wb") as log:
            return subprocess.Popen(command, env=env, stderr=log)

    return spawn


def assert_english_complete(events: list[CaptionEvent]) -> None:
    """Every scripted English word once, in order, seqs 1..N, the end last."""
    finals = [e for e in events if e.type == "final"]
    assert " ".join(e.text for e in finals) == " ".join(EN_TEXT.split())
    assert [e.seq for e in finals] == list(range(1, len(finals) + 1))
    assert [e.type for e in events][-1] == "end"


def test_wsp_worker_processes_survive_a_sigkill(redis_url: str, tmp_path: Path) -> None:
    """Two `wsp worker` processes with the scripted engine: the first is killed mid-session."""
    spawn = worker_spawner(redis_url, tmp_path, ttl_s=1.0)

    async def scenario() -> list[CaptionEvent]:
        redis = Redis.from_url(redis_url)
        sid = "worker-sigkill"
        first = spawn("proc-first")
        second: subprocess.Popen[bytes] | None = None
        try:
            await create_session(redis, sid, "en", [TrackSpec(name="en")])
            total_s = EN_TIMELINE[-1].end + 1.0
            writer = asyncio.create_task(stream_audio(redis, sid, total_s, pace_s=0.1))
            await wait_until(lambda: finals_at_least(redis, sid, 2), timeout_s=60)
            first.kill()
            first.wait(timeout=10)
            second = spawn("proc-second")
            await writer
            await wait_until(lambda: ended(redis, sid), timeout_s=60)
            assert await epoch(redis, sid) == 2
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
            err = (tmp_path / "proc-second.log").read_text()
            assert second.returncode == 0, err
            assert "worker proc-second" in err
            return await captions(redis, sid)
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
            await redis.aclose()

    events = asyncio.run(scenario())
    assert_english_complete(events)


def test_a_sigtermed_wsp_worker_process_hands_its_session_over_at_once(
    redis_url: str, tmp_path: Path
) -> None:
    """SIGTERM drains: the lease is released, so another `wsp worker` resumes long before the lease TTL."""
    ttl_s = 30.0
    spawn = worker_spawner(redis_url, tmp_path, ttl_s)

    async def scenario() -> tuple[list[CaptionEvent], float]:
        redis = Redis.from_url(redis_url)
        sid = "worker-sigterm"
        first = spawn("term-first")
        second: subprocess.Popen[bytes] | None = None
        try:
            await create_session(redis, sid, "en", [TrackSpec(name="en")])
            writer = asyncio.create_task(stream_audio(redis, sid, EN_TIMELINE[-1].end + 1.0, pace_s=0.1))
            await wait_until(lambda: finals_at_least(redis, sid, 2), timeout_s=60)
            second = spawn("term-second")
            first.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            first.wait(timeout=30)
            assert first.returncode == 0, (tmp_path / "term-first.log").read_text()
            await writer
            await wait_until(lambda: ended(redis, sid), timeout_s=ttl_s / 2)
            assert await epoch(redis, sid) == 2
            return await captions(redis, sid), time.monotonic() - stopped_at
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
            await redis.aclose()

    events, took_s = asyncio.run(scenario())
    assert_english_complete(events)
    assert took_s < ttl_s / 2
