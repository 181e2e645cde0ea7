"""Metrics, health endpoints, the `wsp check` probe and JSON logs, against a real Redis server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis as AsyncRedis
from websockets.sync.client import connect

import ingest.app
import publisher.app
from asr_worker.service.monitor import worker_monitor
from asr_worker.service.worker import Worker
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common import auth
from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.redis_conn import EmbeddedRedis
from common.schemas import CaptionEvent, SessionRecord, TrackSpec
from common.settings import Settings
from publisher.hub import CaptionHub
from publisher.metrics import PublisherMetrics
from tests.served import Served, free_port
from tests.waiting import wait_until
from wsp.cli import main
from wsp.probe import run_check

FRAME_BYTES = 3200
WORDS = (
    "皆さん こんばんは。 本日は 秋の 演奏会に ようこそ。 最初の 曲は ドヴォルザークの 交響曲 第九番 です。"
)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    wait_until(condition, timeout, what)


def run_in_thread(coro: Coroutine[Any, Any, None]) -> threading.Thread:
    thread = threading.Thread(target=asyncio.run, args=(coro,), daemon=True)
    thread.start()
    return thread


# --- ingest ------------------------------------------------------------------------------------


def test_ingest_metrics_count_sessions_audio_and_refusals(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, max_frame_bytes=FRAME_BYTES)
    served = Served(lambda client: ingest.app.create_app(settings, client), redis_url)
    try:
        before = scrape(served.base + "/metrics")
        created = httpx.post(served.base + "/v1/sessions", json={"language": "ja"}, timeout=10).json()
        with connect(created["audio_url"], open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(10))["type"] == "ready"
            wait_for(
                lambda: value(scrape(served.base + "/metrics"), "wsp_ingest_audio_connections") == 1,
                "the open connection to show",
            )
            ws.send(b"\0" * FRAME_BYTES)
            ws.send(b"\0" * FRAME_BYTES)
            ws.send(b"\0" * (FRAME_BYTES + 2))  # too large: refused with 4413
            refusal = json.loads(ws.recv(10))
            assert refusal["code"] == "frame_too_large"
        wait_for(
            lambda: value(scrape(served.base + "/metrics"), "wsp_ingest_audio_connections") == 0,
            "the connection to close",
        )
        after = scrape(served.base + "/metrics")
        moved = {
            name: value(after, name) - value(before, name)
            for name in (
                "wsp_ingest_sessions_created_total",
                "wsp_ingest_audio_frames_total",
                "wsp_ingest_audio_bytes_total",
            )
        }
        assert moved == {
            "wsp_ingest_sessions_created_total": 1,
            "wsp_ingest_audio_frames_total": 2,
            "wsp_ingest_audio_bytes_total": 2 * FRAME_BYTES,
        }
        assert value(after, "wsp_ingest_audio_rejected_total", reason="frame_too_large") == 1
    finally:
        served.stop()


# --- publisher ---------------------------------------------------------------------------------


def new_session(db: redis.Redis, tracks: tuple[str, ...] = ("ja",)) -> tuple[str, auth.SessionTokens]:
    sid = "obs-" + uuid.uuid4().hex[:12]
    tokens = auth.issue()
    specs = [TrackSpec(name=t, task="transcribe" if t == "ja" else "translate") for t in tracks]
    record = SessionRecord(id=sid, language="ja", tracks=specs, created_at=time.time())
    fields: dict[Any, Any] = {"record": record.model_dump_json(), "status": "streaming"}
    fields.update(tokens.hashes())
    db.hset(keys.session(sid), mapping=fields)
    return sid, tokens


def final(db: redis.Redis, sid: str, seq: int, text: str, stream: bool = True, publish: bool = True) -> None:
    event = CaptionEvent(
        type="final", track="ja", seq=seq, text=text, start=seq, end=seq + 0.5, emitted_at=time.time()
    ).model_dump_json()
    if stream:
        db.xadd(keys.captions(sid), {"event": event})
    if publish:
        db.publish(keys.live(sid), event)


def test_publisher_metrics_count_displays_deliveries_and_gap_repairs(redis_url: str, db: redis.Redis) -> None:
    settings = Settings(redis_url=redis_url)
    served = Served(lambda client: publisher.app.create_app(settings, client), redis_url)
    try:
        sid, tokens = new_session(db)
        final(db, sid, 1, "皆さん", publish=False)
        url = served.base.replace("http", "ws") + f"/v1/sessions/{sid}/captions?since=0&token={tokens.read}"
        with connect(url, open_timeout=10) as display:
            assert json.loads(display.recv(10))["seq"] == 1  # replayed from the stream
            metrics = scrape(served.base + "/metrics")
            assert value(metrics, "wsp_publisher_displays") == 1
            final(db, sid, 2, "こんばんは", publish=False)  # its live event was lost
            final(db, sid, 3, "本日は")  # arrives with a gap: seq 2 is filled in from the stream first
            assert [json.loads(display.recv(10))["seq"] for _ in range(2)] == [2, 3]
        wait_for(
            lambda: value(scrape(served.base + "/metrics"), "wsp_publisher_displays") == 0, "the display"
        )
        metrics = scrape(served.base + "/metrics")
        assert value(metrics, "wsp_publisher_captions_delivered_total", type="final") == 3
        assert value(metrics, "wsp_publisher_gap_repairs_total") == 1
    finally:
        served.stop()


def test_a_slow_display_that_is_dropped_is_counted(redis_url: str, db: redis.Redis) -> None:
    sid, _ = new_session(db)
    metrics = PublisherMetrics()

    async def scenario() -> None:
        client = AsyncRedis.from_url(redis_url)
        hub = CaptionHub(client, queue_size=4, metrics=metrics)
        try:
            display = await hub.join(sid)
            assert collected(metrics)["wsp_publisher_displays"] == 1
            for seq in range(1, 7):  # nobody reads the queue: the fifth event overflows it
                await client.publish(keys.live(sid), partial(seq))
            await asyncio.wait_for(display.closed.wait(), 10)
            assert display.close_code == 4408
        finally:
            await hub.close()
            await client.aclose()

    asyncio.run(scenario())
    assert collected(metrics)["wsp_publisher_displays_dropped_total"] == 1
    assert collected(metrics)["wsp_publisher_displays"] == 0


def partial(n: int) -> str:
    return CaptionEvent(type="partial", track="ja", text=str(n), emitted_at=time.time()).model_dump_json()


def collected(metrics: PublisherMetrics) -> dict[str, float]:
    return {s.name: s.value for family in metrics.registry.collect() for s in family.samples}


# --- worker ------------------------------------------------------------------------------------


def add_audio(db: redis.Redis, sid: str, seconds: float, sample0: int = 0) -> int:
    """Append ``seconds`` of silence in 0.5 s entries, as ingest does while audio streams; next sample0."""
    chunk = float_to_pcm16(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    for _ in range(round(seconds * 2)):
        db.xadd(keys.audio(sid), {"kind": "audio", "sample0": sample0, "pcm": chunk, "at": repr(time.time())})
        sample0 += SAMPLE_RATE // 2
        time.sleep(0.1)
    db.hset(keys.session(sid), "samples", sample0)
    return sample0


@pytest.fixture
def own_redis() -> Iterator[tuple[str, redis.Redis]]:
    """A Redis server of the test's own: a worker claims every session it finds."""
    server = EmbeddedRedis()
    client = redis.Redis.from_url(server.url)
    try:
        yield server.url, client
    finally:
        client.close()
        server.close()


