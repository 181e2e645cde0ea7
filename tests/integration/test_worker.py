"""ASR workers against a real Redis server, with a scripted engine: captions, crash takeover, handover."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from redis.asyncio import Redis

from asr_worker.core.seam import Segment, TranscribeRequest
from asr_worker.service.worker import Worker
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.schemas import CaptionEvent
from common.settings import Settings
from tests.worker_helpers import (
    CHUNK_S,
    captions,
    create_session,
    ended,
    epoch,
    finals_at_least,
    stop_worker,
    stream_audio,
    wait_until,
)

JA_TEXT = "皆さん こんばんは。 本日は 秋の 演奏会に ようこそ。 携帯電話の 電源を お切りください。 " * 2
TRANSLATION = "Good evening. Welcome to the concert. Please switch off. " * 2
"""What the translation hears: one English word in the time of each Japanese word, so that each Japanese
sentence's audio holds its English sentence (the translation track translates sentence by sentence)."""


@dataclass
class BilingualScript:
    """Hears the Japanese script when transcribing and the English one when translating."""

    ja: ScriptedTranscriber = field(
        default_factory=lambda: ScriptedTranscriber(ScriptedTranscriber.from_text(JA_TEXT), flip_last=True)
    )
    en: ScriptedTranscriber = field(
        default_factory=lambda: ScriptedTranscriber(ScriptedTranscriber.from_text(TRANSLATION), tail_s=0.0)
    )

    def transcribe(self, request: TranscribeRequest) -> list[Segment]:
        engine = self.en if request.options.task == "translate" else self.ja
        return engine.transcribe(request)

    def audio_s(self) -> float:
        return max(self.ja.timeline[-1].end, self.en.timeline[-1].end) + 1.0


def settings(url: str, worker_id: str, ttl_s: float = 1.0) -> Settings:
    return Settings(redis_url=url, worker_id=worker_id, lease_ttl_s=ttl_s, worker_capacity=2)


def worker(url: str, worker_id: str, ttl_s: float = 1.0) -> Worker:
    return Worker(settings(url, worker_id, ttl_s), lambda _: BilingualScript(), vad=False)


def assert_complete(events: list[CaptionEvent]) -> None:
    """Every scripted word once, in order, per track; seqs 1..N; one end event per track, last."""
    for track, text, joiner in (("ja", JA_TEXT, ""), ("en", TRANSLATION, " ")):
        mine = [e for e in events if e.track == track]
        finals = [e for e in mine if e.type == "final"]
        assert joiner.join(e.text for e in finals) == joiner.join(text.split()), track
        assert [e.seq for e in finals] == list(range(1, len(finals) + 1)), track
        assert [e.type for e in mine].count("end") == 1 and mine[-1].type == "end", track


def test_a_worker_captions_every_word_of_every_track_in_order(redis_url: str) -> None:
    async def scenario() -> list[CaptionEvent]:
        redis = Redis.from_url(redis_url)
        sid = "worker-basic"
        one = worker(redis_url, "w-basic")
        task = asyncio.create_task(one.run())
        try:
            await create_session(redis, sid)
            await stream_audio(redis, sid, BilingualScript().audio_s())
            await wait_until(lambda: ended(redis, sid))
            assert await redis.zscore(keys.sessions_active(), sid) is None
            await wait_until(lambda: _no_lease(redis, sid), timeout_s=5)
            return await captions(redis, sid)
        finally:
            await stop_worker(one, task)
            await redis.aclose()

    events = asyncio.run(scenario())
    assert_complete(events)
    assert all(e.type in ("final", "end") for e in events)


