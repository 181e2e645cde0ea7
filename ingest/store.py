"""The session store of the ingest service: its sessions and their audio, through the Redis contract.

What is stored, and every script that writes it, belongs to :mod:`common.contract.sessions`; here the
contract's verdicts become the errors the HTTP and WebSocket handlers answer with.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from common.audio import SAMPLE_RATE
from common.contract import clients, leases, sessions
from common.contract.sessions import SessionView
from common.errors import WspError
from common.schemas import SessionActivity, SessionRecord, SessionSummary

log = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2
"""PCM s16le, mono."""


class SessionMissing(WspError):
    """No session with this id exists."""


class SessionClosed(WspError):
    """The session's audio has ended (or the session itself has): nothing more may be appended."""


class AtCapacity(WspError):
    """The deployment already has ``WSP_MAX_SESSIONS`` sessions open: a new one is refused."""


class WriterReplaced(WspError):
    """Another connection started streaming this session's audio; this one may no longer write."""


class TooFast(WspError):
    """The session's audio would run ahead of its pace; nothing of the chunk was stored."""

    def __init__(self, message: str, allowed_samples: int) -> None:
        super().__init__(message)
        self.allowed_samples = allowed_samples
        """What the session may send at once now."""


class TooManyForClient(WspError):
    """This client address already has ``WSP_MAX_SESSIONS_PER_CLIENT`` sessions open."""


def stream_maxlen(max_audio_s: float, frame_samples: int) -> int:
    """How many stream entries hold ``max_audio_s`` of audio when chunks have ``frame_samples`` samples.

    Used as the approximate ``MAXLEN``; one extra entry leaves room for the ``end`` marker.
    """
    return math.ceil(max_audio_s * SAMPLE_RATE / max(1, frame_samples)) + 1


def _samples(reply: sessions.AudioReply, sid: str) -> int:
    """The reply's sample count, or the error its verdict stands for."""
    verdict = reply.verdict
    if verdict is sessions.AudioVerdict.MISSING:
        raise SessionMissing(f"no session {sid!r}: create one with POST /v1/sessions first")
    if verdict is sessions.AudioVerdict.CLOSED:
        raise SessionClosed(f"the audio of session {sid!r} has already ended; create a new session")
    if verdict is sessions.AudioVerdict.REPLACED:
        raise WriterReplaced(f"another connection is now streaming the audio of session {sid!r}")
    if verdict is sessions.AudioVerdict.TOO_FAST:
        raise TooFast(f"the audio of session {sid!r} runs ahead of its pace", reply.samples)
    if verdict is sessions.AudioVerdict.OUT_OF_STEP:
        raise WriterReplaced(
            f"the audio of session {sid!r} is at sample {reply.samples}, not where this connection was"
        )
    return reply.samples


