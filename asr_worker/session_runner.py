"""One owned session: audio from its stream into one online processor per track, each step committed.

On a takeover each track resumes from its checkpoint: the processor state, and the audio re-read from
the stream entry that holds the start of its buffer. The model runs in a thread; every step of every
track is committed atomically under the session's fencing token (see :mod:`asr_worker.commit`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from asr_worker import audio_feed
from asr_worker.audio_feed import AudioEntry, ResumeIndex
from asr_worker.commit import Committer, TrackCommit, end_event, final_event, partial_event
from asr_worker.leases import Lease
from asr_worker.processor import OnlineProcessor, StepResult
from asr_worker.transcriber import Transcriber
from asr_worker.vad import SpeechDetector
from common import keys
from common.audio import SAMPLE_RATE
from common.errors import WspError
from common.options import StreamingOptions
from common.schemas import ProcessorState, SessionRecord, TrackCheckpoint, TrackSpec

log = logging.getLogger(__name__)

READ_COUNT = 64
"""Audio entries read at most per batch; one step per track follows each batch."""
READ_BLOCK_MS = 250
"""How long a read waits for new audio, so a stop request is noticed soon."""
MAX_GAP_S = 30.0
"""Most silence put in for audio that was trimmed from the stream before it was read."""

OptionsFor = Callable[[SessionRecord, TrackSpec], StreamingOptions]


class SessionGone(WspError):
    """The session has no record in Redis (expired or never created)."""


def track_options(record: SessionRecord, track: TrackSpec, vad: bool = True) -> StreamingOptions:
    """The contract's options of a track: the session's language and glossary, the track's task."""
    return StreamingOptions(
        language=record.language, task=track.task, glossary=tuple(record.glossary), vad=vad
    )


@dataclass
class TrackRun:
    """A track being streamed: its processor, how far it has been fed, what it last showed."""

    name: str
    processor: OnlineProcessor
    fed_until: int
    ended: bool = False
    last_partial: str = ""


