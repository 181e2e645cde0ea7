"""What the audience and the operator see, in real Chromium (tests/browser/screens.mjs).

Pacing and layout: the caption display gets the concert sample's caption stream as the real model
produced it (tests/fixtures/*.jsonl, recorded by tests/fixtures/record_captions.py) through a routed
WebSocket under a fake clock, and the screen is read every 200 ms of page time: characters per line,
line changes per minute, how long a line stays, whether only unstable text is ever visible; a
transparent OBS display is screenshotted with its alpha channel. The microphone page and the lost-session
states run against real service processes (scripted engine). Screenshots: test-artifacts/browser/screens/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import soundfile as sf

from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE, load_audio
from tests.browser.driver import CHROMIUM, Driver
from wsp.bench.processes import LocalPipeline

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
JA = FIXTURES / "ja_concert_captions.jsonl"
JA_EN = FIXTURES / "ja_en_concert_captions.jsonl"
STATIC = ROOT / "publisher" / "static"
ARTIFACTS = ROOT / "test-artifacts" / "browser" / "screens"
WORDS = "皆さん こんばんは。 本日は 秋の 演奏会に ようこそ。 " * 8
HOLD_S = 4.0
"""The display's default: a line stays on screen at least this long."""


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _display(name: str, fixture: Path, width: int, height: int, query: str, **extra: Any) -> dict[str, Any]:
    viewport = {"width": width, "height": height}
    return {"name": name, "fixture": str(fixture), "viewport": viewport, "query": query, **extra}


def test_captions_are_paced_for_reading_on_every_kind_of_screen(artifacts: Path) -> None:
    obs = "theme=transparent&lines=2&indicator=0&controls=0"
    title = "秋の定期演奏会"
    displays = [
        _display("stage", JA, 1280, 720, "", title=title, shotsAt=[30, 60]),
        _display("phone", JA, 390, 844, "mode=phone&theme=light", scale=2, title=title, shotsAt=[60]),
        _display("obs", JA, 1920, 1080, obs, alpha=True),
        _display("obs-box", JA, 1920, 1080, obs + "&box=1", alpha=True),
        _display("bilingual", JA_EN, 1280, 720, "", title=title, shotsAt=[40, 58]),
        _display("bilingual-side", JA_EN, 1920, 1080, "pair=side", title=title, shotsAt=[58]),
    ]
    config = {
        "scenario": "pacing",
        "chromium": CHROMIUM,
        "artifacts": str(artifacts),
        "static": str(STATIC),
        "stepMs": 200,
        "displays": displays,
    }
    out = Driver(config, {}, timeout_s=280, script="screens.mjs").run()
    (artifacts / "pacing.json").write_text(json.dumps(out, ensure_ascii=False, indent=1))
    for name, result in out.items():
        assert result["errors"] == [], name

    stage = out["stage"]["figures"]
    # lines of at most 20 characters, no orphan tail on a line of its own, each line up long enough to read
    assert stage["chars_per_line_max"] <= 20 and stage["short_lines"] == [], stage
    assert stage["on_screen_min_s"] >= HOLD_S - 0.25, stage
    assert stage["line_changes_per_minute"] <= 25, stage
    assert out["stage"]["title"] == "秋の定期演奏会"

    phone = out["phone"]["figures"]
    assert phone["unstable_only_share"] == 0 and phone["partial_changes"] == 0, phone  # off on a phone
    assert phone["short_lines"] == [] and phone["chars_on_screen_mean"] >= 100, phone  # it fills the screen
    scroll = out["phone"]["scroll"]
    assert scroll["height"] > scroll["view"] and scroll["y"] > 0  # the session so far, following the end
    assert out["phone"]["title"] == "秋の定期演奏会"

    for name in ("obs", "obs-box"):
        obs = out[name]
        assert obs["figures"]["partial_changes"] == 0 and obs["title"] == "", name
        # transparent really is: the corner shows the video behind, the text is solid
        assert obs["alpha"]["topLeftAlpha"] == 0 and obs["alpha"]["transparent"] > 0.75, obs["alpha"]
        assert obs["alpha"]["opaque"] > 0.002, obs["alpha"]
    # the box covers the lines only: more of the screen is painted, most of it is still clear
    assert out["obs-box"]["alpha"]["transparent"] < out["obs"]["alpha"]["transparent"] - 0.01
    assert out["obs-box"]["alpha"]["transparent"] > 0.75

    for name in ("bilingual", "bilingual-side"):
        blocks = out[name]["blocks"]
        paired = [b for b in blocks if b["seconds"].get("en")]
        assert paired, name
        # each English line sits with the Japanese it translates: by audio time, not by arrival
        manners = next(b for b in blocks if "video of the event" in b["seconds"].get("en", ""))
        assert "電源" in manners["first"] or "マナーモード" in manners["first"], manners
        assert not any(b["seconds"].get("en", "").strip() in {"The", "."} for b in blocks)
    assert out["bilingual"]["title"] == "秋の定期演奏会"


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[LocalPipeline]:
    """Redis, ingest, the publisher and one worker on the scripted engine."""
    script = tmp_path / "script.json"
    write_script(script, ScriptedTranscriber.from_text(WORDS))
    services = LocalPipeline(tmp_path / "pipeline", script, lease_ttl_s=3.0, worker_capacity=4)
    try:
        services.start(workers=1)
        yield services
    finally:
        services.close()


