"""The ingest service against a real Redis server: sessions over HTTP, audio over the WebSocket."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from common.contract import keys
from common.settings import Settings
from ingest.app import create_app
from tests.served import Served, free_port
from tests.waiting import wait_until
from wsp.client import open_session, push_audio

MAX_FRAME = 3200


@pytest.fixture(scope="module")
def base(redis_url: str) -> Iterator[str]:
    """An ingest service on a free port, served by uvicorn in a thread."""
    port = free_port()
    settings = Settings(
        redis_url=redis_url,
        max_frame_bytes=MAX_FRAME,
        ingest_port=port,
        client_sessions_per_minute=1000,  # every session of this module comes from one address
        max_sessions_per_client=1000,
    )
    served = Served(
        lambda client: create_app(settings, client), redis_url, port, ws_max_size=1 << 20, lifespan="off"
    )
    yield served.base
    served.stop()


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


AUDIO_TOKENS: dict[str, str] = {}
"""The audio token of every session the tests created (the audio URLs below carry it)."""


def new_session(http: httpx.Client, **body: Any) -> str:
    response = http.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    sid = str(response.json()["id"])
    AUDIO_TOKENS[sid] = response.json()["audio_token"]
    return sid


def ws_url(base: str, sid: str) -> str:
    url = base.replace("http://", "ws://") + f"/v1/sessions/{sid}/audio"
    return url + (f"?token={AUDIO_TOKENS[sid]}" if sid in AUDIO_TOKENS else "")


def status(http: httpx.Client, sid: str) -> dict[str, Any]:
    response = http.get(f"/v1/sessions/{sid}", params={"token": AUDIO_TOKENS[sid]})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


_connections = ExitStack()


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    with _connections:
        yield


def opened(url: str) -> ClientConnection:
    """A client connection, closed at the end of the test."""
    return _connections.enter_context(connect(url, open_timeout=10))


def start(base: str, sid: str) -> ClientConnection:
    ws = opened(ws_url(base, sid))
    ws.send(json.dumps({"type": "start"}))
    return ws


def refusal(ws: ClientConnection) -> tuple[dict[str, Any], int | None]:
    """The error message the server sends, and the close code that follows it."""
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == "error":
            break
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return message, closed.value.rcvd.code if closed.value.rcvd else None


def audio_entries(db: redis.Redis, sid: str) -> list[dict[str, bytes]]:
    stored: list[tuple[bytes, dict[bytes, bytes]]] = db.xrange(keys.audio(sid))  # type: ignore[assignment]
    return [{k.decode(): v for k, v in fields.items()} for _, fields in stored]


def wait_entries(db: redis.Redis, sid: str, count: int) -> None:
    wait_until(lambda: len(audio_entries(db, sid)) >= count, 10, f"{count} audio entries to land")


def tone(samples: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32767, size=samples, dtype=np.int16).astype("<i2").tobytes()


# --- sessions over HTTP --------------------------------------------------------------------------


def test_create_session_has_default_track_and_is_announced(
    base: str, http: httpx.Client, db: redis.Redis
) -> None:
    response = http.post("/v1/sessions", json={"language": "ja", "title": "Concert"})
    assert response.status_code == 201
    body = response.json()
    sid = body["id"]
    keys.check_session_id(sid)
    assert body["record"]["tracks"] == [{"name": "ja", "task": "transcribe"}]
    assert body["record"]["language"] == "ja" and body["record"]["title"] == "Concert"
    audio_token, read_token = body["audio_token"], body["read_token"]
    assert body["audio_url"] == f"{ws_url(base, sid)}?token={audio_token}"
    assert body["captions_url"].endswith(f"/v1/sessions/{sid}/captions?token={read_token}")
    assert body["display_url"].endswith(f"/v1/sessions/{sid}/display?token={read_token}")
    assert audio_token != read_token and len(audio_token) >= 32
    stored = db.hgetall(keys.session(sid))
    assert stored[b"status"] == b"open" and stored[b"samples"] == b"0"
    assert json.loads(stored[b"record"])["id"] == sid
    assert db.zscore(keys.sessions_active(), sid) is not None
    # Redis keeps only the tokens' hashes.
    assert stored[b"audio_token_sha256"] == hashlib.sha256(audio_token.encode()).hexdigest().encode()
    assert not [v for v in stored.values() if audio_token.encode() in v or read_token.encode() in v]

    got = http.get(f"/v1/sessions/{sid}", params={"token": read_token}).json()
    assert (got["status"], got["samples"], got["record"]["id"]) == ("open", 0, sid)
    assert "token" not in got["audio_url"] and "token" not in got["captions_url"]  # a lookup shows no secret


def test_translate_track_must_be_english(http: httpx.Client) -> None:
    ok = http.post(
        "/v1/sessions",
        json={"language": "ja", "tracks": [{"name": "ja"}, {"name": "en", "task": "translate"}]},
    )
    assert ok.status_code == 201
    assert [t["name"] for t in ok.json()["record"]["tracks"]] == ["ja", "en"]
    bad = http.post("/v1/sessions", json={"language": "ja", "tracks": [{"name": "fr", "task": "translate"}]})
    assert bad.status_code == 422
    assert bad.json()["type"] == "error" and "'en'" in bad.json()["message"]


@pytest.mark.parametrize("body", [{"language": "xx"}, {"language": "klingon"}, {"language": 5}])
def test_invalid_language_is_refused_clearly(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.post("/v1/sessions", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["type"] == "error" and "language" in error["message"]


def test_unknown_and_invalid_session_ids(http: httpx.Client) -> None:
    missing = http.get("/v1/sessions/nosuchsession", params={"token": "x" * 32})
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"  # says nothing more
    for bad in ["a%7D:x", "x" * 200, "a%20b"]:
        response = http.get(f"/v1/sessions/{bad}")
        assert response.status_code == 400, bad
        assert response.json()["code"] == "invalid_session_id"
    assert http.get("/v1/sessions/..%2Fx").status_code in (400, 404)
    assert http.get("/healthz").json() == {"ok": True}


# --- the audio WebSocket -------------------------------------------------------------------------


def test_unknown_session_without_its_token_is_refused_with_4401(base: str) -> None:
    message, code = refusal(start(base, "nosuchsession"))
    assert code == 4401 and message["code"] == "unauthorized"


@pytest.mark.parametrize("sid", ["a}:x", "x" * 200, "a b"])
def test_injected_session_ids_are_refused(base: str, db: redis.Redis, sid: str) -> None:
    from urllib.parse import quote

    message, code = refusal(start(base, quote(sid, safe="")))
    assert code == 4400 and message["code"] == "invalid_session_id"
    assert not db.keys("*" + sid[:5] + "*audio*")


def test_audio_before_start_is_refused(base: str, http: httpx.Client) -> None:
    ws = opened(ws_url(base, new_session(http)))
    ws.send(b"\x00\x00" * 10)
    message, code = refusal(ws)
    assert code == 4400 and message["code"] == "start_required"


def test_bad_start_message_is_refused(base: str, http: httpx.Client) -> None:
    ws = opened(ws_url(base, new_session(http)))
    ws.send(json.dumps({"type": "start", "sample_rate": 44100}))
    message, code = refusal(ws)
    assert code == 4400 and "sample_rate" in message["message"]


def test_odd_length_frame_is_refused_and_nothing_partial_is_stored(
    base: str, http: httpx.Client, db: redis.Redis
) -> None:
    sid = new_session(http)
    ws = start(base, sid)
    assert json.loads(ws.recv(timeout=10)) == {"type": "ready", "samples": 0}
    ws.send(b"\x01\x00\x02")
    message, code = refusal(ws)
    assert code == 4400 and message["code"] == "odd_frame"
    assert audio_entries(db, sid) == []


def test_oversized_frame_is_refused_with_4413(base: str, http: httpx.Client, db: redis.Redis) -> None:
    sid = new_session(http)
    ws = start(base, sid)
    ws.recv(timeout=10)
    ws.send(b"\x00" * (MAX_FRAME + 2))
    message, code = refusal(ws)
    assert code == 4413 and str(MAX_FRAME) in message["message"]
    assert audio_entries(db, sid) == []


def test_stream_lands_exactly_then_one_end_and_nothing_after(
    base: str, http: httpx.Client, db: redis.Redis
) -> None:
    sid = new_session(http)
    frames = [tone(n, seed) for seed, n in enumerate([1600, 800, 1, 1600, 1599])]
    ws = start(base, sid)
    assert json.loads(ws.recv(timeout=10))["type"] == "ready"
    for frame in frames:
        ws.send(frame)
    ws.send(json.dumps({"type": "end"}))
    replies = []
    while (reply := json.loads(ws.recv(timeout=10)))["type"] != "ended":
        replies.append(reply)
    total = sum(len(f) for f in frames) // 2
    assert reply == {"type": "ended", "samples": total}
    assert all(r["type"] == "ack" for r in replies)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000

    entries = audio_entries(db, sid)
    assert [e["kind"] for e in entries] == [b"audio"] * len(frames) + [b"end"]
    sample0 = 0
    for entry, frame in zip(entries, frames, strict=False):
        assert int(entry["sample0"]) == sample0
        assert entry["pcm"] == frame
        assert abs(float(entry["at"]) - time.time()) < 60
        sample0 += len(frame) // 2
    assert int(entries[-1]["sample0"]) == total and "pcm" not in entries[-1]
    state = status(http, sid)
    assert state["samples"] == total and state["audio_ended"] is True and state["status"] == "streaming"

    message, code = refusal(start(base, sid))
    assert code == 4409 and message["code"] == "session_ended"
    assert len(audio_entries(db, sid)) == len(frames) + 1


def test_audio_after_worker_ended_the_session_is_refused(
    base: str, http: httpx.Client, db: redis.Redis
) -> None:
    sid = new_session(http)
    ws = start(base, sid)
    ws.recv(timeout=10)
    ws.send(tone(100, 1))
    wait_entries(db, sid, 1)
    db.hset(keys.session(sid), "status", "ended")
    ws.send(tone(100, 2))
    assert refusal(ws)[1] == 4409
    assert [e["kind"] for e in audio_entries(db, sid)] == [b"audio"]


def test_reconnect_continues_the_same_session(base: str, http: httpx.Client, db: redis.Redis) -> None:
    sid = new_session(http)
    first, second = tone(1000, 3), tone(600, 4)
    ws = start(base, sid)
    ws.recv(timeout=10)
    ws.send(first)
    wait_entries(db, sid, 1)
    ws.close()
    ws = start(base, sid)
    assert json.loads(ws.recv(timeout=10)) == {"type": "ready", "samples": 1000}
    ws.send(second)
    ws.send(json.dumps({"type": "end"}))
    assert json.loads(ws.recv(timeout=10)) == {"type": "ended", "samples": 1600}
    entries = audio_entries(db, sid)
    assert [int(e["sample0"]) for e in entries] == [0, 1000, 1600]
    assert entries[0]["pcm"] + entries[1]["pcm"] == first + second


def test_a_newer_connection_takes_over_and_the_older_one_stops(
    base: str, http: httpx.Client, db: redis.Redis
) -> None:
    sid = new_session(http)
    old = start(base, sid)
    old.recv(timeout=10)
    old.send(tone(100, 5))
    new = start(base, sid)
    assert json.loads(new.recv(timeout=10))["type"] == "ready"
    old.send(tone(100, 6))
    message, code = refusal(old)
    assert code == 4409 and message["code"] == "replaced"
    new.send(tone(100, 7))
    new.send(json.dumps({"type": "end"}))
    assert json.loads(new.recv(timeout=10)) == {"type": "ended", "samples": 200}
    assert [int(e["sample0"]) for e in audio_entries(db, sid)] == [0, 100, 200]


def test_a_bad_connection_does_not_disturb_a_concurrent_good_one(
    base: str, http: httpx.Client, db: redis.Redis
) -> None:
    good_sid, bad_sid = new_session(http), new_session(http)
    frames = [tone(800, 10 + i) for i in range(6)]
    good = start(base, good_sid)
    good.recv(timeout=10)
    good.send(frames[0])
    bad = start(base, bad_sid)
    bad.recv(timeout=10)
    bad.send(b"\x00" * 5)
    good.send(frames[1])
    assert refusal(bad)[1] == 4400
    junk = opened(ws_url(base, good_sid).replace("/audio?", "x/audio?"))
    junk.send(b"garbage")
    assert refusal(junk)[1] == 4401  # another session's token
    for frame in frames[2:]:
        good.send(frame)
    good.send(json.dumps({"type": "end"}))
    while (reply := json.loads(good.recv(timeout=10)))["type"] != "ended":
        pass
    assert reply["samples"] == 800 * len(frames)
    entries = audio_entries(db, good_sid)
    assert b"".join(e.get("pcm", b"") for e in entries) == b"".join(frames)
    assert audio_entries(db, bad_sid) == []


def test_simulator_pushes_a_file_like_a_client(base: str, db: redis.Redis) -> None:
    pcm = tone(16000, 42)

    async def run() -> tuple[str, int]:
        info = await open_session(base, None, language="ja", title="sim")
        result = await push_audio(info.audio_url, pcm, chunk_bytes=3200, realtime=False)
        return info.id, result.samples

    sid, samples = asyncio.run(run())
    assert samples == 16000
    entries = audio_entries(db, sid)
    assert b"".join(e.get("pcm", b"") for e in entries) == pcm
    assert [int(e["sample0"]) for e in entries] == [i * 1600 for i in range(11)]
    assert entries[-1]["kind"] == b"end"


def test_a_chunk_or_end_sent_again_after_a_lost_reply_is_stored_once(
    redis_url: str, http: httpx.Client, db: redis.Redis
) -> None:
    # A client library that loses the reply of an append retries it: the retry must not store it twice.
    from redis.asyncio import Redis as AsyncRedis

    from ingest.store import SessionStore

    sid = new_session(http)
    chunk = bytes(3200)

    async def scenario() -> tuple[list[int], int, int]:
        client = AsyncRedis.from_url(redis_url)
        try:
            store = SessionStore(client)
            await store.start(sid, "mic")
            firsts = [
                await store.append(sid, "mic", chunk, 100, at_sample=0),
                await store.append(sid, "mic", chunk, 100, at_sample=0),  # the retry
                await store.append(sid, "mic", chunk, 100, at_sample=1600),
            ]
            return firsts, await store.end(sid, "mic"), await store.end(sid, "mic")
        finally:
            await client.aclose()

    firsts, total, again = asyncio.run(scenario())
    assert firsts == [0, 0, 1600]
    assert total == again == 3200
    entries: Any = db.xrange(keys.audio(sid))
    assert [(e[b"kind"], e[b"sample0"]) for _, e in entries] == [
        (b"audio", b"0"),
        (b"audio", b"1600"),
        (b"end", b"3200"),
    ]
