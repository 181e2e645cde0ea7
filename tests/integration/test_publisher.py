"""The caption publisher against a real Redis server: displays, replay, gap repair, export, back-pressure.

Captions are written by hand exactly as a worker writes them: XADD to ``keys.captions`` (final, skip,
end) and PUBLISH to ``keys.live`` (also partial).
"""

from __future__ import annotations

import html
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
import redis
import webvtt
from fastapi import FastAPI
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from common import auth
from common.contract import keys
from common.schemas import CaptionEvent, SessionRecord, TrackSpec
from common.settings import Settings
from publisher.app import create_app
from publisher.hub import CaptionHub
from tests.served import Served, free_port
from tests.waiting import wait_until
from wsp.cli import main

QUEUE = 16
"""Live events held per display in these tests: small, so a display that never reads is dropped soon."""


@dataclass
class Publisher:
    base: str
    app: FastAPI

    @property
    def hub(self) -> CaptionHub:
        hub: CaptionHub = self.app.state.hub
        return hub

    def ws(self, sid: str, query: str = "") -> str:
        """The captions URL of ``sid`` with its read token (see :data:`READ_TOKENS`) and ``query``."""
        url = self.base.replace("http://", "ws://") + f"/v1/sessions/{sid}/captions"
        params = [f"token={READ_TOKENS[sid]}"] if sid in READ_TOKENS else []
        params += [query] if query else []
        return url + (f"?{'&'.join(params)}" if params else "")

    def wait_displays(self, sid: str, count: int) -> None:
        """Wait until ``count`` displays of the session are subscribed (the hub says so)."""
        wait_until(lambda: self.hub.displays(sid) == count, 10, f"{count} displays of {sid}")


@pytest.fixture(scope="module")
def publisher(redis_url: str) -> Iterator[Publisher]:
    """The publisher on a free port, served by uvicorn in a thread."""
    port = free_port()
    settings = Settings(redis_url=redis_url, publisher_port=port, display_queue_size=QUEUE)
    served = Served(lambda client: create_app(settings, client), redis_url, port)
    yield Publisher(served.base, served.app)
    served.stop()


_connections = ExitStack()


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    with _connections:
        yield


def display(url: str, **options: Any) -> ClientConnection:
    """A display connection, closed at the end of the test."""
    return _connections.enter_context(connect(url, open_timeout=10, **options))


# --- writing captions as a worker does ------------------------------------------------------------


READ_TOKENS: dict[str, str] = {}
"""The read token of every session written below (the URLs of :meth:`Publisher.ws` carry it)."""


class Session:
    def __init__(self, db: redis.Redis, tracks: tuple[str, ...] = ("ja", "en")) -> None:
        self.db = db
        self.sid = "s-" + uuid.uuid4().hex[:12]
        self.tokens = auth.issue()
        READ_TOKENS[self.sid] = self.tokens.read
        specs = [TrackSpec(name=t, task="transcribe" if t == "ja" else "translate") for t in tracks]
        record = SessionRecord(id=self.sid, language="ja", tracks=specs, created_at=time.time())
        fields: dict[Any, Any] = {"record": record.model_dump_json(), "status": "streaming"}
        fields.update(self.tokens.hashes())  # what ingest stores: the tokens' hashes
        db.hset(keys.session(self.sid), mapping=fields)
        db.zadd(keys.sessions_active(), {self.sid: record.created_at})

    def final(self, track: str, text: str, start: float, end: float, publish: bool = True) -> int:
        seq = int(self.db.hincrby(keys.seq(self.sid), track, 1))
        event = CaptionEvent(
            type="final", track=track, seq=seq, text=text, start=start, end=end, emitted_at=time.time()
        )
        self._emit(event, stream=True, publish=publish)
        return seq

    def partial(self, track: str, text: str) -> None:
        self._emit(CaptionEvent(type="partial", track=track, text=text, emitted_at=time.time()), False)

    def end(self, track: str) -> None:
        self._emit(CaptionEvent(type="end", track=track, emitted_at=time.time()), stream=True)

    def republish(self, track: str, seq: int) -> None:
        """PUBLISH a final of the stream again (a duplicate a display must not show twice)."""
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], self.db.xrange(keys.captions(self.sid)))
        for _, fields in entries:
            event = CaptionEvent.model_validate_json(fields[b"event"])
            if event.track == track and event.seq == seq:
                self.db.publish(keys.live(self.sid), event.model_dump_json())

    def _emit(self, event: CaptionEvent, stream: bool, publish: bool = True) -> None:
        pipe = self.db.pipeline(transaction=True)
        if stream:
            pipe.xadd(keys.captions(self.sid), {"event": event.model_dump_json()})
        if publish:
            pipe.publish(keys.live(self.sid), event.model_dump_json())
        pipe.execute()