def test_a_crashed_worker_s_session_is_finished_by_another_without_loss_or_repeat(redis_url: str) -> None:
    async def scenario() -> tuple[list[CaptionEvent], int, Worker]:
        redis = Redis.from_url(redis_url)
        sid = "worker-crash"
        first, second = worker(redis_url, "w-first"), worker(redis_url, "w-second")
        first_task = asyncio.create_task(first.run())
        second_task: asyncio.Task[None] | None = None
        try:
            await create_session(redis, sid)
            writer = asyncio.create_task(stream_audio(redis, sid, BilingualScript().audio_s(), pace_s=0.04))
            await wait_until(lambda: finals_at_least(redis, sid, 3), timeout_s=30)
            second_task = asyncio.create_task(second.run())
            first_task.cancel()  # a crash: no release, the lease stays until it expires
            await asyncio.gather(first_task, return_exceptions=True)
            before_takeover = len(await captions(redis, sid))
            assert not await ended(redis, sid)
            await writer
            await wait_until(lambda: ended(redis, sid))
            assert await epoch(redis, sid) == 2
            events = await captions(redis, sid)
            assert len(events) > before_takeover
            return events, before_takeover, second
        finally:
            if second_task is not None:
                await stop_worker(second, second_task)
            await redis.aclose()

    events, _, second = asyncio.run(scenario())
    assert_complete(events)
    assert second.sessions_finished == 1


def test_a_stopping_worker_hands_its_session_over_at_once(redis_url: str) -> None:
    async def scenario() -> tuple[list[CaptionEvent], float]:
        redis = Redis.from_url(redis_url)
        sid = "worker-handover"
        ttl_s = 30.0  # far longer than the test: only a released lease moves this fast
        first, second = worker(redis_url, "w-leaving", ttl_s), worker(redis_url, "w-staying", ttl_s)
        first_task = asyncio.create_task(first.run())
        second_task: asyncio.Task[None] | None = None
        try:
            await create_session(redis, sid)
            writer = asyncio.create_task(stream_audio(redis, sid, BilingualScript().audio_s(), pace_s=0.04))
            await wait_until(lambda: finals_at_least(redis, sid, 3), timeout_s=30)
            await stop_worker(first, first_task)
            stopped_at = time.monotonic()
            second_task = asyncio.create_task(second.run())
            await writer
            await wait_until(lambda: ended(redis, sid), timeout_s=ttl_s / 2)
            return await captions(redis, sid), time.monotonic() - stopped_at
        finally:
            if second_task is not None:
                await stop_worker(second, second_task)
            await redis.aclose()

    events, took_s = asyncio.run(scenario())
    assert_complete(events)
    assert took_s < 15


async def _no_lease(redis: Redis, sid: str) -> bool:
    return not await redis.exists(keys.lease(sid))


def test_sessions_whose_audio_stops_are_ended_after_the_idle_time_and_free_their_place(
    redis_url: str,
) -> None:
    from ingest.store import SessionClosed, SessionStore

    async def scenario() -> list[CaptionEvent]:
        redis = Redis.from_url(redis_url)
        talk, abandoned = "worker-idle-talk", "worker-idle-never"
        quick = settings(redis_url, "w-idle").model_copy(update={"session_idle_s": 1.5})
        one = Worker(quick, lambda _: BilingualScript(), vad=False)
        task = asyncio.create_task(one.run())
        store = SessionStore(redis)
        chunk = float_to_pcm16(np.zeros(int(CHUNK_S * SAMPLE_RATE), dtype=np.float32))
        try:
            await create_session(redis, talk)
            await create_session(redis, abandoned)  # created, never streamed
            await store.start(talk, "microphone")
            for _ in range(int(BilingualScript().audio_s() / CHUNK_S) + 1):  # then silence: no end
                await store.append(talk, "microphone", chunk, maxlen=10_000)
            for sid in (talk, abandoned):
                await wait_until(lambda sid=sid: ended(redis, sid), timeout_s=30)  # type: ignore[misc]
                assert await redis.zscore(keys.sessions_active(), sid) is None
            with pytest.raises(SessionClosed):
                await store.append(talk, "microphone", chunk, maxlen=10_000)
            assert [e.type for e in await captions(redis, abandoned)] == ["end", "end"]
            return await captions(redis, talk)
        finally:
            await stop_worker(one, task)
            await redis.aclose()

    assert_complete(asyncio.run(scenario()))  # every word said before the silence was captioned
