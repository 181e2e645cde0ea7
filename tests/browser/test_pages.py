"""The web pages in a real browser: headless Debian Chromium driven by playwright-core (tests/browser/).

The pipeline runs as real processes (embedded Redis, ``wsp ingest``, ``wsp publisher``, ``wsp worker``).
In the live test Chromium's fake microphone plays the first 21 s of the bundled Japanese concert sample
into the microphone page, the real bundled model transcribes it, and two displays (a stage screen and a
phone) show the captions; the publisher is killed and restarted mid-stream and the displays must recover
without missing a caption. The refusals test checks that every bad input ends in a clear message.
Screenshots are kept in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import soundfile as sf

from asr_worker.core.words import Word
from asr_worker.transcribers.factory import write_script
from common.audio import SAMPLE_RATE, load_audio
from common.contract import keys
from common.schemas import CaptionEvent
from tests.browser.driver import CHROMIUM, DRIVER_DIR, Driver
from wsp.bench.processes import LocalPipeline
from wsp.bench.scoring import error_rate

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
SAMPLE = ROOT / "common" / "samples" / "ja_concert.wav"
REFERENCE = DRIVER_DIR / "ja_concert_first_21s.txt"
SPEECH_END_S = 20.8
"""The clip: the first three sentences of the sample (they end at 20.47 s; the next starts at 21.07 s)."""
LEAD_S, TRAIL_S = 0.5, 9.0
"""Silence before and after the speech in the fake microphone's file (Chromium loops the file)."""
MAX_CER = 0.4
LEASE_TTL_S = 3.0


def _fake_microphone_file(path: Path) -> float:
    """The clip with silence around it, as the 16-bit WAV Chromium's fake capture device plays."""
    speech = load_audio(SAMPLE)[: round(SPEECH_END_S * SAMPLE_RATE)]
    silence = [np.zeros(round(s * SAMPLE_RATE), dtype=np.float32) for s in (LEAD_S, TRAIL_S)]
    audio = np.concatenate([silence[0], speech, silence[1]])
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return len(audio) / SAMPLE_RATE


def _stream_finals(redis_url: str, sid: str, track: str) -> list[CaptionEvent]:
    with redis.Redis.from_url(redis_url) as db:
        entries = db.xrange(keys.captions(sid))
    events = [CaptionEvent.model_validate_json(fields[b"event"]) for _, fields in entries]
    return [e for e in events if e.type == "final" and e.track == track]


