"""Pipeline load benchmark: many sessions, many displays each, real processes, a scripted engine.

:func:`run_bench` starts a :class:`~wsp.bench.processes.LocalPipeline` (embedded Redis, ``wsp ingest``,
``wsp publisher``, workers on the scripted engine, which costs no CPU of its own), opens the sessions, holds
every display open from client processes (:mod:`wsp.bench.load_clients`), streams every session's audio
through ingest at real-time pace, and waits until each display has been closed at the end of its session.
:mod:`wsp.bench.load_figures` turns the clients' records into the figures; CPU seconds of every process
are read from ``/proc`` over the streaming part only. ``wsp bench pipeline`` prints them as one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from asr_worker.core.words import Word
from asr_worker.transcribers.factory import write_script
from common.contract import keys
from wsp.bench.failover import numbered_script
from wsp.bench.load_clients import display_process, probe_process, sender_process
from wsp.bench.load_figures import LoadPlan, SessionLog, figures
from wsp.bench.processes import FRAME_S, LocalPipeline, PipelineError
from wsp.client import SessionInfo, open_session

log = logging.getLogger(__name__)

TRACK = "en"
"""The benchmark's sessions have one track (English transcription of the numbered script)."""
CONNECT_TIMEOUT_S = 120.0
"""How long the client processes may take to connect every display."""
FINISH_GRACE_S = 90.0
"""After the audio, how long sessions may take to end and their displays to close."""
SESSIONS_OPENED_AT_ONCE = 16
MAX_SESSIONS_DEFAULT = 100
"""Ingest's session limit is raised to the benchmark's session count when that is larger."""


def script_for(seconds: float) -> list[Word]:
    """Numbered words (``word1 word2 ...``, a full stop every sixth) filling ``seconds`` less a second."""
    return numbered_script(max(1, math.floor((seconds - 1.9) / 0.5) + 1))


# -- process accounting (Linux /proc; None elsewhere) ---------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process, in MiB."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores of the machine have been busy since boot (every process, the kernel)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, IndexError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_used(before: dict[str, float | None], pids: dict[str, int]) -> dict[str, float | None]:
    used: dict[str, float | None] = {}
    for name, pid in pids.items():
        start, end = before.get(name), cpu_seconds(pid)
        used[name] = None if start is None or end is None else round(end - start, 2)
    return used


# -- the run --------------------------------------------------------------------------------------
async def _open_sessions(base: str, count: int) -> list[SessionInfo]:
    gate = asyncio.Semaphore(SESSIONS_OPENED_AT_ONCE)

    async def one(number: int) -> SessionInfo:
        async with gate:
            return await open_session(base, None, language="en", title=f"load {number}")

    return list(await asyncio.gather(*(one(n) for n in range(count))))


def _join(proc: Any, timeout: float, what: str) -> None:
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
        raise PipelineError(f"the {what} did not finish in {timeout:.0f} s")
    if proc.exitcode != 0:
        raise PipelineError(f"the {what} failed (exit code {proc.exitcode})")


