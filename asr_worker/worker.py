"""The ASR worker: claims sessions up to its capacity, runs each, keeps its leases alive.

Graceful stop (SIGTERM/SIGINT, or :meth:`Worker.stop`): stop claiming, let every session finish and
commit its current step, release the leases so another worker takes the sessions over at once, close.
A worker that dies instead simply stops renewing: its sessions move when their leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import signal
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asr_worker.commit import Fenced
from asr_worker.leases import Lease, Leases, Room, claim_quota, default_worker_id
from asr_worker.session_runner import SessionRunner, track_options
from asr_worker.transcriber import Transcriber
from asr_worker.vad import SileroDetector, SpeechDetector
from common.errors import WspError
from common.redis_conn import require_url
from common.settings import Settings

log = logging.getLogger(__name__)

TranscriberFactory = Callable[[Settings], Transcriber]

CLAIM_INTERVAL_S = 0.2
"""How often a worker with room looks for sessions nobody runs."""
HEARTBEATS_PER_TTL = 3
"""Lease renewals per lease TTL: two may be missed before the lease expires."""
STOP_DEADLINE_S = 30.0
"""On a graceful stop, how long sessions may take to finish their current step before being cancelled."""
FAILED_BACKOFF_S = 30.0
"""A session whose run failed is not claimed again by this worker for this long."""
CONNECT_ATTEMPTS = 5
"""Tries to reach Redis at start-up before giving up with a clear error."""
CONNECT_RETRY_S = 1.0
"""Mean pause between those tries (jittered)."""
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


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
    ) -> None:
        self.settings = settings
        self.id = settings.worker_id or default_worker_id()
        self.capacity = settings.worker_capacity
        self._factory = transcriber_factory
        self._vad = vad
        self._stopping = asyncio.Event()
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._leases_held: dict[str, Lease] = {}
        self._backoff: dict[str, float] = {}
        self.sessions_finished = 0

    @property
    def owned(self) -> list[str]:
        return list(self._runners)

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
        redis = Redis.from_url(require_url(self.settings.redis_url))
        background: list[asyncio.Task[None]] = []
        try:
            transcriber = await asyncio.to_thread(self._factory, self.settings)
            detector: SpeechDetector | None = SileroDetector() if self._vad else None
            leases = Leases(redis, self.id, self.settings.lease_ttl_s)
            await _first_contact(leases, self.capacity, self.settings.redis_url or "")
            log.info("worker %s: up, capacity %d", self.id, self.capacity)
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
            for task in [*background, *self._runners.values()]:
                task.cancel()
            await asyncio.gather(*background, *self._runners.values(), return_exceptions=True)
            await redis.aclose()

    # -- loops ----------------------------------------------------------------------------------
    async def _heartbeat(self, leases: Leases) -> None:
        interval = self.settings.lease_ttl_s / HEARTBEATS_PER_TTL
        while True:
            try:
                await leases.advertise(self.capacity, len(self._runners))
                for sid, lease in list(self._leases_held.items()):
                    if not await leases.renew(lease) and sid in self._runners:
                        log.warning("session %s: lease lost, dropping it", sid, extra={"sid": sid})
                        self._runners[sid].cancel()
            except TRANSIENT as exc:
                log.warning("worker %s: heartbeat failed (%s), retrying", self.id, exc)
            await asyncio.sleep(interval)

    async def _claim_loop(self, leases: Leases, start: Callable[[Lease], None]) -> None:
        grace_s = self.settings.lease_ttl_s
        while not self._stopping.is_set():
            try:
                if len(self._runners) < self.capacity:
                    await self._claim_some(leases, start, grace_s)
            except TRANSIENT as exc:
                log.warning("worker %s: claiming failed (%s), retrying", self.id, exc)
            await asyncio.sleep(CLAIM_INTERVAL_S)

    async def _claim_some(self, leases: Leases, start: Callable[[Lease], None], grace_s: float) -> None:
        candidates = await leases.unowned_sessions(self._runners)
        if not candidates:
            return
        others = await leases.other_rooms()
        now = time.time()
        for sid, created in candidates:
            me = Room(self.id, self.capacity, len(self._runners))
            if self._stopping.is_set() or self._backoff.get(sid, 0.0) > now:
                continue
            if claim_quota(me, others, now - created, grace_s) <= 0:
                continue
            lease = await leases.claim(sid)
            if lease is not None:
                log.info("session %s: claimed (epoch %d)", sid, lease.token, extra={"sid": sid})
                start(lease)

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
        runner = SessionRunner(redis, lease, transcriber, options_for, detector, self._stopping)
        self._leases_held[lease.sid] = lease
        self._runners[lease.sid] = asyncio.create_task(self._run_session(leases, runner))

    async def _run_session(self, leases: Leases, runner: SessionRunner) -> None:
        sid = runner.sid
        try:
            await runner.run()
        except Fenced as exc:
            log.warning("%s; dropping it", exc, extra={"sid": sid})
            return
        except TRANSIENT as exc:
            log.warning("session %s: redis failed (%s); giving it back", sid, exc, extra={"sid": sid})
        except Exception:  # one broken session must not take the worker down
            log.exception("session %s: failed; giving it back", sid, extra={"sid": sid})
            self._backoff[sid] = time.time() + FAILED_BACKOFF_S
        finally:
            self._runners.pop(sid, None)
            lease = self._leases_held.pop(sid)
        if runner.finished:
            self.sessions_finished += 1
        await _release_quietly(leases, lease)

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


async def _first_contact(leases: Leases, capacity: int, url: str) -> None:
    """Advertise the worker, retrying a few times with jitter while Redis comes up."""
    for remaining in range(CONNECT_ATTEMPTS - 1, -1, -1):
        try:
            await leases.advertise(capacity, 0)
            return
        except TRANSIENT as exc:
            if not remaining:
                raise RedisUnavailable(f"cannot reach redis at {url}: {exc}") from exc
            log.warning("redis at %s not reachable (%s); %d retries left", url, exc, remaining)
            await asyncio.sleep(CONNECT_RETRY_S * (0.5 + random.random()))


async def _release_quietly(leases: Leases, lease: Lease) -> None:
    with contextlib.suppress(*TRANSIENT):
        if await leases.release(lease):
            log.info("session %s: lease released", lease.sid, extra={"sid": lease.sid})
