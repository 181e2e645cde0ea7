"""The worker's atomic commit and lease decisions: gap-free seqs, fencing, resume points."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from asr_worker.core.words import Word
from asr_worker.service.commit import (
    Committer,
    Fenced,
    TrackCommit,
    end_event,
    final_event,
    partial_event,
)
from asr_worker.service.leases import Lease, Leases
from asr_worker.service.runner import fresh_checkpoint
from common.contract import keys
from common.schemas import CaptionEvent, ProcessorState, TrackCheckpoint
from tests.worker_helpers import captions


def words(*texts: str, start: float = 0.0) -> list[Word]:
    return [Word(start + i, start + i + 0.5, t) for i, t in enumerate(texts)]


def step(track: str, *texts: str, received: int = 16000, partial: str = "") -> TrackCommit:
    state = ProcessorState(buffer_start_sample=0, received_sample=received, last_step_sample=received)
    finals = [final_event(track, words(t), " ") for t in texts]
    tail = partial_event(track, words(partial) if partial else [], " ")
    return TrackCommit(track, TrackCheckpoint(processor=state, audio_from="5-0"), finals, tail)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- against a real Redis server -----------------------------------------------------------------
def test_commits_number_finals_without_gaps_and_save_the_state(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        try:
            sid = "commit-seq"
            lease = await Leases(redis, "w1", ttl_s=5).claim(sid)
            assert lease is not None
            committer = Committer(redis)
            assert await committer.commit(lease, step("en", "one", "two", partial="thr")) == [1, 2]
            assert await committer.commit(lease, step("en", received=32000)) == []
            assert await committer.commit(lease, step("en", "three", received=48000)) == [3]
            assert await committer.commit(lease, step("ja", "一")) == [1]
            done = TrackCommit("en", fresh_checkpoint(), [], None, end_event("en"))
            assert await committer.commit(lease, done) == []

            events = await captions(redis, sid)
            assert [(e.type, e.track, e.seq, e.text) for e in events] == [
                ("final", "en", 1, "one"),
                ("final", "en", 2, "two"),
                ("final", "en", 3, "three"),
                ("final", "ja", 1, "一"),
                ("end", "en", None, ""),
            ]
            raw: Any = await redis.get(keys.state(sid, "ja"))
            saved = TrackCheckpoint.model_validate_json(raw)
            assert saved.processor.received_sample == 16000 and saved.audio_from == "5-0"
        finally:
            await redis.aclose()

    run(scenario())


def test_finals_and_partials_are_published_live(redis_url: str) -> None:
    async def scenario() -> list[CaptionEvent]:
        redis = Redis.from_url(redis_url)
        pubsub = redis.pubsub()
        try:
            sid = "commit-live"
            await pubsub.subscribe(keys.live(sid))
            await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
            lease = await Leases(redis, "w1", ttl_s=5).claim(sid)
            assert lease is not None
            await Committer(redis).commit(lease, step("en", "hello", partial="wor"))
            got = []
            for _ in range(2):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
                assert message is not None
                got.append(CaptionEvent.model_validate_json(message["data"]))
            return got
        finally:
            await pubsub.aclose()
            await redis.aclose()

    final, partial = run(scenario())
    assert (final.type, final.seq, final.text) == ("final", 1, "hello")
    assert (partial.type, partial.seq, partial.text) == ("partial", None, "wor")


def test_a_worker_that_lost_its_session_can_never_write(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        try:
            sid = "commit-fenced"
            old = await Leases(redis, "old", ttl_s=0.3).claim(sid)
            assert old is not None
            committer = Committer(redis)
            assert await committer.commit(old, step("en", "a")) == [1]
            await asyncio.sleep(0.5)  # the old worker stalls past its lease
            new_leases = Leases(redis, "new", ttl_s=5)
            new = await new_leases.claim(sid)
            assert new is not None and new.token == old.token + 1
            state_before = await redis.get(keys.state(sid, "en"))

            with pytest.raises(Fenced):
                await committer.commit(old, step("en", "stale", received=99))
            # even holding the lease key again, a stale epoch is refused
            stale = Lease(sid, "new", old.token)
            with pytest.raises(Fenced):
                await committer.commit(stale, step("en", "stale", received=99))
            assert not await Leases(redis, "old", ttl_s=5).renew(old)
            assert not await Leases(redis, "old", ttl_s=5).release(old)

            assert await redis.get(keys.state(sid, "en")) == state_before
            assert await committer.commit(new, step("en", "b", received=32000)) == [2]
            assert [e.text for e in await captions(redis, sid)] == ["a", "b"]
            assert await new_leases.release(new)
            assert await redis.exists(keys.lease(sid)) == 0
        finally:
            await redis.aclose()

    run(scenario())


def test_a_commit_sent_again_after_a_lost_reply_writes_nothing_twice(redis_url: str) -> None:
    """A connection that fails after the script ran makes the client send it again: no duplicate."""

    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        try:
            sid = "commit-retry"
            lease = await Leases(redis, "w1", ttl_s=5).claim(sid)
            assert lease is not None
            committer = Committer(redis)
            once = step("en", "one", "two", received=16000)
            assert await committer.commit(lease, once) == [1, 2]
            assert await committer.commit(lease, once) == []
            assert await committer.commit(lease, step("en", "three", received=32000)) == [3]
            assert [(e.seq, e.text) for e in await captions(redis, sid)] == [
                (1, "one"),
                (2, "two"),
                (3, "three"),
            ]
        finally:
            await redis.aclose()

    run(scenario())
