"""The Redis data contract and the socket messages: key names, what each script stores and answers, fencing.

What is stored is read back here with raw Redis commands and literal field names, so a change of the
layout that ingest, workers and publishers of different versions share cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from common.contract import audio, captions, keys, leases, sessions
from common.contract.leases import Fenced, Lease
from common.contract.sessions import AudioVerdict
from common.schemas import (
    CaptionEvent,
    ProcessorState,
    SessionRecord,
    TrackCheckpoint,
    TrackSpec,
)

TOKENS = {"audio_token_sha256": "a" * 64, "read_token_sha256": "b" * 64}
RETENTION_MS = 60_000


def run(redis_url: str, scenario: Callable[[Redis], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        client = Redis.from_url(redis_url)
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def record(sid: str, tracks: tuple[str, ...] = ("ja",)) -> SessionRecord:
    return SessionRecord(
        id=sid, language="ja", tracks=[TrackSpec(name=t) for t in tracks], created_at=time.time()
    )


async def streaming(redis: Redis, sid: str, tracks: tuple[str, ...] = ("ja",)) -> None:
    """A session whose microphone ("mic") has sent its first 160 samples (at unix time 1.0)."""
    await sessions.create(redis, record(sid, tracks), TOKENS)
    await sessions.start_audio(redis, sid, "mic")
    await sessions.append_audio(redis, sid, "mic", bytes(320), 160, 100, 1.0, 0)


def entries(rows: Any) -> list[dict[str, bytes]]:
    return [{k.decode(): v for k, v in fields.items()} for _, fields in rows]


def checkpoint(received: int) -> TrackCheckpoint:
    state = ProcessorState(buffer_start_sample=0, received_sample=received, last_step_sample=received)
    return TrackCheckpoint(processor=state)


def final(text: str, now: float = 1.5) -> CaptionEvent:
    return CaptionEvent(type="final", track="ja", text=text, start=0.25, end=1.0, emitted_at=now)


# -- the session hash ---------------------------------------------------------------------------
def test_a_new_session_is_stored_announced_and_read_back_with_its_status(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        sid, new = "contract-create", record("contract-create")
        assert await sessions.create(redis, new, TOKENS)
        stored: Any = await redis.hgetall(keys.session(sid))
        assert set(stored) == {
            b"record",
            b"status",
            b"samples",
            b"audio_ended",
            b"audio_token_sha256",
            b"read_token_sha256",
        }
        assert (stored[b"status"], stored[b"samples"], stored[b"audio_ended"]) == (b"open", b"0", b"0")
        assert "status" not in json.loads(stored[b"record"])  # kept once, in its own field
        assert await redis.zscore(keys.sessions_active(), sid) == pytest.approx(new.created_at)
        view = await sessions.load(redis, sid)
        assert view is not None and view.record == new and view.status == "open"
        assert (view.samples, view.audio_ended) == (0, False)
        assert await sessions.token_hashes(redis, sid) == TOKENS

        assert (await sessions.start_audio(redis, sid, "mic")).verdict is AudioVerdict.OK
        assert await redis.hget(keys.session(sid), "status") == b"streaming"
        view = await sessions.load(redis, sid)
        assert view is not None and view.record.status == "streaming"

        assert await sessions.load(redis, "contract-nobody") is None
        await redis.hset(keys.session("contract-odd"), "record", '{"id": 5}')
        with pytest.raises(sessions.UnreadableSession):
            await sessions.load(redis, "contract-odd")

    run(redis_url, scenario)


def test_a_session_beyond_the_limit_leaves_nothing_behind(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        open_now = await redis.zcard(keys.sessions_active())
        assert await sessions.create(redis, record("contract-room"), TOKENS, max_sessions=open_now + 1)
        assert not await sessions.create(redis, record("contract-full"), TOKENS, max_sessions=open_now + 1)
        assert not await redis.exists(keys.session("contract-full"))
        assert await redis.zscore(keys.sessions_active(), "contract-full") is None

    run(redis_url, scenario)


# -- the audio scripts --------------------------------------------------------------------------
def test_audio_entries_are_numbered_by_sample_stored_once_and_end_once(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        sid = "contract-audio"
        await sessions.create(redis, record(sid), TOKENS)
        chunk = bytes(3200)

        async def append(writer: str, at_sample: int | None) -> sessions.AudioReply:
            return await sessions.append_audio(redis, sid, writer, chunk, 1600, 100, 12.5, at_sample)

        assert await sessions.start_audio(redis, sid, "mic") == sessions.AudioReply(AudioVerdict.OK, 0)
        assert await append("mic", 0) == sessions.AudioReply(AudioVerdict.OK, 0)
        assert await append("mic", 0) == sessions.AudioReply(AudioVerdict.OK, 0)  # a retry: stored once
        assert await append("mic", None) == sessions.AudioReply(AudioVerdict.OK, 1600)
        assert await append("mic", 0) == sessions.AudioReply(AudioVerdict.OUT_OF_STEP, 3200)
        assert (await append("old", 3200)).verdict is AudioVerdict.REPLACED
        stored: Any = await redis.xrange(keys.audio(sid))
        assert entries(stored) == [
            {"kind": b"audio", "sample0": b"0", "pcm": chunk, "at": b"12.5"},
            {"kind": b"audio", "sample0": b"1600", "pcm": chunk, "at": b"12.5"},
        ]
        assert await redis.hget(keys.session(sid), "samples") == b"3200"
        parsed = [audio.parse_entry(eid, fields) for eid, fields in stored]
        assert [(e.sample0, e.sample_end, e.is_end) for e in parsed] == [
            (0, 1600, False),
            (1600, 3200, False),
        ]

        assert await sessions.end_audio(redis, sid, "old", 20.0) == sessions.AudioReply(
            AudioVerdict.REPLACED, 0
        )
        assert await sessions.end_audio(redis, sid, "mic", 20.0) == sessions.AudioReply(AudioVerdict.OK, 3200)
        assert await sessions.end_audio(redis, sid, "mic", 21.0) == sessions.AudioReply(AudioVerdict.OK, 3200)
        stored = await redis.xrange(keys.audio(sid))
        assert entries(stored)[2:] == [{"kind": b"end", "sample0": b"3200", "at": b"20.0"}]
        end = audio.parse_entry(*stored[-1])
        assert end.is_end and end.sample0 == 3200
        assert await redis.hmget(keys.session(sid), ["audio_ended", "audio_ended_at"]) == [b"1", b"20.0"]
        view = await sessions.load(redis, sid)
        assert view is not None and view.audio_ended and view.status == "streaming"
        assert (await append("mic", 3200)).verdict is AudioVerdict.CLOSED
        assert (await sessions.start_audio(redis, sid, "new")).verdict is AudioVerdict.CLOSED
        for reply in (
            await sessions.start_audio(redis, "contract-none", "mic"),
            await sessions.append_audio(redis, "contract-none", "mic", chunk, 1600, 100, 1.0, None),
            await sessions.end_audio(redis, "contract-none", "mic", 1.0),
        ):
            assert reply.verdict is AudioVerdict.MISSING
        assert not await redis.exists(keys.audio("contract-none"))

    run(redis_url, scenario)


def test_the_idle_end_is_the_same_end_entry_given_only_while_nothing_arrives(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        sid = "contract-idle"
        await streaming(redis, sid)
        newest = await audio.newest(redis, sid)
        assert newest is not None and newest.sample_end == 160
        owner = await leases.claim(redis, sid, "w1", 5000)
        assert owner is not None

        assert not await sessions.end_idle_audio(redis, owner, audio.NONE_SEEN, 2.0)  # audio came after
        with pytest.raises(Fenced):
            await sessions.end_idle_audio(redis, Lease(sid, "w0", owner.token), newest.id, 2.0)
        assert await redis.xlen(keys.audio(sid)) == 1
        assert await sessions.end_idle_audio(redis, owner, newest.id, 2.0)
        assert not await sessions.end_idle_audio(redis, owner, newest.id, 3.0)  # ended once
        stored: Any = await redis.xrange(keys.audio(sid))
        assert entries(stored)[1] == {"kind": b"end", "sample0": b"160", "at": b"2.0", "reason": b"idle"}
        marks = await redis.hmget(keys.session(sid), ["audio_ended", "ended_reason"])
        assert marks == [b"1", b"idle"]
        # the sender's own end finds the audio ended and gets its total; nothing is appended
        assert await sessions.end_audio(redis, sid, "mic", 4.0) == sessions.AudioReply(AudioVerdict.OK, 160)
        assert (await sessions.end_audio(redis, sid, "other", 4.0)).verdict is AudioVerdict.CLOSED
        assert (await sessions.append_audio(redis, sid, "mic", bytes(2), 1, 100, 5.0, 160)).verdict is (
            AudioVerdict.CLOSED
        )
        assert await redis.xlen(keys.audio(sid)) == 2

    run(redis_url, scenario)


# -- leases and fencing -------------------------------------------------------------------------
def test_every_claim_is_a_new_epoch_and_only_the_holder_renews_or_releases(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        sid = "contract-lease"
        first = await leases.claim(redis, sid, "w1", 5000)
        assert first == Lease(sid, "w1", 1)
        assert await leases.claim(redis, sid, "w2", 5000) is None
        assert await leases.holder(redis, sid) == "w1"
        assert await redis.pttl(keys.lease(sid)) > 4000
        assert not await leases.renew(redis, Lease(sid, "w2", 1), 5000)
        assert not await leases.release(redis, Lease(sid, "w1", 0))
        assert await leases.renew(redis, first, 9000) and await redis.pttl(keys.lease(sid)) > 8000
        assert await leases.release(redis, first)
        assert await leases.holder(redis, sid) is None
        second = await leases.claim(redis, sid, "w2", 5000)
        assert second == Lease(sid, "w2", 2) and await leases.epoch(redis, sid) == 2
        assert await leases.leased(redis, [sid, "contract-free"]) == [True, False]
        assert not await leases.renew(redis, first, 5000)  # the old token is fenced off for good

    run(redis_url, scenario)


def test_a_worker_advertises_its_room_until_it_withdraws(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        now = time.time()
        await leases.advertise(redis, "contract-w", 4, 1, "host-a", 5000, now, now - 60)
        assert await redis.hgetall(keys.worker("contract-w")) == {
            b"capacity": b"4",
            b"owned": b"1",
            b"host": b"host-a",
        }
        assert 0 < await redis.pttl(keys.worker("contract-w")) <= 5000
        assert await leases.last_heartbeat(redis, "contract-w") == pytest.approx(now)
        assert "contract-w" in await leases.seen_since(redis, now - 1)
        found = await leases.advertisements(redis, ["contract-w", "contract-gone"])
        assert found == [leases.Advertisement("contract-w", 4, 1, "host-a")]
        await leases.withdraw(redis, "contract-w")
        assert await leases.last_heartbeat(redis, "contract-w") is None
        assert not await redis.exists(keys.worker("contract-w"))

    run(redis_url, scenario)


def test_a_commit_stores_and_publishes_the_same_text_under_the_fence(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        sid = "contract-commit"
        owner = await leases.claim(redis, sid, "w1", 5000)
        assert owner is not None
        pubsub = redis.pubsub()
        await pubsub.subscribe(keys.live(sid))
        await pubsub.get_message(timeout=1.0)
        step = captions.TrackCommit(
            "ja",
            checkpoint(16000),
            [final("一つ"), final("二つ")],
            CaptionEvent(type="partial", track="ja", text="三", emitted_at=2.0),
        )
        assert await captions.commit(redis, owner, step) == [1, 2]
        assert await captions.commit(redis, owner, step) == []  # the same step again writes nothing
        with pytest.raises(Fenced):
            await captions.commit(
                redis, Lease(sid, "w1", owner.token - 1), captions.TrackCommit("ja", checkpoint(1))
            )
        stored: Any = await redis.xrange(keys.captions(sid))
        texts = [fields[b"event"].decode() for _, fields in stored]
        published = []
        for _ in range(3):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
            assert message is not None
            published.append(message["data"].decode())
        await pubsub.aclose()
        assert published[:2] == texts
        assert [CaptionEvent.model_validate_json(t).seq for t in texts] == [1, 2]
        assert all(t == captions.encode(CaptionEvent.model_validate_json(t)) for t in published)
        assert await redis.hget(keys.seq(sid), "ja") == b"2"
        assert await captions.checkpoints(redis, sid, ["ja", "en"]) == [checkpoint(16000), None]
        replayed = [c async for c in captions.history(redis, sid, None, page=1)]
        assert [c.text for c in replayed] == texts and [c.entry_id for c in replayed] == [
            eid.decode() for eid, _ in stored
        ]

    run(redis_url, scenario)


def test_the_audio_is_trimmed_only_by_the_sessions_owner(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        sid = "contract-trim"
        for n in range(3):
            await redis.xadd(keys.audio(sid), {"kind": "audio", "sample0": n, "pcm": b""})
        last = (await audio.read_range(redis, sid, audio.FIRST_ENTRY, 10))[-1].id
        owner = await leases.claim(redis, sid, "w1", 5000)
        assert owner is not None
        assert await audio.trim(redis, Lease(sid, "w0", owner.token), last) == 0
        assert await redis.xlen(keys.audio(sid)) == 3
        assert await audio.trim(redis, owner, last) == 2
        kept = await audio.read_range(redis, sid, audio.FIRST_ENTRY, 10)
        assert [e.id for e in kept] == [last]

    run(redis_url, scenario)


def test_the_close_is_fenced_and_leaves_an_ended_session_to_expire(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        sid = "contract-close"
        await streaming(redis, sid, ("ja", "en"))
        await sessions.end_audio(redis, sid, "mic", 2.0)
        owner = await leases.claim(redis, sid, "w1", 5000)
        assert owner is not None
        await captions.commit(redis, owner, captions.TrackCommit("ja", checkpoint(160), [final("はい")]))

        stale = Lease(sid, "w0", owner.token)
        with pytest.raises(Fenced):
            await sessions.close(redis, stale, ["ja", "en"], RETENTION_MS)
        assert await redis.hget(keys.session(sid), "status") == b"streaming"
        assert await redis.zscore(keys.sessions_active(), sid) is not None
        assert await redis.pttl(keys.session(sid)) == -1  # nothing set to expire

        await sessions.close(redis, owner, ["ja", "en"], RETENTION_MS)
        view = await sessions.load(redis, sid)
        assert view is not None and view.status == "ended"
        assert await redis.zscore(keys.sessions_active(), sid) is None
        assert entries(await redis.xrange(keys.audio(sid))) == [
            {"kind": b"end", "sample0": b"160", "at": b"2.0"}
        ]
        for key in keys.session_keys(sid, ["ja"]):
            assert 0 < await redis.pttl(key) <= RETENTION_MS, key
        assert await leases.holder(redis, sid) == "w1"  # its worker releases it next
        with pytest.raises(Fenced):
            await sessions.close(redis, Lease(sid, "w1", owner.token + 1), ["ja"], RETENTION_MS)

    run(redis_url, scenario)