class SessionRunner:
    """Runs one session this worker holds a lease on, until its end or until asked to stop."""

    def __init__(
        self,
        redis: Redis,
        lease: Lease,
        transcriber: Transcriber,
        options_for: OptionsFor,
        detector: SpeechDetector | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.redis = redis
        self.lease = lease
        self.sid = lease.sid
        self._transcriber = transcriber
        self._options_for = options_for
        self._detector = detector
        self._stopping = stopping or asyncio.Event()
        self._committer = Committer(redis)
        self._index = ResumeIndex()
        self._tracks: dict[str, TrackRun] = {}
        self.finished = False

    async def run(self) -> None:
        """Stream until the end entry (then the session is closed) or until ``stopping`` is set."""
        record = await self._load_record()
        resume_from = await self._load_tracks(record)
        log.info(
            "session %s: running tracks %s (epoch %d)",
            self.sid,
            ",".join(self._tracks),
            self.lease.token,
            extra={"sid": self.sid},
        )
        if all(t.ended for t in self._tracks.values()):
            await self._close()
            return
        stream = keys.audio(self.sid)
        entries = await audio_feed.read_range(self.redis, stream, resume_from, READ_COUNT)
        cursor = resume_from if resume_from != audio_feed.FIRST_ENTRY else "0-0"
        while not self._stopping.is_set():
            if entries:
                cursor = entries[-1].id
                if await self._consume(entries):
                    await self._close()
                    return
            entries = await audio_feed.read_after(self.redis, stream, cursor, READ_COUNT, READ_BLOCK_MS)
        log.info("session %s: stopped after the current step", self.sid, extra={"sid": self.sid})

    # -- setup ----------------------------------------------------------------------------------
    async def _load_record(self) -> SessionRecord:
        raw = await self.redis.hget(keys.session(self.sid), "record")
        if raw is None:
            raise SessionGone(f"session {self.sid} has no record")
        return SessionRecord.model_validate_json(raw)

    async def _load_tracks(self, record: SessionRecord) -> str:
        """Build each track's processor from its checkpoint; the entry id to re-read audio from."""
        names = [t.name for t in record.tracks]
        saved = await self.redis.mget([keys.state(self.sid, n) for n in names])
        resume_points = []
        for spec, raw in zip(record.tracks, saved, strict=True):
            checkpoint = TrackCheckpoint.model_validate_json(raw) if raw else fresh_checkpoint()
            options = self._options_for(record, spec)
            processor = OnlineProcessor(self._transcriber, options, self._detector, checkpoint.processor)
            start = checkpoint.processor.buffer_start_sample
            self._tracks[spec.name] = TrackRun(spec.name, processor, start, ended=checkpoint.ended)
            if not checkpoint.ended:
                resume_points.append(checkpoint.audio_from)
        return earliest(resume_points)

    # -- streaming ------------------------------------------------------------------------------
    async def _consume(self, entries: list[AudioEntry]) -> bool:
        """Feed a batch of entries to every track and step each; True when the end entry was reached."""
        for entry in entries:
            if entry.is_end:
                await self._finish_all()
                return True
            self._index.add(entry)
            for track in self._live_tracks():
                part = audio_feed.unseen_part(entry, track.fed_until, MAX_GAP_S)
                if part.size:
                    track.processor.insert_audio(part)
                    track.fed_until += part.size
        await self._step_all()
        return False

    def _live_tracks(self) -> list[TrackRun]:
        return [t for t in self._tracks.values() if not t.ended]

    async def _step_all(self) -> None:
        for track in self._live_tracks():
            if track.processor.ready():
                result = await asyncio.to_thread(track.processor.process_iter)
                await self._commit(track, result)
        starts = [round(t.processor.buffer_start_s * SAMPLE_RATE) for t in self._live_tracks()]
        if starts:
            self._index.forget_before(min(starts))

    async def _finish_all(self) -> None:
        for track in self._live_tracks():
            result = await asyncio.to_thread(track.processor.finish)
            track.ended = True
            await self._commit(track, result, end=True)

    async def _commit(self, track: TrackRun, result: StepResult, end: bool = False) -> None:
        options = track.processor.options
        state = track.processor.state()
        checkpoint = TrackCheckpoint(
            processor=state, audio_from=self._index.entry_for(state.buffer_start_sample), ended=end
        )
        finals = [final_event(track.name, result.committed, options.joiner)] if result.committed else []
        partial = None
        tail = partial_event(track.name, result.partial, options.joiner)
        if tail.text != track.last_partial:
            partial = tail
        commit = TrackCommit(track.name, checkpoint, finals, partial, end_event(track.name) if end else None)
        seqs = await self._committer.commit(self.lease, commit)
        track.last_partial = tail.text
        if seqs:
            log.debug("session %s track %s: finals %s", self.sid, track.name, seqs, extra={"sid": self.sid})

    async def _close(self) -> None:
        """Every track ended: mark the session ended and take it off the active set."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.session(self.sid), "status", "ended")
            pipe.zrem(keys.sessions_active(), self.sid)
            await pipe.execute()
        self.finished = True
        log.info("session %s: ended and flushed", self.sid, extra={"sid": self.sid})


def fresh_checkpoint() -> TrackCheckpoint:
    return TrackCheckpoint(
        processor=ProcessorState(buffer_start_sample=0, received_sample=0, last_step_sample=0)
    )


def earliest(entry_ids: list[str]) -> str:
    """The earliest of some stream entry ids (``-`` is the start of the stream)."""
    if not entry_ids or audio_feed.FIRST_ENTRY in entry_ids:
        return audio_feed.FIRST_ENTRY

    def order(eid: str) -> tuple[int, int]:
        ms, _, seq = eid.partition("-")
        return int(ms), int(seq or 0)

    return min(entry_ids, key=order)