def _drive(pipeline: LocalPipeline, infos: list[SessionInfo], plan: LoadPlan, tmp: Path) -> dict[str, Any]:
    """Displays connected, then audio streamed; the clients' records and the CPU used meanwhile."""
    import json

    ctx = multiprocessing.get_context("spawn")
    probe_ready, probe_stop = ctx.Event(), ctx.Event()
    probe_out = tmp / "probe.json"
    probe = ctx.Process(
        target=probe_process, args=(pipeline.redis_url, str(probe_out), probe_ready, probe_stop), daemon=True
    )
    probe.start()
    if not probe_ready.wait(CONNECT_TIMEOUT_S):
        raise PipelineError("the live-channel probe did not subscribe in time")
    urls = [(i, info.captions_url) for i, info in enumerate(infos) for _ in range(plan.displays)]
    groups = [urls[g :: plan.display_procs] for g in range(plan.display_procs)]
    groups = [g for g in groups if g]
    deadline_s = CONNECT_TIMEOUT_S + plan.seconds + FINISH_GRACE_S
    watchers = []
    for number, group in enumerate(groups, 1):
        ready = ctx.Event()
        out = tmp / f"displays-{number}.json"
        proc = ctx.Process(
            target=display_process, args=([u for _, u in group], str(out), ready, deadline_s), daemon=True
        )
        proc.start()
        watchers.append((proc, ready, out, group))
    for _, ready, _, _ in watchers:
        if not ready.wait(CONNECT_TIMEOUT_S):
            raise PipelineError("the display clients did not connect in time")
    pids = pipeline.pids()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before, load_before = machine_busy_seconds(), os.getloadavg()[0]
    started = time.monotonic()
    sender_out = tmp / "senders.json"
    sender = ctx.Process(
        target=sender_process,
        args=([info.audio_url for info in infos], plan.seconds, FRAME_S, str(sender_out)),
        daemon=True,
    )
    sender.start()
    _join(sender, plan.seconds + FINISH_GRACE_S, "audio sender")
    for proc, _, _, _ in watchers:
        _join(proc, FINISH_GRACE_S + CONNECT_TIMEOUT_S, "display client")
    probe_stop.set()
    _join(probe, CONNECT_TIMEOUT_S, "live-channel probe")
    wall_s = time.monotonic() - started
    services = _cpu_used(before, pids)
    busy_after, load_after = machine_busy_seconds(), os.getloadavg()[0]
    busy = None if busy_before is None or busy_after is None else busy_after - busy_before
    rss = {name: rss_mb(pid) for name, pid in pids.items()}
    sent = json.loads(sender_out.read_text())
    probed = json.loads(probe_out.read_text())
    displays: list[tuple[int, dict[str, Any]]] = []
    client_cpu = {"audio senders": round(sent["cpu_s"], 2), "live probe": round(probed["cpu_s"], 2)}
    for number, (_, _, out, group) in enumerate(watchers, 1):
        got = json.loads(out.read_text())
        client_cpu[f"displays {number}"] = round(got["cpu_s"], 2)
        displays.extend((i, record) for (i, _), record in zip(group, got["displays"], strict=True))
    return {
        "senders": sent["sessions"],
        "published": probed["finals"],
        "displays": displays,
        "wall_s": wall_s,
        "cpu": services,
        "rss": rss,
        "client_cpu": client_cpu,
        "machine": {
            "cores": os.cpu_count(),
            "busy_cpu_s": None if busy is None else round(busy, 1),
            "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        },
    }


def _redis_figures(db: redis.Redis, sids: list[str]) -> dict[str, Any]:
    memory: Any = db.info("memory")
    audio_bytes = db.memory_usage(keys.audio(sids[0]), samples=0) if sids else None
    captions_bytes = db.memory_usage(keys.captions(sids[0]), samples=0) if sids else None
    return {
        "used_memory": memory["used_memory"],
        "used_memory_human": memory["used_memory_human"],
        "used_memory_peak_human": memory["used_memory_peak_human"],
        "audio_stream_bytes_per_session": audio_bytes,
        "caption_stream_bytes_per_session": captions_bytes,
    }


def run_bench(plan: LoadPlan) -> dict[str, Any]:
    """Run the whole benchmark; the figures as one JSON-ready dict."""
    words = script_for(plan.seconds)
    capacity = math.ceil(plan.sessions / plan.workers)
    with contextlib.ExitStack() as stack:
        if plan.workdir is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsp-load-")))
        else:
            tmp = plan.workdir
            tmp.mkdir(parents=True, exist_ok=True)
        script = tmp / "script.json"
        write_script(script, words)
        room = {"WSP_MAX_SESSIONS": str(max(plan.sessions, MAX_SESSIONS_DEFAULT))}
        with LocalPipeline(tmp, script, plan.lease_ttl_s, capacity, extra_env=room) as pipeline:
            pipeline.start(workers=plan.workers)
            infos = asyncio.run(_open_sessions(pipeline.ingest_url, plan.sessions))
            sids = [info.id for info in infos]
            with redis.Redis.from_url(pipeline.redis_url) as db:  # claimed once their audio comes
                run = _drive(pipeline, infos, plan, tmp)
                committed = [int(db.hget(keys.seq(sid), TRACK) or 0) for sid in sids]
                memory = _redis_figures(db, sids)
    published: dict[str, dict[tuple[str, int], float]] = {sid: {} for sid in sids}
    for sid, track, seq, _, received in run["published"]:
        published[sid][(track, seq)] = received
    sessions = [
        SessionLog(sid, {TRACK: n}, s["frame_samples"], s["sent"], published[sid])
        for sid, n, s in zip(sids, committed, run["senders"], strict=True)
    ]
    return figures(plan, words, sessions, run, memory)