def test_worker_metrics_and_health(own_redis: tuple[str, redis.Redis]) -> None:
    redis_url, db = own_redis
    sid, _ = new_session(db)
    db.set(keys.epoch(sid), 1)  # another worker held it before: claiming it is a takeover
    db.zadd(keys.sessions_active(), {sid: time.time()})
    port = free_port()
    settings = Settings(
        redis_url=redis_url,
        lease_ttl_s=1.5,
        worker_id="obs-" + uuid.uuid4().hex[:6],
        worker_metrics_port=port,
    )
    timeline = ScriptedTranscriber.from_text(WORDS)
    worker = Worker(settings, lambda _: ScriptedTranscriber(timeline), vad=False)
    loop_box: dict[str, asyncio.AbstractEventLoop] = {}

    async def run() -> None:
        loop_box["loop"] = asyncio.get_running_loop()
        async with worker_monitor(worker, "127.0.0.1", port):
            await worker.run()

    thread = run_in_thread(run())
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: worker.health()[0], "the worker to be healthy")
        health = httpx.get(base + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["worker"] == settings.worker_id
        assert main(["check", "worker", "--url", base + "/healthz"]) == 0
        assert run_check("worker", settings.model_copy(update={"worker_metrics_port": 0}), None, 2.0)[0]

        sample = add_audio(db, sid, 4.0)
        wait_for(lambda: db.xlen(keys.captions(sid)) > 0, "the first captions")
        running = scrape(base + "/metrics")
        assert value(running, "wsp_worker_sessions_active") == 1
        assert ("wsp_worker_session_lag_seconds", (("session", sid),)) in running
        assert value(running, "wsp_worker_lease_takeovers_total") == 1

        add_audio(db, sid, 4.0, sample)
        db.xadd(
            keys.audio(sid), {"kind": "end", "sample0": sample + 4 * SAMPLE_RATE, "at": repr(time.time())}
        )
        wait_for(lambda: db.hget(keys.session(sid), "status") == b"ended", "the session to end")
        wait_for(lambda: value(scrape(base + "/metrics"), "wsp_worker_sessions_active") == 0, "the runner")
        done = scrape(base + "/metrics")
        entries: Any = db.xrange(keys.captions(sid))
        finals = sum(1 for _, fields in entries if b'"type":"final"' in fields[b"event"])
        assert value(done, "wsp_worker_captions_published_total", type="final") == finals > 0
        assert value(done, "wsp_worker_captions_published_total", type="end") == 1
        assert value(done, "wsp_worker_step_seconds_count") > 0
        assert value(done, "wsp_worker_commit_latency_seconds_count") > 0
        assert value(done, "wsp_worker_audio_seconds_total") == pytest.approx(8.0)
        assert value(done, "wsp_worker_sessions_finished_total") == 1
        assert not [
            key for key in done if key[0] == "wsp_worker_session_lag_seconds"
        ]  # gone with the session
    finally:
        loop_box["loop"].call_soon_threadsafe(worker.stop)
        thread.join(30)
    assert not thread.is_alive()
    assert not run_check("worker", settings.model_copy(update={"worker_metrics_port": 0}), None, 2.0)[0]
    with pytest.raises(httpx.HTTPError):
        httpx.get(base + "/healthz", timeout=2)