def receive(ws: ClientConnection, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=timeout)) for _ in range(count)]


def finals(events: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    return [(e["track"], e["seq"], e["text"]) for e in events if e["type"] == "final"]


def assert_nothing_more(s: Session, track: str, *displays: ClientConnection) -> None:
    """Nothing more is on its way to these displays: a partial published now is the next thing each gets.

    A display is sent its replay first, then its live events in the order they were published, so anything
    extra (a final twice, another track's event, history it did not ask for) would come before this marker.
    Each display must already be live (it received a live event, or the session's subscription was live
    before it joined).
    """
    marker = f"marker {uuid.uuid4().hex[:8]}"
    s.partial(track, marker)
    for ws in displays:
        event = json.loads(ws.recv(timeout=10))
        assert (event["type"], event["track"], event.get("text")) == ("partial", track, marker)


def closed_with(ws: ClientConnection, timeout: float = 10) -> tuple[list[dict[str, Any]], int | None]:
    """Everything left to read, then the close code the server sent."""
    events = []
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while True:
            events.append(json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
    return events, info.value.rcvd.code if info.value.rcvd else None


# --- live fan-out ---------------------------------------------------------------------------------


def test_two_displays_get_the_same_finals_over_one_subscription(
    publisher: Publisher, db: redis.Redis
) -> None:
    s = Session(db)
    first, second = display(publisher.ws(s.sid)), display(publisher.ws(s.sid))
    publisher.wait_displays(s.sid, 2)
    assert db.pubsub_numsub(keys.live(s.sid)) == [(keys.live(s.sid).encode(), 1)]

    s.final("ja", "こんにちは", 0.0, 0.8)
    s.final("en", "Hello", 0.0, 0.8)
    s.final("ja", "皆さん。", 0.8, 1.6)
    expected = [("ja", 1, "こんにちは"), ("en", 1, "Hello"), ("ja", 2, "皆さん。")]
    assert finals(receive(first, 3)) == expected
    assert finals(receive(second, 3)) == expected

    first.close()
    second.close()
    publisher.wait_displays(s.sid, 0)
    wait_until(
        lambda: db.pubsub_numsub(keys.live(s.sid))[0][1] == 0, 5, "the subscription to end with the displays"
    )


def test_tracks_filter_only_sends_the_requested_track(publisher: Publisher, db: redis.Redis) -> None:
    s = Session(db)
    english = display(publisher.ws(s.sid, "tracks=en"))
    publisher.wait_displays(s.sid, 1)
    s.final("ja", "こんにちは", 0.0, 0.8)
    s.partial("ja", "みな")
    s.final("en", "Hello", 0.0, 0.8)
    s.partial("en", "every")
    events = receive(english, 2)
    assert [(e["type"], e["track"], e["text"]) for e in events] == [
        ("final", "en", "Hello"),
        ("partial", "en", "every"),
    ]
    assert_nothing_more(s, "en", english)


def test_partials_reach_displays_but_not_the_export(publisher: Publisher, db: redis.Redis) -> None:
    s = Session(db, tracks=("ja",))
    ws = display(publisher.ws(s.sid))
    publisher.wait_displays(s.sid, 1)
    s.partial("ja", "こんに")
    s.final("ja", "こんにちは。", 0.0, 1.0)
    s.partial("ja", "ぱーしゃる")
    events = receive(ws, 3)
    assert [(e["type"], e["text"]) for e in events] == [
        ("partial", "こんに"),
        ("final", "こんにちは。"),
        ("partial", "ぱーしゃる"),
    ]
    srt_text = export(publisher, s.sid, "srt").text
    assert "こんにちは。" in srt_text
    assert "ぱーしゃる" not in srt_text
    assert "こんに\n" not in srt_text


# --- history and reconnection ---------------------------------------------------------------------


def test_a_late_display_gets_the_history_then_live(publisher: Publisher, db: redis.Redis) -> None:
    s = Session(db)
    s.final("ja", "一つ目。", 0.0, 1.0)
    s.final("en", "One.", 0.0, 1.0)
    s.final("ja", "二つ目。", 1.0, 2.0)
    late = display(publisher.ws(s.sid))
    assert finals(receive(late, 3)) == [("ja", 1, "一つ目。"), ("en", 1, "One."), ("ja", 2, "二つ目。")]
    publisher.wait_displays(s.sid, 1)
    s.final("ja", "三つ目。", 2.0, 3.0)
    assert finals(receive(late, 1)) == [("ja", 3, "三つ目。")]
    assert_nothing_more(s, "ja", late)


def test_reconnect_with_since_gets_exactly_what_was_missed(publisher: Publisher, db: redis.Redis) -> None:
    s = Session(db)
    for i in range(1, 6):
        s.final("ja", f"文{i}。", i, i + 1)
    for i in range(1, 4):
        s.final("en", f"Sentence {i}.", i, i + 1)

    ws = display(publisher.ws(s.sid, "since=2"))
    assert finals(receive(ws, 4)) == [
        ("ja", 3, "文3。"),
        ("ja", 4, "文4。"),
        ("ja", 5, "文5。"),
        ("en", 3, "Sentence 3."),
    ]

    per_track = display(publisher.ws(s.sid, "tracks=ja,en&since=ja:4,en:0"))
    assert sorted(finals(receive(per_track, 4))) == [
        ("en", 1, "Sentence 1."),
        ("en", 2, "Sentence 2."),
        ("en", 3, "Sentence 3."),
        ("ja", 5, "文5。"),
    ]

    up_to_date = display(publisher.ws(s.sid, "tracks=en&since=3"))
    publisher.wait_displays(s.sid, 3)  # the subscription was live before it joined
    assert_nothing_more(s, "en", ws, per_track, up_to_date)  # no history twice, none beyond `since`
    s.final("en", "Sentence 4.", 4, 5)
    assert finals(receive(up_to_date, 1)) == [("en", 4, "Sentence 4.")]


def test_a_final_missed_on_pubsub_is_filled_in_from_the_stream(publisher: Publisher, db: redis.Redis) -> None:
    s = Session(db)
    ws = display(publisher.ws(s.sid, "tracks=ja"))
    publisher.wait_displays(s.sid, 1)
    s.final("ja", "一。", 0, 1)
    s.final("ja", "二。", 1, 2, publish=False)  # lost on pub/sub
    s.final("ja", "三。", 2, 3, publish=False)  # lost on pub/sub
    s.final("ja", "四。", 3, 4)
    assert finals(receive(ws, 4)) == [
        ("ja", 1, "一。"),
        ("ja", 2, "二。"),
        ("ja", 3, "三。"),
        ("ja", 4, "四。"),
    ]

    s.republish("ja", 3)  # a duplicate is never shown twice
    s.final("ja", "五。", 4, 5)
    assert finals(receive(ws, 1)) == [("ja", 5, "五。")]
    assert_nothing_more(s, "ja", ws)


def test_session_end_reaches_the_display_which_is_then_closed(publisher: Publisher, db: redis.Redis) -> None:
    s = Session(db)
    ws = display(publisher.ws(s.sid))
    publisher.wait_displays(s.sid, 1)
    s.final("ja", "終わり。", 0, 1)
    s.end("ja")
    s.end("en")
    events, code = closed_with(ws)
    assert [(e["type"], e["track"]) for e in events] == [("final", "ja"), ("end", "ja"), ("end", "en")]
    assert code == 1000

    # A display of an ended session gets the history and the end, then the close.
    after = display(publisher.ws(s.sid, "since=1"))
    events, code = closed_with(after)
    assert [(e["type"], e["track"]) for e in events] == [("end", "ja"), ("end", "en")]
    assert code == 1000


# --- back-pressure --------------------------------------------------------------------------------


def test_a_display_that_never_reads_is_dropped_and_the_others_keep_going(
    publisher: Publisher, db: redis.Redis
) -> None:
    s = Session(db, tracks=("en",))
    # The stalled display reads nothing: its socket buffers fill, then its queue, then it is dropped.
    stalled = display(publisher.ws(s.sid), max_queue=1, compression=None)
    reader = display(publisher.ws(s.sid))
    publisher.wait_displays(s.sid, 2)
    got: list[dict[str, Any]] = []
    text = "x" * 60_000
    sent = 0
    while publisher.hub.displays(s.sid) == 2:
        assert sent < 2000, "the stalled display was never dropped"
        s.final("en", f"{sent} {text}", sent, sent + 1)
        sent += 1
        got.extend(receive(reader, 1))
    for _ in range(5):
        s.final("en", f"{sent} {text}", sent, sent + 1)
        sent += 1
    got.extend(receive(reader, sent - len(got)))
    assert [e["seq"] for e in got] == list(range(1, sent + 1))

    leftover, code = closed_with(stalled, timeout=20)
    assert code == 4408
    assert len(leftover) < sent


# --- refusals -------------------------------------------------------------------------------------


def refusal(ws: ClientConnection) -> tuple[dict[str, Any], int | None]:
    events, code = closed_with(ws)
    assert len(events) == 1
    return events[0], code


def test_unknown_session_is_refused_with_4401_without_saying_it_is_unknown(publisher: Publisher) -> None:
    message, code = refusal(display(publisher.ws("no-such-session", "token=" + auth.new_token())))
    assert code == 4401
    assert message["type"] == "error"
    assert message["code"] == "unauthorized"
    assert "no-such-session" not in message["message"]


@pytest.mark.parametrize("query", ["tracks=fr", "since=-1", "since=abc", "since=ja:x", "since=fr:3"])
def test_bad_queries_are_refused_with_4400(publisher: Publisher, db: redis.Redis, query: str) -> None:
    s = Session(db)
    message, code = refusal(display(publisher.ws(s.sid, query)))
    assert code == 4400
    assert message["type"] == "error"
    assert message["message"]


# --- export ---------------------------------------------------------------------------------------


def export(publisher: Publisher, sid: str, fmt: str, **params: str) -> httpx.Response:
    """An SRT/VTT export, with the session's read token unless ``params`` has a ``token``."""
    if sid in READ_TOKENS:
        params = {"token": READ_TOKENS[sid]} | params
    return httpx.get(f"{publisher.base}/v1/sessions/{sid}/captions.{fmt}", params=params, timeout=10)


def test_srt_export_groups_finals_into_cues(publisher: Publisher, db: redis.Redis) -> None:
    s = Session(db)
    s.final("ja", "今日は", 0.5, 1.0)
    s.final("ja", "いい天気です。", 1.0, 2.25)
    s.final("ja", "明日は", 3.0, 3.5)
    s.final("ja", "雨でしょう。", 3.5, 4.8)
    s.final("en", "It is fine today.", 0.5, 2.25)
    response = export(publisher, s.sid, "srt")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-subrip")
    assert response.text == (
        "1\n00:00:00,500 --> 00:00:02,250\n今日はいい天気です。\n\n"
        "2\n00:00:03,000 --> 00:00:04,800\n明日は雨でしょう。\n\n"
    )
    english = export(publisher, s.sid, "srt", track="en").text
    assert english == "1\n00:00:00,500 --> 00:00:02,250\nIt is fine today.\n\n"


def test_bilingual_export_pairs_each_sentence_with_its_translation(
    publisher: Publisher, db: redis.Redis
) -> None:
    s = Session(db)
    s.final("ja", "今日は", 0.5, 1.0)
    s.final("ja", "いい天気です。", 1.0, 2.25)
    s.final("ja", "明日は雨でしょう。", 3.0, 4.8)
    s.final("en", "It is fine today.", 0.5, 2.25)
    s.final("en", "It will rain tomorrow.", 3.0, 4.8)
    for asked in ("ja+en", "ja,en"):
        response = export(publisher, s.sid, "srt", track=asked)
        assert response.status_code == 200
        assert response.text == (
            "1\n00:00:00,500 --> 00:00:02,250\n今日はいい天気です。\nIt is fine today.\n\n"
            "2\n00:00:03,000 --> 00:00:04,800\n明日は雨でしょう。\nIt will rain tomorrow.\n\n"
        )
        assert "ja+en.srt" in response.headers["content-disposition"]
    vtt = export(publisher, s.sid, "vtt", track="ja+en").text
    assert "今日はいい天気です。\nIt is fine today." in vtt
    assert export(publisher, s.sid, "srt", track="ja+fr").status_code == 400


def test_vtt_export_keeps_cues_readable_and_escapes(publisher: Publisher, db: redis.Redis) -> None:
    s = Session(db, tracks=("en",))
    words = [
        ("Rock & roll <live>", 0.0, 1.0),
        ("at the hall", 1.0, 2.0),
        ("tonight, and the band plays every song from the new album", 2.0, 5.0),
        ("until", 5.0, 6.0),
        ("midnight.", 6.0, 9.0),
        ("Thank you.", 11.0, 11.5),
    ]
    for text, start, end in words:
        s.final("en", text, start, end)
    response = export(publisher, s.sid, "vtt")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/vtt")
    assert response.text.startswith("WEBVTT\n")
    assert "Rock &amp; roll &lt;live&gt; at the hall" in response.text

    cues = webvtt.WebVTT.from_string(response.text).captions
    spans = [(_ms(c.start), _ms(c.end)) for c in cues]
    assert spans[0][0] == 0 and spans[-1] == (11_000, 12_000)  # a short last cue stays up 1 s
    assert all(0 < end - start <= 7_000 for start, end in spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert all(1 <= len(c.lines) <= 2 and all(len(line) <= 42 for line in c.lines) for c in cues)
    # Nothing lost or repeated, and a sentence end closes a cue.
    spoken = " ".join(html.unescape(" ".join(c.lines)) for c in cues)
    assert spoken == " ".join(text for text, _, _ in words)
    assert cues[-1].lines == ["Thank you."]


def _ms(stamp: str) -> int:
    hours, minutes, seconds = stamp.split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)


def test_export_refusals(publisher: Publisher, db: redis.Redis) -> None:
    missing = export(publisher, "no-such-session", "srt", token=auth.new_token())
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthorized"
    s = Session(db)
    wrong = export(publisher, s.sid, "vtt", track="fr")
    assert wrong.status_code == 400
    assert wrong.json()["type"] == "error"
    empty = export(publisher, s.sid, "vtt")
    assert empty.status_code == 200
    assert empty.text.strip() == "WEBVTT"


def test_healthz(publisher: Publisher) -> None:
    response = httpx.get(f"{publisher.base}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_wsp_publisher_without_redis_url_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WSP_REDIS_URL", raising=False)
    assert main(["publisher"]) == 2
    assert "WSP_REDIS_URL is not set" in capsys.readouterr().err
