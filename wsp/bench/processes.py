"""The whole pipeline as real processes on this machine, for end-to-end tests and benchmarks.

:class:`LocalPipeline` runs an embedded Redis server, ``wsp ingest``, ``wsp publisher`` and ``wsp worker``
processes with the scripted engine (no model; the real model when given no script), each in its own
process group, and ends them all on close (SIGTERM, then SIGKILL). :class:`Display` is a caption display
on the publisher's WebSocket and :func:`stream` sends audio through the ingest WebSocket at real-time pace,
as a venue's microphone would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from websockets.asyncio.client import connect

from asr_worker.core.words import Word
from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.errors import WspError
from common.redis_conn import EmbeddedRedis
from common.schemas import CaptionEvent
from wsp.client import push_audio

FRAME_S = 0.25
"""Length of each audio frame sent to the ingest WebSocket."""
START_TIMEOUT_S = 30.0
"""How long the processes may take to become ready."""
STOP_GRACE_S = 3.0
"""On close, how long processes get after SIGTERM before SIGKILL."""
SERVICES = ("ingest", "publisher")
BENCH_SESSIONS_PER_CLIENT = 100_000
"""Sessions the one address of a benchmark's clients may create a minute and hold open."""


class PipelineError(WspError):
    """A process of the local pipeline did not start, or a session did not finish in time."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


class LocalPipeline:
    """Redis, ingest, publisher and workers as child processes; :meth:`close` ends every one of them."""

    def __init__(
        self,
        workdir: Path,
        script_file: Path | None,
        lease_ttl_s: float,
        worker_capacity: int = 4,
        extra_env: dict[str, str] | None = None,
        redis_maxmemory: str | None = None,
    ) -> None:
        self.workdir = workdir
        self._extra_env = dict(extra_env or {})
        """More ``WSP_*`` settings for every process (they win over the defaults above)."""
        self.lease_ttl_s = lease_ttl_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._server: EmbeddedRedis | None = None
        self._workers_started = 0
        self._script = script_file
        self._capacity = worker_capacity
        self._maxmemory = redis_maxmemory
        self.redis_url = self.ingest_url = self.publisher_url = ""
        self._env: dict[str, str] = {}

    def __enter__(self) -> LocalPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workers(self) -> list[str]:
        """Ids of the worker processes still running."""
        return [n for n, p in self.procs.items() if n not in SERVICES and p.poll() is None]

    def start(self, workers: int) -> None:
        """Start Redis, ingest, the publisher and ``workers`` workers; return once every one is ready."""
        (self.workdir / "redis").mkdir(parents=True, exist_ok=True)
        self._server = EmbeddedRedis(directory=self.workdir / "redis", maxmemory=self._maxmemory)
        self.redis_url = self._server.url
        ingest_port, publisher_port = free_port(), free_port()
        self.ingest_url = f"http://127.0.0.1:{ingest_port}"
        self.publisher_url = f"http://127.0.0.1:{publisher_port}"
        outside = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
        self._env = outside | {
            "WSP_REDIS_URL": self.redis_url,
            "WSP_HOST": "127.0.0.1",
            "WSP_INGEST_PORT": str(ingest_port),
            "WSP_PUBLISHER_PORT": str(publisher_port),
            "WSP_LEASE_TTL_S": str(self.lease_ttl_s),
            "WSP_WORKER_CAPACITY": str(self._capacity),
            "WSP_LOG_LEVEL": "INFO",
            # every client of a benchmark or test comes from this host: no per-address bounds
            "WSP_CLIENT_SESSIONS_PER_MINUTE": str(BENCH_SESSIONS_PER_CLIENT),
            "WSP_MAX_SESSIONS_PER_CLIENT": str(BENCH_SESSIONS_PER_CLIENT),
        }
        if self._script is not None:
            self._env |= {"WSP_ENGINE": "scripted", "WSP_SCRIPT_FILE": str(self._script)}
        self._env |= self._extra_env
        for name in SERVICES:
            self._spawn(name, name)
        self.ensure_workers(workers, wait=False)
        self._wait_ready(list(self.procs))

    def ensure_workers(self, count: int, wait: bool = True) -> list[str]:
        """Start workers until ``count`` run (replacing killed ones); the ids of the new ones."""
        new = []
        while len(self.workers) < count:
            self._workers_started += 1
            worker_id = f"worker-{self._workers_started}"
            self._spawn(worker_id, "worker", "--id", worker_id)
            new.append(worker_id)
        if wait and new:
            self._wait_ready(new)
        return new

    def kill(self, name: str) -> None:
        """SIGKILL one process (a crash: nothing is released)."""
        proc = self.procs[name]
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        """Start service ``name`` ("ingest" or "publisher") again on its port (after :meth:`kill`)."""
        if self.procs[name].poll() is None:
            self.kill(name)
        self._spawn(name, name)
        self._wait_ready([name])

    def pids(self) -> dict[str, int]:
        """Process id of Redis and of every service and worker still running, by name."""
        running = {name: p.pid for name, p in self.procs.items() if p.poll() is None}
        return ({"redis": self._server.pid} if self._server is not None else {}) | running

    def log_tail(self, name: str, chars: int = 1500) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def close(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after a grace period, stop Redis."""
        procs, self.procs = list(self.procs.values()), {}
        try:
            for proc in procs:
                _signal_group(proc, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=10)
        finally:
            if self._server is not None:
                self._server.close()
                self._server = None

    def _spawn(self, name: str, *args: str) -> None:
        with (self.workdir / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "wsp.cli", *args],
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_ready(self, names: list[str]) -> None:
        pending = set(names)
        deadline = time.monotonic() + START_TIMEOUT_S
        with redis.Redis.from_url(self.redis_url) as db, httpx.Client(timeout=2) as http:
            while pending:
                for name in sorted(pending):
                    if self.procs[name].poll() is not None:
                        raise PipelineError(f"{name} exited at start-up: {self.log_tail(name)}")
                    if self._ready(name, db, http):
                        pending.discard(name)
                if pending and time.monotonic() > deadline:
                    late = sorted(pending)
                    raise PipelineError(f"{', '.join(late)} not ready in time: {self.log_tail(late[0])}")
                time.sleep(0.05)

    def _ready(self, name: str, db: redis.Redis, http: httpx.Client) -> bool:
        if name not in SERVICES:
            return db.zscore(keys.workers(), name) is not None
        base = self.ingest_url if name == "ingest" else self.publisher_url
        try:
            return http.get(base + "/healthz").status_code == 200
        except httpx.HTTPError:
            return False


