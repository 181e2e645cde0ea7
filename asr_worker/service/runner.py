"""One owned session: audio from its stream into one online processor per track, each step committed.

A translation track of a session that also has a transcript track is an interpreter: it follows the
transcript (it hears every word the transcript track commits, right after that commit) and translates it
sentence by sentence (:mod:`asr_worker.core.interpreter`); its checkpoint is saved with what it has heard.

On a takeover each track resumes from its checkpoint: the processor state, and the audio re-read from
the stream entry that holds the start of its buffer. The model runs in a thread; every step of every
track is committed atomically under the session's fencing token (see :mod:`asr_worker.service.commit`).

Back-pressure: a track whose unheard audio is older than ``max_lag_s`` commits its unstable tail, jumps to
the live edge of the stream and commits a ``skip`` event for the audio it passed over. The audio stream is
trimmed up to the earliest entry a track's saved checkpoint may still need; once the session has ended,
its audio is dropped and every key of the session expires after ``retention_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from asr_worker.core.interpreter import SentenceInterpreter
from asr_worker.core.processor import OnlineProcessor, StepResult
from asr_worker.core.seam import SpeechDetector, Transcriber, Translator
from asr_worker.service import audio_feed
from asr_worker.service.audio_feed import ResumeIndex
from asr_worker.service.commit import (
    Committer,
    TrackCommit,
    end_event,
    final_event,
    partial_event,
    skip_event,
)
from asr_worker.service.metrics import WorkerMetrics, entry_time
from asr_worker.transcribers.translator import WhisperTranslator
from common.audio import SAMPLE_RATE
from common.contract import audio, captions, sessions
from common.contract.audio import FIRST_ENTRY, NONE_SEEN, AudioEntry
from common.contract.leases import Lease
from common.errors import WspError
from common.options import StreamingOptions
from common.schemas import CaptionEvent, ProcessorState, SessionRecord, TrackCheckpoint, TrackSpec

log = logging.getLogger(__name__)

READ_COUNT = 64
"""Audio entries read at most per batch; one step per track follows each batch."""
READ_BLOCK_MS = 250
"""How long a read waits for new audio, so a stop request is noticed soon."""
MAX_GAP_S = 30.0
"""Most silence put in for audio that was trimmed from the stream before it was read."""

OptionsFor = Callable[[SessionRecord, TrackSpec], StreamingOptions]


@dataclass(frozen=True)
class RunLimits:
    """Back-pressure and retention of a session run (``WSP_MAX_LAG_S``, ``WSP_SESSION_RETENTION_S``)."""

    max_lag_s: float = 8.0
    retention_s: float = 24 * 3600.0
    idle_s: float = 7200.0
    """A session whose audio has not moved for this long is ended (0: never)."""
    park_s: float = 0.0
    """A session whose audio has not moved for this long is given back while another waits (0: never)."""


class SessionGone(WspError):
    """The session has no record in Redis (expired or never created)."""


def transcript_track(record: SessionRecord) -> str | None:
    """The session's transcript track, which its translation tracks follow (None if it has none)."""
    return next((t.name for t in record.tracks if t.task == "transcribe"), None)


def track_options(record: SessionRecord, track: TrackSpec, vad: bool = True) -> StreamingOptions:
    """The contract's options of a track: the session's language and glossary, the track's task."""
    return StreamingOptions(
        language=record.language, task=track.task, glossary=tuple(record.glossary), vad=vad
    )


