"""The Redis data contract and the socket messages: key names, what each script stores and answers, fencing.

What is stored is read back here with raw Redis commands and literal field names, so a change of the
layout that ingest, workers and publishers of different versions share cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
import json

import fakeredis
import pytest

from common.contract import captions, keys, sessions
from common.schemas import (
    AUDIO_REPLY,
    CAPTIONS_MESSAGE,
    AudioAck,
    AudioEnd,
    AudioEnded,
    AudioReady,
    CaptionEvent,
    ErrorMessage,
    SessionRecord,
    TrackSpec,
)

SID = "s-1"


def final(text: str, now: float = 1.5) -> CaptionEvent:
    return CaptionEvent(type="final", track="ja", text=text, start=0.25, end=1.0, emitted_at=now)


# -- key layout ---------------------------------------------------------------------------------
def test_every_key_of_a_session_carries_its_id_as_a_hash_tag() -> None:
    assert keys.session(SID) == "wsp:{s-1}:session"
    assert keys.audio(SID) == "wsp:{s-1}:audio"
    assert keys.captions(SID) == "wsp:{s-1}:captions"
    assert keys.state(SID, "ja") == "wsp:{s-1}:state:ja"
    assert keys.seq(SID) == "wsp:{s-1}:seq"
    assert keys.lease(SID) == "wsp:{s-1}:lease"
    assert keys.epoch(SID) == "wsp:{s-1}:epoch"
    assert keys.live(SID) == "wsp:{s-1}:live"
    assert keys.sid_of_live(keys.live(SID)) == SID
    assert keys.live_pattern() == "wsp:*:live"
    assert keys.session_keys(SID, ["ja", "en"]) == [
        "wsp:{s-1}:session",
        "wsp:{s-1}:audio",
        "wsp:{s-1}:captions",
        "wsp:{s-1}:seq",
        "wsp:{s-1}:epoch",
        "wsp:{s-1}:state:ja",
        "wsp:{s-1}:state:en",
    ]


def test_the_deployment_wide_keys() -> None:
    assert keys.sessions_active() == "wsp:sessions:active"
    assert keys.workers() == "wsp:workers"
    assert keys.worker("host-1-abc") == "wsp:worker:host-1-abc"


@pytest.mark.parametrize("bad", ["", "a{b}", "a:b", "a b", "x" * 65, "é"])
def test_an_id_that_could_break_a_key_name_is_refused(bad: str) -> None:
    with pytest.raises(keys.InvalidId):
        keys.session(bad)


def test_a_track_is_named_by_its_language() -> None:
    assert keys.state(SID, "zh-hant") == "wsp:{s-1}:state:zh-hant"
    with pytest.raises(keys.InvalidId):
        keys.state(SID, "JA")


# -- the caption codec --------------------------------------------------------------------------
def test_a_final_is_stored_as_its_canonical_json_whatever_its_seq() -> None:
    event = final('今日は「晴れ」"です"')
    head, tail = captions.final_template(event)
    for seq in (1, 42, 10**9):
        stored = head + str(seq) + tail
        assert stored == captions.encode(event.model_copy(update={"seq": seq}))
        decoded = captions.decode(stored.encode())
        assert decoded is not None and decoded.event.seq == seq and decoded.text == stored


def test_an_unreadable_caption_is_skipped() -> None:
    assert captions.decode(b"{not json") is None
    assert captions.decode(b'{"type": "final"}') is None


# -- socket messages ----------------------------------------------------------------------------
def test_the_audio_socket_messages_keep_the_shape_the_microphone_page_reads() -> None:
    assert json.loads(AudioReady(samples=5).model_dump_json()) == {"type": "ready", "samples": 5}
    assert json.loads(AudioAck(samples=6).model_dump_json()) == {"type": "ack", "samples": 6}
    assert json.loads(AudioEnded(samples=7).model_dump_json()) == {"type": "ended", "samples": 7}
    refusal = json.loads(ErrorMessage(code="replaced", message="another connection").model_dump_json())
    assert refusal == {"type": "error", "code": "replaced", "message": "another connection"}
    assert isinstance(AUDIO_REPLY.validate_json('{"type": "ack", "samples": 3}'), AudioAck)
    assert isinstance(
        AUDIO_REPLY.validate_json('{"type": "error", "code": "c", "message": "m"}'), ErrorMessage
    )
    assert AudioEnd.model_validate_json('{"type": "end", "reason": "stop pressed"}').type == "end"


def test_the_captions_socket_carries_events_and_refusals() -> None:
    event = CAPTIONS_MESSAGE.validate_json(captions.encode(final("はい").model_copy(update={"seq": 3})))
    assert isinstance(event, CaptionEvent) and event.seq == 3
    refusal = CAPTIONS_MESSAGE.validate_json('{"type": "error", "code": "unknown_track", "message": "m"}')
    assert isinstance(refusal, ErrorMessage)


# -- the session record through its scripts (fakeredis: Redis semantics without a server) -----------
def test_a_session_reads_back_as_created_and_one_past_capacity_leaves_nothing() -> None:
    def record(sid: str) -> SessionRecord:
        tracks = [TrackSpec(name="ja"), TrackSpec(name="en", task="translate")]
        return SessionRecord(
            id=sid, title="Concert", language="ja", tracks=tracks, glossary=["Bach"], created_at=1.5
        )

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        hashes = {sessions.READ_TOKEN_SHA256: "r" * 64, sessions.AUDIO_TOKEN_SHA256: "a" * 64}
        assert await sessions.create(redis, record("s-first"), hashes, max_sessions=2)
        assert await sessions.create(redis, record("s-second"), {}, max_sessions=2)
        assert not await sessions.create(redis, record("s-third"), {}, max_sessions=2)
        assert await redis.exists(keys.session("s-third")) == 0  # refused: nothing kept
        assert [sid for sid, _ in await sessions.active(redis)] == ["s-first", "s-second"]

        view = await sessions.load(redis, "s-first")
        assert view is not None and (view.samples, view.audio_ended) == (0, False)
        assert view.record == record("s-first")
        assert await sessions.token_hashes(redis, "s-first") == hashes
        assert (await sessions.start_audio(redis, "s-first", "writer-1")).verdict is sessions.AudioVerdict.OK
        started = await sessions.load(redis, "s-first")
        assert started is not None and started.record.status == "streaming"
        assert await sessions.load(redis, "s-unknown") is None
        await redis.hset(keys.session("s-second"), sessions.RECORD, '{"schema_version": 2}')
        with pytest.raises(sessions.UnreadableSession):
            await sessions.load(redis, "s-second")
        await redis.aclose()

    asyncio.run(scenario())