# -- clients ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    """A caption event as a display got it, with its arrival time (``time.monotonic()``)."""

    at: float
    event: CaptionEvent


@dataclass
class Display:
    """A caption display on the publisher's WebSocket: :meth:`run` collects events until it closes."""

    url: str
    received: list[Received] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def finals(self, track: str | None = None) -> list[CaptionEvent]:
        return [
            r.event
            for r in self.received
            if r.event.type == "final" and (track is None or r.event.track == track)
        ]

    async def run(self, stop_after_finals: int | None = None) -> None:
        """Read until the publisher closes the connection (the session ended) or enough finals came."""
        async with connect(self.url, open_timeout=10) as ws:
            self.connected.set()
            async for raw in ws:
                self.received.append(Received(time.monotonic(), CaptionEvent.model_validate_json(raw)))
                if stop_after_finals is not None and len(self.finals()) >= stop_after_finals:
                    return

    async def wait_finals(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.finals()) < count:
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"the display got {len(self.finals())} finals in {timeout_s} s, not {count}"
                )
            await asyncio.sleep(0.02)


def audio_for(words: list[Word]) -> bytes:
    """PCM s16le of silence as long as the script plus a second (the scripted engine hears the script)."""
    seconds = words[-1].end + 1.0
    return float_to_pcm16(np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32))


def stream(audio_url: str, pcm: bytes) -> asyncio.Task[Any]:
    """Send ``pcm`` through the ingest WebSocket at real-time pace, in frames of :data:`FRAME_S`, then end."""
    return asyncio.create_task(push_audio(audio_url, pcm, round(FRAME_S * SAMPLE_RATE) * 2, realtime=True))