@dataclass
class TrackRun:
    """A track being streamed: its processor, how far it has been fed, what it last showed."""

    name: str
    processor: OnlineProcessor | SentenceInterpreter
    fed_until: int
    ended: bool = False
    last_partial: str = ""
    saved_from: str = FIRST_ENTRY
    """The audio entry its saved checkpoint resumes from: nothing before it is needed any more."""
    follows: str | None = None
    """For an interpreter: the transcript track it translates."""


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
        metrics: WorkerMetrics | None = None,
        limits: RunLimits | None = None,
        others_wait: Callable[[], bool] | None = None,
        translator: Translator | None = None,
    ) -> None:
        """``translator`` translates the units of a translation track (default: Whisper's own translation
        with ``transcriber``'s model)."""
        self.redis = redis
        self.lease = lease
        self.sid = lease.sid
        self._transcriber = transcriber
        self._translator = translator or WhisperTranslator(transcriber)
        self._options_for = options_for
        self._detector = detector
        self._stopping = stopping or asyncio.Event()
        self._committer = Committer(redis)
        self._index = ResumeIndex()
        self._tracks: dict[str, TrackRun] = {}
        self._limits = limits or RunLimits()
        self._trimmed_to = FIRST_ENTRY
        self.skips = 0
        self._metrics = metrics or WorkerMetrics()
        self._batch_samples = 0
        self._newest_entry: str | None = None
        self._others_wait = others_wait or (lambda: False)
        self._moved = time.monotonic()
        self.finished = False
        self.parking = False
        """The session is being given back (or was): its lease goes away on purpose."""

    def resumed(self, lease: Lease) -> SessionRunner:
        """A fresh runner of the same session under ``lease``: it starts again from the saved checkpoints."""
        return SessionRunner(
            self.redis,
            lease,
            self._transcriber,
            self._options_for,
            self._detector,
            self._stopping,
            metrics=self._metrics,
            limits=self._limits,
            others_wait=self._others_wait,
            translator=self._translator,
        )

    def silent_s(self) -> float:
        """How long no new audio has arrived for this session: since its newest entry reached Redis, so a
        session taken over (or claimed) long after its audio stopped is not silent for only that long."""
        return time.monotonic() - self._moved

    async def run(self) -> None:
        """Stream until the end entry (then the session is closed) or until ``stopping`` is set."""
        record = await self._load_record()
        resume_from = await self._load_tracks(record)
        log.info(
            "session %s: running tracks %s (epoch %d)",
            self.sid,
            ",".join(self._tracks),
            self.lease.token,
            extra={"session": self.sid},
        )
        if all(t.ended for t in self._tracks.values()):
            await self._close()
            return
        entries = await audio.read_range(self.redis, self.sid, resume_from, READ_COUNT)
        cursor = resume_from if resume_from != FIRST_ENTRY else NONE_SEEN
        self._moved = time.monotonic()
        while not self._stopping.is_set():
            if entries:
                cursor, self._moved = entries[-1].id, arrival(entries[-1].id)
                if await self._consume(entries):
                    await self._close()
                    return
            elif self._limits.idle_s and self.silent_s() > self._limits.idle_s:
                await self._end_idle(cursor)
                self._moved = time.monotonic()
            elif self._parkable() and await self._park(cursor):
                return
            entries = await audio.read_after(self.redis, self.sid, cursor, READ_COUNT, READ_BLOCK_MS)
        log.info("session %s: stopped after the current step", self.sid, extra={"session": self.sid})

    def _parkable(self) -> bool:
        park_s = self._limits.park_s
        return bool(park_s) and self.silent_s() > park_s and self._others_wait()

    async def _park(self, seen: str) -> bool:
        """Give the session back while its audio has stopped and another one waits for a place."""
        self.parking = True
        if await sessions.park(self.redis, self.lease, seen):
            log.info(
                "session %s: no audio for %.1f s while another session waits: given back until audio resumes",
                self.sid,
                self.silent_s(),
                extra={"session": self.sid},
            )
            return True
        self.parking = False
        return False

    async def _end_idle(self, seen: str) -> None:
        """No audio for ``idle_s``: end the session's audio (the end entry then closes it as usual)."""
        if await sessions.end_idle_audio(self.redis, self.lease, seen, time.time()):
            log.warning(
                "session %s: no audio for %.0f s, ending it",
                self.sid,
                self._limits.idle_s,
                extra={"session": self.sid},
            )

    # -- setup ----------------------------------------------------------------------------------
    async def _load_record(self) -> SessionRecord:
        view = await sessions.load(self.redis, self.sid)
        if view is None:
            raise SessionGone(f"session {self.sid} has no record")
        return view.record

    async def _load_tracks(self, record: SessionRecord) -> str:
        """Build each track's processor from its checkpoint; the entry id to re-read audio from."""
        saved = await captions.checkpoints(self.redis, self.sid, [t.name for t in record.tracks])
        resume_points = []
        source = transcript_track(record)
        # the transcript first: an interpreter steps after the track it follows
        order = sorted(zip(record.tracks, saved, strict=True), key=lambda pair: pair[0].task != "transcribe")
        for spec, found in order:
            checkpoint = found or fresh_checkpoint()
            options = self._options_for(record, spec)
            processor: OnlineProcessor | SentenceInterpreter
            follows = source if spec.task == "translate" and record.language != "en" else None
            if follows is not None:
                processor = SentenceInterpreter(
                    self._translator, options, checkpoint.processor, detector=self._detector
                )
            else:
                processor = OnlineProcessor(self._transcriber, options, self._detector, checkpoint.processor)
            start = checkpoint.processor.buffer_start_sample
            self._tracks[spec.name] = TrackRun(
                spec.name,
                processor,
                start,
                ended=checkpoint.ended,
                saved_from=checkpoint.audio_from,
                follows=follows,
            )
            if not checkpoint.ended:
                resume_points.append(checkpoint.audio_from)
        return earliest(resume_points)

    # -- streaming ------------------------------------------------------------------------------
    async def _consume(self, entries: list[AudioEntry]) -> bool:
        """Feed a batch of entries to every track and step each; True when the end entry was reached."""
        await self._catch_up(entries)
        for entry in entries:
            if entry.is_end:
                await self._finish_all()
                return True
            self._index.add(entry)
            self._batch_samples += entry.samples.size
            self._newest_entry = entry.id
            for track in self._live_tracks():
                part = audio_feed.unseen_part(entry, track.fed_until, MAX_GAP_S)
                if part.size:
                    track.processor.insert_audio(part)
                    track.fed_until += part.size
                    self._metrics.audio_seconds.inc(part.size / SAMPLE_RATE)
        await self._step_all()
        return False

    def _live_tracks(self) -> list[TrackRun]:
        return [t for t in self._tracks.values() if not t.ended]

    async def _step_all(self) -> None:
        compute_s = 0.0
        for track in self._live_tracks():
            if track.processor.ready():
                started = time.perf_counter()
                result = await asyncio.to_thread(track.processor.process_iter)
                took = time.perf_counter() - started
                compute_s += took
                self._metrics.step_seconds.observe(took)
                self._metrics.compute_seconds.inc(took)
                await self._commit(track, result)
                await self._pass_on(track, result)
        self._metrics.batch(self.sid, self._batch_samples / SAMPLE_RATE, compute_s, self._newest_entry)
        self._batch_samples = 0
        starts = [round(t.processor.buffer_start_s * SAMPLE_RATE) for t in self._live_tracks()]
        if starts:
            self._index.forget_before(min(starts))
        await self._trim_audio()

    async def _pass_on(self, track: TrackRun, result: StepResult, settled: bool | None = None) -> None:
        """The interpreters following ``track`` hear what it committed; their checkpoints keep it."""
        for follower in self._live_tracks():
            if follower.follows != track.name or not isinstance(follower.processor, SentenceInterpreter):
                continue
            tail_start = result.partial[0].start if result.partial else None
            quiet = not result.partial if settled is None else settled
            follower.processor.hear(result.committed, quiet, tail_start)
            if result.committed:
                await self._commit(follower, StepResult())

    async def _catch_up(self, entries: list[AudioEntry]) -> None:
        """Tracks too far behind real time jump to the live edge, and say so in the caption stream."""
        newest = await audio.newest(self.redis, self.sid)
        if newest is None:
            return
        edge = newest.sample_end
        lags = {
            t.name: audio_feed.lag_s(entries, t.processor.heard_sample, newest.id)
            for t in self._live_tracks()
        }
        for track in self._live_tracks():
            if lags[track.name] <= self._limits.max_lag_s or edge <= track.processor.heard_sample:
                continue
            skip = track.processor.skip_to(edge)
            track.fed_until = max(track.fed_until, edge)
            log.warning(
                "session %s track %s: %.1f s behind real time, skipping %.2f-%.2f s",
                self.sid,
                track.name,
                lags[track.name],
                skip.start_s,
                skip.end_s,
                extra={"session": self.sid},
            )
            event = skip_event(track.name, skip.start_s, skip.end_s)
            await self._commit(track, StepResult(committed=skip.committed), skip=event)
            await self._pass_on(track, StepResult(committed=skip.committed), settled=True)
            self.skips += 1

    async def _trim_audio(self) -> None:
        """Drop the audio entries before the earliest one a live track's saved checkpoint resumes from."""
        keep = earliest([t.saved_from for t in self._live_tracks()])
        if keep in (FIRST_ENTRY, self._trimmed_to):
            return
        trimmed = await self._committer.trim_audio(self.lease, keep)
        self._trimmed_to = keep
        if trimmed:
            log.debug("session %s: %d audio entries trimmed", self.sid, trimmed, extra={"session": self.sid})

    async def _finish_all(self) -> None:
        for track in self._live_tracks():
            result = await asyncio.to_thread(track.processor.finish)
            track.ended = True
            await self._commit(track, result, end=True)
            await self._pass_on(track, result, settled=True)

    async def _commit(
        self, track: TrackRun, result: StepResult, end: bool = False, skip: CaptionEvent | None = None
    ) -> None:
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
        commit = TrackCommit(
            track.name, checkpoint, finals, partial, end_event(track.name) if end else None, skip
        )
        seqs = await self._committer.commit(self.lease, commit)
        track.last_partial = tail.text
        track.saved_from = checkpoint.audio_from
        self._count(commit, seqs, result)
        if seqs:
            log.debug(
                "session %s track %s: finals %s", self.sid, track.name, seqs, extra={"session": self.sid}
            )

    def _count(self, commit: TrackCommit, seqs: list[int], result: StepResult) -> None:
        """Metrics of one commit: captions by type, and how long after its audio arrived a final came."""
        arrived = None
        if result.committed:
            last_sample = round(result.committed[-1].end * SAMPLE_RATE)
            arrived = entry_time(self._index.entry_for(last_sample))
        self._metrics.committed(arrived, len(seqs))
        if commit.partial is not None:
            self._metrics.captions.labels("partial").inc()
        if commit.end is not None:
            self._metrics.captions.labels("end").inc()

    async def _close(self) -> None:
        """Every track ended: mark the session ended, take it off the active set, let its data expire.

        The audio is no longer needed (only the end marker is kept); captions stay for replay and export
        until the retention time has passed. Fenced like every write of the runner.
        """
        retention_ms = max(1, round(self._limits.retention_s * 1000))
        await sessions.close(self.redis, self.lease, list(self._tracks), retention_ms)
        self.finished = True
        log.info("session %s: ended and flushed", self.sid, extra={"session": self.sid})


def arrival(entry_id: str) -> float:
    """When an audio entry reached Redis, on this process's monotonic clock (now, at the latest).

    The entry's id carries the Redis server's clock; a clock of this host that runs behind it only makes
    the entry look newer than it is.
    """
    ms = audio_feed.entry_ms(entry_id)
    age_s = 0.0 if ms is None else max(0.0, time.time() - ms / 1000)
    return time.monotonic() - age_s


def fresh_checkpoint() -> TrackCheckpoint:
    return TrackCheckpoint(
        processor=ProcessorState(buffer_start_sample=0, received_sample=0, last_step_sample=0)
    )


def earliest(entry_ids: list[str]) -> str:
    """The earliest of some stream entry ids (``-`` is the start of the stream)."""
    if not entry_ids or FIRST_ENTRY in entry_ids:
        return FIRST_ENTRY

    def order(eid: str) -> tuple[int, int]:
        ms, _, seq = eid.partition("-")
        return int(ms), int(seq or 0)

    return min(entry_ids, key=order)
