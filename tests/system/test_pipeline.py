"""The whole pipeline in real processes: `wsp ingest`, `wsp publisher` and two `wsp worker`s on a real Redis.

Audio goes in through the ingest WebSocket at real-time pace, displays read the publisher's WebSocket, the
workers run the scripted engine (no model). The pipeline gets an embedded Redis of its own even when
WSP_REDIS_URL is set: its workers claim every active session of the server they are given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from asr_worker.core.words import Word
from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.contract import keys
from common.schemas import CaptionEvent
from tests.waiting import async_wait_until
from wsp.bench.failover import failover_once, measure
from wsp.bench.processes import Display, LocalPipeline, audio_for, stream
from wsp.client import SessionInfo, open_session

LEASE_TTL_S = 1.5
JA_TEXT = (
    "皆さん こんばんは。 本日は 秋の 演奏会に ようこそ。 開演まで 少々 お待ちください。 "
    "携帯電話の 電源を お切りください。 写真撮影は ご遠慮ください。 前半は モーツァルトです。"
)
WORDS = ScriptedTranscriber.from_text(JA_TEXT)
TOKENS = [w.text for w in WORDS]
ENGLISH = [Word(w.start, w.end, f"word{i}{'.' if w.ends_sentence else ''}") for i, w in enumerate(WORDS)]
"""What the scripted engine hears when it translates: an English word in the time of each Japanese one
(a sentence in the time of each sentence)."""
SESSION_S = WORDS[-1].end + 1.0
"""Seconds of audio each session streams (real time)."""
DONE_S = SESSION_S + 20
"""A session's displays must have everything by then."""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    workdir = tmp_path_factory.mktemp("pipeline")
    script = workdir / "script.json"
    write_script(script, WORDS)
    write_script(script.with_suffix(".translation.json"), ENGLISH)
    local = LocalPipeline(workdir, script, LEASE_TTL_S)
    try:
        local.start(workers=2)
        yield local
    finally:
        local.close()


@pytest.fixture
def live(pipeline: LocalPipeline) -> LocalPipeline:
    """The pipeline with two workers running (a test before may have killed one)."""
    pipeline.ensure_workers(2)
    return pipeline


async def new_session(pipeline: LocalPipeline, tracks: list[dict[str, str]] | None = None) -> SessionInfo:
    return await open_session(pipeline.ingest_url, None, language="ja", tracks=tracks)


def display(info: SessionInfo, query: str = "") -> Display:
    """A display on the captions URL ingest returned (it carries the session's read token)."""
    assert "?token=" in info.captions_url
    return Display(info.captions_url + (f"&{query}" if query else ""))


async def connect_all(*displays: Display) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(d.run()) for d in displays]
    await asyncio.wait_for(asyncio.gather(*(d.connected.wait() for d in displays)), 10)
    return tasks


def texts(finals: list[CaptionEvent], joiner: str) -> str:
    return joiner.join(e.text for e in finals)


def seqs(finals: list[CaptionEvent]) -> list[int | None]:
    return [e.seq for e in finals]


def test_displays_connected_before_the_audio_get_the_same_finals_in_order(live: LocalPipeline) -> None:
    async def scenario() -> tuple[Display, Display]:
        info = await new_session(live)
        first, second = display(info), display(info)
        tasks = await connect_all(first, second)
        await asyncio.wait_for(stream(info.audio_url, audio_for(WORDS)), SESSION_S + 10)
        await asyncio.wait_for(asyncio.gather(*tasks), DONE_S)
        return first, second

    first, second = asyncio.run(scenario())
    finals = first.finals("ja")
    assert texts(finals, "") == "".join(TOKENS)
    assert seqs(finals) == list(range(1, len(finals) + 1))
    assert len(finals) > 3  # captions came as the talk went on, not in one block at the end
    assert [e.model_dump() for e in second.finals()] == [e.model_dump() for e in first.finals()]
    for screen in (first, second):
        assert screen.received[-1].event.type == "end"