def _squash(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.mark.model
def test_microphone_to_two_displays_with_a_publisher_restart(tmp_path: Path, artifacts: Path) -> None:
    clip = tmp_path / "fake-mic.wav"
    clip_s = _fake_microphone_file(clip)
    stop_at_ms = round((LEAD_S + SPEECH_END_S + 4.0) * 1000)
    assert stop_at_ms < clip_s * 1000, "Stop comes in the trailing silence, before Chromium loops the file"
    reference = REFERENCE.read_text(encoding="utf-8").strip()
    pipeline = LocalPipeline(tmp_path / "pipeline", None, LEASE_TTL_S, worker_capacity=1)
    try:
        pipeline.start(workers=1)
        config = {
            "scenario": "live",
            "chromium": CHROMIUM,
            "ingest": pipeline.ingest_url,
            "audio": str(clip),
            "artifacts": str(artifacts),
            "firstCaptionTimeoutMs": 30_000,
            "restartAtMs": 9_000,
            "downMs": 2_000,
            "stopAtMs": stop_at_ms,
            "endTimeoutMs": 60_000,
        }
        outage: dict[str, float] = {}

        def kill() -> None:
            pipeline.kill("publisher")
            outage["from"] = time.time()

        def restart() -> None:
            pipeline.restart("publisher")
            outage["to"] = time.time()

        actions = {"kill-publisher": kill, "start-publisher": restart}
        started = time.monotonic()
        result = Driver(config, actions, timeout_s=150).run()
        elapsed = time.monotonic() - started
        (artifacts / "live-result.json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
        sid = result["session"]["id"]
        recorded = _stream_finals(pipeline.redis_url, sid, "ja")
    finally:
        pipeline.close()

    assert result["pageErrors"] == []
    assert recorded, "the worker committed no caption"
    recorded_text = "".join(e.text for e in recorded)
    # captions were committed while the publisher was down: the displays got them on reconnecting
    assert any(outage["from"] < e.emitted_at < outage["to"] for e in recorded), outage
    for name, display in zip(("stage", "phone"), result["displays"], strict=True):
        finals = display["tracks"]["ja"]["finals"]
        # every final exactly once and in order, across the publisher's restart
        assert [f["seq"] for f in finals] == list(range(1, len(recorded) + 1)), name
        assert "".join(f["text"] for f in finals) == recorded_text, name
        shown = "".join(f["text"] for f in finals)
        assert error_rate(reference, shown, "ja") <= MAX_CER, (name, shown)
        # what is on screen is the end of that text, and the display says the session ended
        assert _squash(display["visible"]["ja"]) and _squash(display["visible"]["ja"]) in _squash(shown)
        assert display["state"] == "ended" and display["message"] == ""
    stage_states = result["stateHistory"][0]
    assert "reconnecting" in stage_states and stage_states[-1] == "ended", stage_states
    assert stage_states.index("reconnecting") < len(stage_states) - 2  # live again before the end
    # the microphone page showed the same captions below its buttons and said it stopped
    assert result["mic"]["stage"] == "stopped" and result["mic"]["error"] == ""
    assert _squash(result["mic"]["captions"]["ja"]["text"]) == _squash(recorded_text)
    assert result["micStateWhilePublisherDown"] == "down"
    # a display opened after the end replays the whole history
    assert "".join(f["text"] for f in result["obs"]["tracks"]["ja"]["finals"]) == recorded_text
    for path in result["screenshots"]:
        assert Path(path).stat().st_size > 10_000, path
    assert elapsed < 150


@pytest.fixture
def services(tmp_path: Path) -> Iterator[LocalPipeline]:
    """Redis, ingest and the publisher without a worker (no captions are needed to be refused)."""
    script = tmp_path / "script.json"
    write_script(script, [Word(0.0, 0.5, "x")])
    pipeline = LocalPipeline(tmp_path / "pipeline", script, LEASE_TTL_S)
    try:
        pipeline.start(workers=0)
        yield pipeline
    finally:
        pipeline.close()


def test_pages_explain_refusals_and_outages(services: LocalPipeline, artifacts: Path) -> None:
    created = httpx.post(
        services.ingest_url + "/v1/sessions",
        json={"language": "ja", "tracks": [{"name": "ja"}, {"name": "en", "task": "translate"}]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    config = {
        "scenario": "refusals",
        "chromium": CHROMIUM,
        "ingest": services.ingest_url,
        "publisher": services.publisher_url,
        "artifacts": str(artifacts),
        "sid": body["id"],
        "audioToken": body["audio_token"],
        "readToken": body["read_token"],
    }
    actions = {
        "kill-publisher": lambda: services.kill("publisher"),
        "kill-ingest": lambda: services.kill("ingest"),
    }
    out = Driver(config, actions, timeout_s=120).run()

    wrong_token = out["displayWrongToken"]
    assert wrong_token["state"] == "error" and "token" in wrong_token["message"]
    assert "refused" in out["displayUnknownSession"]["message"]
    assert "unknown track 'fr'" in out["displayUnknownTrack"]["message"]
    assert "was refused" in out["micWrongSession"] and "NoSuchSession" in out["micWrongSession"]
    assert "was refused" in out["micWrongToken"]
    # the session's page offers display links with the read token, never the audio token
    assert out["micLinks"] and all(f"token={body['read_token']}" in link for link in out["micLinks"])
    assert not any(body["audio_token"] in link for link in out["micLinks"] + out["micDownloads"])
    assert any(link.endswith(".srt?track=en&token=" + body["read_token"]) for link in out["micDownloads"])
    assert "permission was denied" in out["permissionDenied"]
    assert out["permissionDeniedStage"] == "error"  # a red frame
    assert "No microphone" in out["noMicrophone"]
    assert out["displayServerDown"]["state"] == "reconnecting"
    assert out["micServerDown"]["stage"] == "down" and "Cannot reach" in out["micServerDown"]["status"]
    assert "Cannot reach the ingest service" in out["micCreateServerDown"]
    for path in out["screenshots"]:
        assert Path(path).stat().st_size > 5_000, path