def _two_channel_microphone(path: Path) -> None:
    """The first 12 s of the concert sample on the second channel, silence on the first: a venue's
    interface with the speaker on input 2."""
    speech = load_audio(ROOT / "common" / "samples" / "ja_concert.wav")[: 12 * SAMPLE_RATE]
    stereo = np.stack([np.zeros_like(speech), speech], axis=1)
    sf.write(path, stereo, SAMPLE_RATE, subtype="PCM_16")


def test_the_microphone_page_hands_out_links_and_picks_its_input(
    pipeline: LocalPipeline, tmp_path: Path, artifacts: Path
) -> None:
    audio = tmp_path / "two-channels.wav"
    _two_channel_microphone(audio)
    config = {
        "scenario": "mic",
        "chromium": CHROMIUM,
        "artifacts": str(artifacts),
        "ingest": pipeline.ingest_url,
        "audio": str(audio),
    }
    out = Driver(config, {}, timeout_s=150, script="screens.mjs").run()
    (artifacts / "mic.json").write_text(json.dumps(out, ensure_ascii=False, indent=1))
    assert out["errors"] == []
    cards = out["cards"]
    assert [c["kind"] for c in cards] == ["stage", "stage-ja", "stage-en", "phone", "obs"]
    assert len({c["shortText"] for c in cards}) == len(cards)  # readable apart, unlike cut-off URLs
    assert all(c["qrViewBox"] and c["qrSize"] >= 100 for c in cards)
    assert all(len(c["shortText"].split("/d/")[1]) == 9 for c in cards)
    assert out["locked"]["fields"] and out["locked"]["createHidden"] and out["locked"]["newSession"]
    assert "open on this computer only" in out["locked"]["localWarning"]  # links built on 127.0.0.1
    # the short link opened the phone display, which fills the screen and hides unstable text
    assert "/display?token=" in out["phoneLanded"] and "mode=phone" in out["phoneLanded"]
    assert out["phoneOptions"]["mode"] == "phone" and out["phoneOptions"]["partial"] is False
    # inputs: the fake device's names, and its two channels; the silent one is silent
    assert any("Fake Audio Input 2" in d["label"] for d in out["devices"])
    assert [c["value"] for c in out["channels"]] == ["mix", "0", "1"] and not out["channelDisabled"]
    assert out["levelChannel1"] == 0 and out["levelChannel2"] > 5, out
    assert out["input"]["channel"] == "1" and out["input"]["channels"] == 2
    assert 0 <= out["lag"]["seconds"] < 10 and "behind the audio" in out["lag"]["text"]
    assert out["newSessionWhileStreaming"]  # no new session while the microphone is live
    assert out["afterNewSession"]["links"] and out["afterNewSession"]["url"] == ""
    assert out["secondSession"] != out["session"]["id"]
    assert out["secondInput"]["device"] == out["chosenDevice"]["value"]
    for path in out["screenshots"]:
        assert Path(path).stat().st_size > 10_000, path


def test_a_lost_session_is_called_lost_and_stale_captions_are_dimmed(
    pipeline: LocalPipeline, tmp_path: Path, artifacts: Path
) -> None:
    audio = tmp_path / "speech.wav"
    speech = load_audio(ROOT / "common" / "samples" / "ja_concert.wav")[: 20 * SAMPLE_RATE]
    sf.write(audio, speech, SAMPLE_RATE)
    created = httpx.post(pipeline.ingest_url + "/v1/sessions", json={"language": "ja"})
    body = created.json()

    def lose_data() -> None:
        """The server comes back without its data: a restart that lost Redis."""
        with redis.Redis.from_url(pipeline.redis_url) as db:
            db.flushall()
        pipeline.restart("publisher")
        pipeline.kill("ingest")
        pipeline.restart("ingest")

    config = {
        "scenario": "gone",
        "chromium": CHROMIUM,
        "artifacts": str(artifacts),
        "ingest": pipeline.ingest_url,
        "publisher": pipeline.publisher_url,
        "audio": str(audio),
        "sid": body["id"],
        "audioToken": body["audio_token"],
        "readToken": body["read_token"],
    }
    actions = {"kill-publisher": lambda: pipeline.kill("publisher"), "lose-data": lose_data}
    out = Driver(config, actions, timeout_s=150, script="screens.mjs").run()
    (artifacts / "gone.json").write_text(json.dumps(out, ensure_ascii=False, indent=1))
    assert out["errors"] == []
    assert out["dimmed"]["lines"] > 0 and out["dimmed"]["opacity"] < 0.6  # still there, visibly stale
    assert out["display"]["state"] == "gone"
    assert "ended or the caption server lost its data" in out["display"]["message"]
    assert "token was refused" not in out["display"]["message"]
    assert "no longer on the server" in out["mic"]["error"] and out["mic"]["stage"] == "error"
    assert out["mic"]["start"] and not out["mic"]["newSession"]  # Start is off, New session on offer
    # a link this browser never read proves nothing: the usual refusal
    assert out["stranger"]["state"] == "error" and "token was refused" in out["stranger"]["message"]