def test_a_session_with_a_translation_track_captions_both_tracks(live: LocalPipeline) -> None:
    tracks = [{"name": "ja", "task": "transcribe"}, {"name": "en", "task": "translate"}]

    async def scenario() -> tuple[Display, Display]:
        info = await new_session(live, tracks)
        both, english = display(info), display(info, "tracks=en")
        tasks = await connect_all(both, english)
        await asyncio.wait_for(stream(info.audio_url, audio_for(WORDS)), SESSION_S + 10)
        await asyncio.wait_for(asyncio.gather(*tasks), DONE_S)
        return both, english

    both, english = asyncio.run(scenario())
    # Each Japanese sentence is translated once, in order; English captions are spaced.
    for track, joiner, said in (("ja", "", TOKENS), ("en", " ", [w.text for w in ENGLISH])):
        finals = both.finals(track)
        assert texts(finals, joiner) == joiner.join(said), track
        assert seqs(finals) == list(range(1, len(finals) + 1)), track
    ended = [r.event.track for r in both.received if r.event.type == "end"]
    assert sorted(ended) == ["en", "ja"]
    assert {r.event.track for r in english.received} == {"en"}
    assert [e.model_dump() for e in english.finals()] == [e.model_dump() for e in both.finals("en")]


def test_a_display_that_reconnects_with_since_gets_exactly_what_it_missed(live: LocalPipeline) -> None:
    async def scenario() -> tuple[Display, Display, float]:
        info = await new_session(live)
        db = Redis.from_url(live.redis_url)
        pushing = None
        try:
            before = display(info)
            leaving = asyncio.create_task(before.run(stop_after_finals=3))
            await asyncio.wait_for(before.connected.wait(), 10)
            pushing = stream(info.audio_url, audio_for(WORDS))
            await asyncio.wait_for(leaving, SESSION_S)  # gone after its third final
            last = before.finals()[-1].seq

            async def gone_on() -> bool:  # captions go on without it
                return await _finals_stored(db, info.id) >= (last or 0) + 2

            await async_wait_until(gone_on, SESSION_S, "captions to go on without the display")
            back_at = time.time()
            after = display(info, f"since={last}")
            await asyncio.wait_for(after.run(), DONE_S)
            await asyncio.wait_for(pushing, 10)
            return before, after, back_at
        finally:
            if pushing is not None:
                pushing.cancel()
                await asyncio.gather(pushing, return_exceptions=True)
            await db.aclose()

    before, after, back_at = asyncio.run(scenario())
    seen, missed_and_rest = before.finals(), after.finals()
    assert seqs(seen) == [1, 2, 3]
    assert seqs(missed_and_rest) == list(range(4, 4 + len(missed_and_rest)))
    assert texts(seen + missed_and_rest, "") == "".join(TOKENS)
    replayed = [e for e in missed_and_rest if e.emitted_at < back_at]
    assert len(replayed) >= 2  # what it missed came first...
    assert any(e.emitted_at > back_at for e in missed_and_rest)  # ...then the rest, live
    assert after.received[-1].event.type == "end"


async def _finals_stored(db: Redis, sid: str) -> int:
    rows: Any = await db.xrange(keys.captions(sid))
    return sum(CaptionEvent.model_validate_json(fields[b"event"]).type == "final" for _, fields in rows)


def test_killing_the_owning_worker_moves_the_session_without_losing_a_word(live: LocalPipeline) -> None:
    outcome = asyncio.run(failover_once(live, WORDS))
    figures = measure(outcome, WORDS)

    assert outcome.successor != outcome.killed
    assert outcome.successor in live.workers and outcome.killed not in live.workers
    assert outcome.epoch == 2  # one claim, one takeover
    finals = [r.event for r in outcome.received if r.event.type == "final"]
    assert [t for e in finals for t in e.text.split()] == TOKENS  # nothing lost, nothing twice
    assert seqs(finals) == list(range(1, len(finals) + 1))
    assert figures["words_lost"] == figures["words_duplicated"] == figures["seq_gaps"] == 0
    assert outcome.received[-1].event.type == "end"
    # Captions resume soon after the lease of the dead worker runs out.
    assert figures["resume_s"] is not None
    assert figures["resume_s"] <= LEASE_TTL_S + 3, figures


def test_every_process_ends_with_the_pipeline(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    write_script(script, WORDS)
    with LocalPipeline(tmp_path, script, LEASE_TTL_S) as local:
        local.start(workers=1)
        procs = list(local.procs.values())
        assert all(p.poll() is None for p in procs)
        server = redis.Redis.from_url(local.redis_url, socket_connect_timeout=2)
        assert server.ping()
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(redis.ConnectionError):  # the embedded Redis server is gone too
        server.ping()
    server.close()