class SessionStore:
    """Reads and writes one Redis (``redis.asyncio``) on behalf of the HTTP and WebSocket handlers."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._creating = asyncio.Lock()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def create(
        self,
        record: SessionRecord,
        token_hashes: Mapping[str, str] | None = None,
        max_sessions: int | None = None,
        client: ClientQuota | None = None,
    ) -> None:
        """Store the session (with its tokens' hashes) and announce it to the workers.

        With ``max_sessions``, the session is refused (:class:`AtCapacity`, nothing kept) when that many
        sessions are open; with ``client``, when that client has its most sessions open
        (:class:`TooManyForClient`). Creations through one store are taken one at a time, so a client's
        count cannot be passed by requests sent together.
        """
        sid = record.id
        async with self._creating:
            if client is not None and await clients.open_sessions(self._redis, client.id) >= client.most:
                raise TooManyForClient(
                    f"this address already has {client.most} sessions open; end one (or let an unused one "
                    "expire) before creating another"
                )
            if not await sessions.create(self._redis, record, token_hashes or {}, max_sessions):
                raise AtCapacity(
                    f"the service is at capacity: {max_sessions} sessions are open; "
                    "try again when one has ended"
                )
            if client is not None:
                await clients.remember(self._redis, client.id, sid, record.created_at, client.keep_ms)
        tracks = [t.name for t in record.tracks]
        log.info("session %s created (%s, tracks %s)", sid, record.language, tracks, extra={"session": sid})

    async def token_hashes(self, sid: str) -> dict[str, str | None]:
        """The SHA-256 of the session's tokens (None where the session has none)."""
        return await sessions.token_hashes(self._redis, sid)

    async def get(self, sid: str) -> SessionView | None:
        return await sessions.load(self._redis, sid)

    async def start(self, sid: str, writer: str) -> int:
        """Make ``writer`` the session's only audio writer; returns the samples accepted so far."""
        return _samples(await sessions.start_audio(self._redis, sid, writer), sid)

    async def append(
        self,
        sid: str,
        writer: str,
        pcm: bytes,
        maxlen: int,
        at_sample: int | None = None,
        pace: sessions.Pace | None = None,
    ) -> int:
        """Append one chunk of PCM; returns the absolute index of its first sample.

        ``at_sample``: where the writer knows the chunk starts. Given, the append is idempotent: sent twice
        (a retry after a lost reply), the chunk is stored once. ``pace``: :class:`TooFast` (nothing
        stored) when the chunk would take the session's audio past it.
        """
        samples = len(pcm) // BYTES_PER_SAMPLE
        reply = await sessions.append_audio(
            self._redis, sid, writer, pcm, samples, maxlen, time.time(), at_sample, pace
        )
        return _samples(reply, sid)

    async def end(self, sid: str, writer: str) -> int:
        """Append the single ``end`` entry; returns the total number of samples of the session."""
        total = _samples(await sessions.end_audio(self._redis, sid, writer, time.time()), sid)
        log.info("session %s audio ended after %d samples", sid, total, extra={"session": sid})
        return total

    async def end_for_operator(self, sid: str) -> bool:
        """End a session's audio whoever streams it (its captions are flushed as usual); False when it
        had already ended. :class:`SessionMissing` when there is no such session."""
        verdict = await sessions.end_unheld_audio(self._redis, sid, sessions.OPERATOR, None, time.time())
        if verdict is sessions.AudioVerdict.MISSING:
            raise SessionMissing(f"no session {sid!r}")
        if verdict is sessions.AudioVerdict.OK:
            log.info("session %s ended by the operator", sid, extra={"session": sid})
        return verdict is sessions.AudioVerdict.OK

    async def open_sessions(self) -> list[SessionSummary]:
        """Every open session with what it is doing, oldest first (the operator's list)."""
        active = await sessions.active(self._redis)
        found = await sessions.activities(self._redis, [sid for sid, _ in active])
        summaries = []
        for (sid, created), activity in zip(active, found, strict=True):
            view = await sessions.load(self._redis, sid)
            if activity is None or view is None or view.status == sessions.ENDED:
                continue
            worker = await leases.holder(self._redis, sid)
            summaries.append(
                SessionSummary(
                    id=sid,
                    title=view.record.title,
                    language=view.record.language,
                    tracks=[t.name for t in view.record.tracks],
                    status=view.status,
                    activity=_activity(view, activity, worker),
                    worker=worker,
                    created_at=created,
                    samples=view.samples,
                    idle_s=round(activity.idle_s(created), 1),
                )
            )
        return summaries


@dataclass(frozen=True)
class ClientQuota:
    """A client's bound on open sessions: its name in Redis, its most, how long its count is kept."""

    id: str
    most: int
    keep_ms: int


def _activity(view: SessionView, activity: sessions.Activity, worker: str | None) -> SessionActivity:
    if view.audio_ended:
        return "ending"
    if worker is not None:
        return "running"
    if activity.wants_worker:
        return "queued"
    return "waiting" if activity.newest is None else "paused"
