"""The ASR worker: claims sessions up to its capacity, runs each, keeps its leases alive.

A place goes only to a session with audio to process. A worker also looks after the sessions nobody
runs: one whose audio has not moved for too long is ended (a test never streamed, a page closed), and
when one waits for a place while this worker is full, a session of its own whose audio has stopped for
``WSP_SESSION_PARK_S`` is given back (it goes on with the next free worker once its audio resumes).

Graceful stop (SIGTERM/SIGINT, or :meth:`Worker.stop`): stop claiming, let every session finish and
commit its current step, release the leases so another worker takes the sessions over at once, close.
A worker that dies instead simply stops renewing: its sessions move when their leases expire.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import random
import signal
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asr_worker.core.seam import SpeechDetector, Transcriber
from asr_worker.service.leases import (
    Candidate,
    Leases,
    Room,
    claim_order,
    claim_quota,
    default_worker_id,
    idle_limit_s,
)
from asr_worker.service.metrics import WorkerMetrics
from asr_worker.service.runner import RunLimits, SessionRunner, track_options
from asr_worker.transcribers.silero import SileroDetector
from common import eventloop
from common.contract.leases import Fenced, Lease
from common.errors import WspError
from common.redis_conn import async_client, require_url
from common.retry import backoff_s, cancelling, reraise_if_cancelling
from common.settings import Settings

log = logging.getLogger(__name__)

TranscriberFactory = Callable[[Settings], Transcriber]

CLAIM_INTERVAL_S = 0.2
"""How often a worker with room (or a session it could give back) looks at the sessions nobody runs."""
SWEEP_INTERVAL_S = 1.0
"""How often a full worker looks at them otherwise (to end the idle ones)."""
HEARTBEATS_PER_TTL = 3
"""Lease renewals per lease TTL: two may be missed before the lease expires."""
STOP_DEADLINE_S = 30.0
"""On a graceful stop, how long sessions may take to finish their current step before being cancelled."""
CANCEL_DEADLINE_S = 10.0
"""How long the worker's own tasks may take to unwind once cancelled before it exits without them."""
FAILED_BACKOFF_S = 30.0
"""A session whose run failed is not claimed again by this worker for this long."""
CONNECT_ATTEMPTS = 5
"""Tries to reach Redis at start-up before giving up with a clear error."""
CONNECT_RETRY_S = 1.0
"""Mean pause between those tries (jittered)."""
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, OutOfMemoryError)
"""Failures a worker rides out with backoff: Redis unreachable, or full for a moment (ingest stops taking
audio before that, WSP_REDIS_MEMORY_HIGH, so the room left is the captions')."""
SESSION_RETRIES = 8
"""Times a session resumes after a Redis failure (jittered backoff, about 20 s in all) before giving up."""


class RedisUnavailable(WspError):
    """The worker cannot reach its Redis server."""


class Worker:
    """One worker process: ``await Worker(settings, make_transcriber).run()``."""

    def __init__(
        self,
        settings: Settings,
        transcriber_factory: TranscriberFactory,
        *,
        vad: bool = True,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.id = settings.worker_id or default_worker_id()
        self.capacity = settings.worker_capacity
        self._factory = transcriber_factory
        self._vad = vad
        self._stopping = asyncio.Event()
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._sessions: dict[str, SessionRunner] = {}
        """The runner each task of :attr:`_runners` runs now (a resumed run replaces it)."""
        self._leases_held: dict[str, Lease] = {}
        self._others_wait = False
        """A live session (someone speaking) waited for a place at the last look, and this worker had none."""
        self._backoff: dict[str, float] = {}
        self.sessions_finished = 0
        self.metrics = metrics or WorkerMetrics()
        self.metrics.sessions_active.set_function(lambda: len(self._runners))
        self.last_heartbeat: float | None = None
        """``time.monotonic()`` of the last heartbeat Redis accepted (None until the first)."""

    @property
    def owned(self) -> list[str]:
        return list(self._runners)

    def health(self) -> tuple[bool, str]:
        """Whether this worker is up and its heartbeat reaches Redis, and a sentence saying so."""
        if self._stopping.is_set():
            return False, f"worker {self.id} is stopping"
        if self.last_heartbeat is None:
            return False, f"worker {self.id} is starting (loading the model, reaching Redis)"
        silent = time.monotonic() - self.last_heartbeat
        if silent > self.settings.lease_ttl_s:
            return False, f"worker {self.id}: no heartbeat reached Redis for {silent:.1f} s"
        return True, f"worker {self.id}: {len(self._runners)}/{self.capacity} sessions"

    def stop(self) -> None:
        """Ask for a graceful stop (safe to call from a signal handler on the loop)."""
        if not self._stopping.is_set():
            log.info("worker %s: stopping", self.id)
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)

    async def run(self) -> None:
        """Work until :meth:`stop`; cancelling this task instead is a crash (leases are kept to expire)."""
        redis = async_client(require_url(self.settings.redis_url))
        background: list[asyncio.Task[None]] = []
        try:
            transcriber = await asyncio.to_thread(self._factory, self.settings)
            detector: SpeechDetector | None = SileroDetector() if self._vad else None
            leases = Leases(redis, self.id, self.settings.lease_ttl_s)
            await _first_contact(leases, self.capacity, self.settings.redis_url or "")
            self.last_heartbeat = time.monotonic()
            log.info("worker %s: up, capacity %d", self.id, self.capacity)
            eventloop.freeze_startup_objects()  # the model and the modules stay for life
            start = functools.partial(self._start_session, redis, leases, transcriber, detector)
            background = [
                asyncio.create_task(self._heartbeat(leases)),
                asyncio.create_task(self._claim_loop(leases, start)),
            ]
            await self._stopping.wait()
            await self._drain(leases)
            await leases.withdraw()
            log.info("worker %s: stopped", self.id)
        finally:
            await _cancel_all(self.id, [*background, *self._runners.values()])
            await redis.aclose()

    # -- loops ----------------------------------------------------------------------------------
    async def _heartbeat(self, leases: Leases) -> None:
        interval = self.settings.lease_ttl_s / HEARTBEATS_PER_TTL
        while True:
            try:
                await leases.advertise(self.capacity, len(self._runners))
                self.last_heartbeat = time.monotonic()
                for sid, lease in list(self._leases_held.items()):
                    if not await leases.renew(lease) and sid in self._runners and not self._handing_back(sid):
                        log.warning("session %s: lease lost, dropping it", sid, extra={"session": sid})
                        self.metrics.leases_lost.inc()
                        self._runners[sid].cancel()
            except TRANSIENT as exc:
                reraise_if_cancelling()
                log.warning("worker %s: heartbeat failed (%s), retrying", self.id, exc)
            _stop_if_cancelled(self.id, "heartbeat")
            await asyncio.sleep(interval)

    async def _claim_loop(self, leases: Leases, start: Callable[[Lease], None]) -> None:
        grace_s = self.settings.lease_ttl_s
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._look_around(leases, start, grace_s)
                failures = 0
            except TRANSIENT as exc:
                reraise_if_cancelling()
                failures += 1
                log.warning("worker %s: claiming failed (%s), retry %d", self.id, exc, failures)
            _stop_if_cancelled(self.id, "claim loop")
            busy = len(self._runners) >= self.capacity and not self._could_give_back()
            await asyncio.sleep(
                backoff_s(failures) if failures else SWEEP_INTERVAL_S if busy else CLAIM_INTERVAL_S
            )

    async def _look_around(self, leases: Leases, start: Callable[[Lease], None], grace_s: float) -> None:
        """End the idle sessions nobody runs, note whether one waits for a place, claim what fits."""
        candidates = await leases.unowned_sessions(self._runners)
        await self._end_idle(leases, candidates)
        wanting = [c for c in candidates if c.activity.wants_worker]
        live, stale = claim_order(wanting, self.settings.session_park_s)
        self._others_wait = bool(live) and len(self._runners) >= self.capacity
        if wanting and len(self._runners) < self.capacity:
            await self._claim_some(leases, start, grace_s, [*live, *stale])

    async def _end_idle(self, leases: Leases, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            if candidate.activity.wants_worker:
                continue
            limit = idle_limit_s(
                candidate.activity, self.settings.session_idle_s, self.settings.session_start_s
            )
            idle = candidate.activity.idle_s(candidate.created_at)
            if limit is None or idle < limit or self._stopping.is_set():
                continue
            if await leases.end_idle(candidate):
                never = " (it never streamed)" if candidate.activity.newest is None else ""
                log.warning(
                    "session %s: no audio for %.0f s%s, ending it",
                    candidate.sid,
                    idle,
                    never,
                    extra={"session": candidate.sid},
                )

    async def _claim_some(
        self, leases: Leases, start: Callable[[Lease], None], grace_s: float, candidates: list[Candidate]
    ) -> None:
        others = await leases.other_rooms()
        now = time.time()
        for candidate in candidates:
            sid = candidate.sid
            me = Room(self.id, self.capacity, len(self._runners))
            if self._stopping.is_set() or self._backoff.get(sid, 0.0) > now:
                continue
            if claim_quota(me, others, now - candidate.created_at, grace_s) <= 0:
                continue
            lease = await leases.claim(sid)
            if lease is not None:
                log.info("session %s: claimed (epoch %d)", sid, lease.token, extra={"session": sid})
                if lease.token > 1:
                    self.metrics.takeovers.inc()
                start(lease)

    def _could_give_back(self) -> bool:
        """Whether a session of this worker has gone without audio long enough to be given back."""
        park_s = self.settings.session_park_s
        return bool(park_s) and any(r.silent_s() >= park_s for r in self._sessions.values())

    def _handing_back(self, sid: str) -> bool:
        runner = self._sessions.get(sid)
        return runner is not None and runner.parking

    # -- sessions -------------------------------------------------------------------------------
    def _start_session(
        self,
        redis: Redis,
        leases: Leases,
        transcriber: Transcriber,
        detector: SpeechDetector | None,
        lease: Lease,
    ) -> None:
        options_for = functools.partial(track_options, vad=self._vad)
        limits = RunLimits(
            self.settings.max_lag_s,
            self.settings.session_retention_s,
            self.settings.session_idle_s,
            self.settings.session_park_s,
        )
        runner = SessionRunner(
            redis,
            lease,
            transcriber,
            options_for,
            detector,
            self._stopping,
            metrics=self.metrics,
            limits=limits,
            others_wait=lambda: self._others_wait,
        )
        self._leases_held[lease.sid] = lease
        self._runners[lease.sid] = asyncio.create_task(self._run_session(leases, runner))

    async def _run_session(self, leases: Leases, runner: SessionRunner) -> None:
        sid = runner.sid
        try:
            runner = await self._run_resuming(leases, runner)
        except Fenced as exc:
            log.warning("%s; dropping it", exc, extra={"session": sid})
            self.metrics.leases_lost.inc()
            return
        except TRANSIENT as exc:
            reraise_if_cancelling()
            log.warning("session %s: redis failed (%s); giving it back", sid, exc, extra={"session": sid})
        except Exception:  # one broken session must not take the worker down
            log.exception("session %s: failed; giving it back", sid, extra={"session": sid})
            self._backoff[sid] = time.time() + FAILED_BACKOFF_S
        finally:
            self._runners.pop(sid, None)
            self._sessions.pop(sid, None)
            lease = self._leases_held.pop(sid)
            self.metrics.forget(sid)
        if runner.finished:
            self.sessions_finished += 1
            self.metrics.sessions_finished.inc()
        await _release_quietly(leases, lease)

    async def _run_resuming(self, leases: Leases, runner: SessionRunner) -> SessionRunner:
        """Run a session; after a Redis failure wait (jittered backoff), re-check the lease and resume.

        The resumed run starts from the checkpoints saved in Redis, exactly like a takeover, so nothing
        committed is lost or repeated. The runner that finished is returned.
        """
        attempt = 0
        while True:
            try:
                if attempt:
                    runner = runner.resumed(await self._recheck_lease(leases, runner.lease))
                self._sessions[runner.sid] = runner
                await runner.run()
                return runner
            except TRANSIENT as exc:
                reraise_if_cancelling()
                attempt += 1
                if attempt > SESSION_RETRIES or self._stopping.is_set():
                    raise
                pause = backoff_s(attempt)
                log.warning(
                    "session %s: redis failed (%s); resuming in %.1f s (%d tries left)",
                    runner.sid,
                    exc,
                    pause,
                    SESSION_RETRIES - attempt,
                    extra={"session": runner.sid},
                )
                await asyncio.sleep(pause)

    async def _recheck_lease(self, leases: Leases, lease: Lease) -> Lease:
        """After an outage: keep the lease if it is still ours, else claim the session again if free."""
        if await leases.renew(lease):
            return lease
        fresh = await leases.claim(lease.sid)
        if fresh is None:
            raise Fenced(f"session {lease.sid}: another worker took it during the outage")
        log.info("session %s: claimed again (epoch %d)", lease.sid, fresh.token, extra={"session": lease.sid})
        self._leases_held[lease.sid] = fresh
        return fresh

    async def _drain(self, leases: Leases) -> None:
        """Graceful stop: sessions finish their current step and release their leases."""
        running = list(self._runners.values())
        if not running:
            return
        done, pending = await asyncio.wait(running, timeout=STOP_DEADLINE_S)
        held = dict(self._leases_held)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for lease in held.values():
            await _release_quietly(leases, lease)
        log.info("worker %s: %d sessions handed back", self.id, len(done) + len(pending))


def _stop_if_cancelled(worker_id: str, loop: str) -> None:
    """At each turn of a loop: stop if the task was cancelled and a call inside the turn returned instead of
    raising (a client library may swallow a cancellation that reaches it at the wrong moment)."""
    if cancelling():
        log.warning(
            "worker %s: %s cancelled (a call returned through the cancellation); stopping", worker_id, loop
        )
        raise asyncio.CancelledError


async def _cancel_all(worker_id: str, tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them to unwind, but not forever: a task that does not end within
    ``CANCEL_DEADLINE_S`` (a library that swallowed the cancellation) is reported, with where it is stuck,
    and left behind, so a worker asked to stop always stops."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    done, stuck = await asyncio.wait(tasks, timeout=CANCEL_DEADLINE_S)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("worker %s: a task failed", worker_id, exc_info=task.exception())
    for task in stuck:
        where = io.StringIO()
        task.print_stack(file=where)
        log.error(
            "worker %s: a task did not stop within %.0f s of its cancellation; leaving it\n%s",
            worker_id,
            CANCEL_DEADLINE_S,
            where.getvalue(),
        )


async def _first_contact(leases: Leases, capacity: int, url: str) -> None:
    """Advertise the worker, retrying a few times with jitter while Redis comes up."""
    for remaining in range(CONNECT_ATTEMPTS - 1, -1, -1):
        try:
            await leases.advertise(capacity, 0)
            return
        except TRANSIENT as exc:
            reraise_if_cancelling()
            if not remaining:
                raise RedisUnavailable(f"cannot reach redis at {url}: {exc}") from exc
            log.warning("redis at %s not reachable (%s); %d retries left", url, exc, remaining)
            await asyncio.sleep(CONNECT_RETRY_S * (0.5 + random.random()))


async def _release_quietly(leases: Leases, lease: Lease) -> None:
    try:
        if await leases.release(lease):
            log.info("session %s: lease released", lease.sid, extra={"session": lease.sid})
    except TRANSIENT:
        reraise_if_cancelling()
