"""`wsp send`: a venue's sources into a session, with real parts.

FFmpeg (the Debian program) on the loopback is the live source: an RTMP server, an SRT listener, an HLS
encoder whose segments a local HTTP server serves. A PulseAudio null sink is the sound card. Ingest is the
real service on a real Redis; what a session holds is read back from its audio stream and located in the
original recording block by block, so a hole, a repeat or a wrong channel shows.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import soundfile as sf

from common.audio import SAMPLE_RATE, float_to_pcm16, load_audio
from common.contract import keys
from common.settings import Settings
from ingest.app import create_app
from tests.send_helpers import IN_CI, Stage, needs_ffmpeg
from tests.served import Served, free_port
from wsp.bench.audio_match import as_float, positions, session_pcm
from wsp.bench.live_sources import (
    FFMPEG,
    KINDS,
    PULSEAUDIO,
    SendProcess,
    pulse_server,
    wait_for,
)

needs_pulse = pytest.mark.skipif(
    PULSEAUDIO is None and not IN_CI, reason="needs pulseaudio (apt install pulseaudio pulseaudio-utils)"
)
MATCH = 0.9
"""Normalised correlation of a second of what the session holds with the original: AAC at 128 kb/s and two
resamplings keep it well above this; a second from elsewhere, or mixed with another channel, falls below."""
STEP_TOLERANCE_S = 0.05
"""Consecutive seconds of the session must lie one second apart in the original (give or take this)."""


PER_CLIENT = {"client_sessions_per_minute": 1000, "max_sessions_per_client": 1000}
"""Every session of this module comes from one address (the loopback)."""


def ingest(redis_url: str, port: int | None = None, **settings: object) -> Served:
    port = port or free_port()
    config = Settings(redis_url=redis_url, ingest_port=port, **(PER_CLIENT | settings))  # type: ignore[arg-type]
    return Served(
        lambda client: create_app(config, client), redis_url, port, ws_max_size=1 << 20, lifespan="off"
    )


@pytest.fixture(scope="module")
def base(redis_url: str) -> Iterator[str]:
    served = ingest(redis_url)
    yield served.base
    served.stop()


def assert_in_order(found: list[tuple[float, float]], gaps: int = 0) -> None:
    """Every second found well, each one second after the one before, except ``gaps`` forward jumps (where
    the source was restarted further on: the one second that holds the splice may match nothing)."""
    assert found, "nothing of the original arrived"
    weak = [(i, round(at, 2), round(score, 3)) for i, (at, score) in enumerate(found) if score < MATCH]
    assert len(weak) <= gaps, f"seconds that match nothing of the original: {weak} of {len(found)}"
    found = [f for f in found if f[1] >= MATCH]
    steps = [round(b[0] - a[0], 3) for a, b in itertools.pairwise(found)]
    jumps = [s for s in steps if abs(s - 1.0) > STEP_TOLERANCE_S]
    assert all(s > 1.0 for s in jumps), f"audio repeated or reordered: steps {steps}"
    assert len(jumps) == gaps, f"steps between seconds: {steps}"


def audio_ended(db: redis.Redis, sid: str) -> bool:
    """Whether ingest took the session's ``end``."""
    value: Any = db.hget(keys.session(sid), "audio_ended")
    return bool(value) and value not in (b"0", "0")


def last_error(sender: SendProcess) -> str:
    lines = [line for line in sender.err if line.strip()]
    assert lines and lines[-1].startswith("wsp: error: "), sender.err[-5:]
    assert sum(line.startswith("wsp: error") for line in lines) == 1
    return lines[-1]


# -- files -------------------------------------------------------------------------------------------
def test_a_file_lands_whole_at_real_time_pace_and_prints_the_display_links(
    base: str, db: redis.Redis, excerpt: object, stage: Stage
) -> None:
    path = excerpt(0.0, 3.0)  # type: ignore[operator]
    began = time.monotonic()
    sender = stage.send(str(path), "--url", base)
    sid = sender.printed("session")
    assert sender.wait() == 0, sender.err[-5:]
    took = time.monotonic() - began
    assert sender.printed("display").startswith("http") and "token=" in sender.printed("display")
    assert f"--session {sid} --token " in sender.printed("continue")
    assert session_pcm(db, sid) == float_to_pcm16(load_audio(path))  # bit for bit
    assert audio_ended(db, sid)
    assert took >= 3.0 * 0.9, f"3 s of audio went in {took:.1f} s: not real time"


def test_as_fast_as_possible_only_where_ingest_grants_it(
    redis_url: str, base: str, db: redis.Redis, excerpt: object, stage: Stage
) -> None:
    path = excerpt(0.0, 6.0)  # type: ignore[operator]
    granting = ingest(redis_url, accept_fast_audio=True)
    try:
        fast = stage.send(str(path), "--url", granting.base, "--as-fast-as-possible", "--stats", "/dev/null")
        sid = fast.printed("session")
        assert fast.wait() == 0, fast.err[-5:]
        assert session_pcm(db, sid) == float_to_pcm16(load_audio(path))
    finally:
        granting.stop()
    refused = stage.send(str(path), "--url", base, "--as-fast-as-possible")
    refused.printed("session")
    began = time.monotonic()
    assert refused.wait() == 0
    assert time.monotonic() - began >= 6.0 * 0.8
    assert any("real time only" in line for line in refused.err), refused.err


# -- live streams --------------------------------------------------------------------------------------
@needs_ffmpeg
@pytest.mark.parametrize("kind", KINDS)
def test_a_live_stream_arrives_whole_and_in_order(
    kind: str,
    base: str,
    db: redis.Redis,
    original: np.ndarray,
    stage: Stage,
) -> None:
    length_s = 6.0
    source, sender, sid = stage.live(kind, base, length_s=length_s)
    source.wait(length_s + 10)
    wait_for(lambda: len(session_pcm(db, sid)) >= 2 * SAMPLE_RATE * (length_s - 1.5), "the stream's audio")
    time.sleep(1.5)
    sender.interrupt()
    assert sender.wait() == 0, sender.err[-5:]
    assert audio_ended(db, sid)
    held = as_float(session_pcm(db, sid))
    assert length_s - 1.5 <= held.size / SAMPLE_RATE <= length_s + 0.3
    assert_in_order(positions(held, original))


@needs_ffmpeg
def test_an_encoder_killed_and_restarted_continues_the_same_session_without_repeating_audio(
    base: str,
    db: redis.Redis,
    original: np.ndarray,
    stage: Stage,
) -> None:
    first, sender, sid = stage.live("srt", base, start_s=0.0, length_s=30.0)
    wait_for(lambda: len(session_pcm(db, sid)) >= 2 * SAMPLE_RATE * 4, "4 s of the first stream")
    first.kill()  # the encoder crashes mid-sentence
    before = len(session_pcm(db, sid)) / 2 / SAMPLE_RATE
    time.sleep(2.0)
    second = stage.source("srt", port=first.port)  # restarted, later in the programme
    second.play(start_s=40.0, length_s=5.0)
    second.wait(20)
    wait_for(lambda: len(session_pcm(db, sid)) >= 2 * SAMPLE_RATE * (before + 4), "the restarted stream")
    time.sleep(1.5)
    sender.interrupt()
    assert sender.wait() == 0, sender.err[-5:]
    held = as_float(session_pcm(db, sid))
    assert held.size / SAMPLE_RATE <= before + 1.0 + 5.0 + 0.3  # nothing twice
    found = positions(held, original)
    assert_in_order(found, gaps=1)
    assert found[0][0] < 1.0 and found[-1][0] > 42.0
    assert any("retrying" in line or "lost" in line for line in sender.err) or "drops" in "".join(sender.err)


@needs_ffmpeg
def test_an_hls_server_that_goes_away_and_comes_back_sends_nothing_twice(
    base: str,
    db: redis.Redis,
    original: np.ndarray,
    stage: Stage,
) -> None:
    source, sender, sid = stage.live("hls", base, length_s=14.0)
    wait_for(lambda: len(session_pcm(db, sid)) >= 2 * SAMPLE_RATE * 4, "4 s of the stream")
    source.unserve()  # a network blip: the segments keep coming, nobody can fetch them
    time.sleep(4.0)
    source.serve()
    source.wait(30)
    time.sleep(3.0)
    sender.interrupt()
    assert sender.wait() == 0, sender.err[-5:]
    held = as_float(session_pcm(db, sid))
    assert held.size / SAMPLE_RATE <= 14.0 + 0.3
    found = positions(held, original)
    assert_in_order(found)
    assert found[-1][0] > 11.0


# -- the ingest side -----------------------------------------------------------------------------------
def test_an_ingest_restart_mid_stream_loses_and_repeats_nothing(
    redis_url: str, db: redis.Redis, excerpt: object, stage: Stage
) -> None:
    path = excerpt(10.0, 8.0)  # type: ignore[operator]
    served = ingest(redis_url)
    sender = stage.send(str(path), "--url", served.base)
    sid = sender.printed("session")
    wait_for(lambda: len(session_pcm(db, sid)) >= 2 * SAMPLE_RATE * 2, "2 s of audio")
    served.stop()
    time.sleep(2.0)
    served = ingest(redis_url, port=served.port)
    try:
        assert sender.wait() == 0, sender.err[-5:]
    finally:
        served.stop()
    assert session_pcm(db, sid) == float_to_pcm16(load_audio(path))
    assert audio_ended(db, sid)


def test_ctrl_c_twice_leaves_the_session_open_and_another_sender_finishes_it(
    redis_url: str, db: redis.Redis, excerpt: object, stage: Stage
) -> None:
    path = excerpt(0.0, 20.0)  # type: ignore[operator]
    rest = excerpt(20.0, 2.0, "rest.wav")  # type: ignore[operator]
    served = ingest(redis_url)
    sender = stage.send(str(path), "--url", served.base)
    sid = sender.printed("session")
    token = sender.printed("continue").split("--token ")[1]
    wait_for(lambda: len(session_pcm(db, sid)) >= 2 * SAMPLE_RATE * 2, "2 s of audio")
    served.stop()  # ingest is away: the first Ctrl-C cannot end the session
    sender.interrupt()
    time.sleep(1.0)
    sender.interrupt()
    assert sender.wait() == 130
    assert any("left the session open" in line for line in sender.err), sender.err[-5:]
    assert not audio_ended(db, sid)
    held = len(session_pcm(db, sid))
    served = ingest(redis_url, port=served.port)
    try:
        again = stage.send(str(rest), "--url", served.base, "--session", sid, "--token", token)
        assert again.wait() == 0, again.err[-5:]
    finally:
        served.stop()
    assert session_pcm(db, sid)[held:] == float_to_pcm16(load_audio(rest))
    assert audio_ended(db, sid)


# -- clear errors --------------------------------------------------------------------------------------
def test_mistakes_are_one_line_and_exit_2(
    base: str, db: redis.Redis, tmp_path: Path, excerpt: object, stage: Stage
) -> None:
    sessions_before = db.zcard(keys.sessions_active())
    cases: list[tuple[list[str], str]] = [
        (["--device", "no-such-card"], "unknown input device"),
        ([str(excerpt(0.0, 1.0)), "--session", "nosuch", "--token", "wrong"], "refused"),  # type: ignore[operator]
        ([str(tmp_path / "missing.wav")], "no such file"),
        ([f"rtmp://127.0.0.1:{free_port()}/live/x", "--source-tries", "2"], "after 2 tries"),
    ]
    if FFMPEG is not None:
        video = tmp_path / "video-only.mp4"
        subprocess.run(
            [
                FFMPEG,
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=64x64:rate=5",
                "-t",
                "1",
                str(video),
            ],
            check=True,
        )
        cases.append(([str(video)], "no audio track"))
    for args, expected in cases:
        sender = stage.send(*args, "--url", base)
        assert sender.wait() == 2, (args, sender.err[-5:])
        assert expected in last_error(sender), (args, sender.err[-3:])
        if "--source-tries" not in args:
            assert len([line for line in sender.err if line.strip()]) == 1, sender.err
    assert db.zcard(keys.sessions_active()) == sessions_before  # no session left behind


# -- a sound card ----------------------------------------------------------------------------------------
@needs_pulse
def test_a_sound_card_channel_through_portaudio_and_a_pulseaudio_null_sink(
    base: str, db: redis.Redis, original: np.ndarray, tmp_path: Path, stage: Stage
) -> None:
    """The speech plays on channel 2 of the card, loud noise on channel 1: `--channel 2` must take only
    the speech, through PortAudio (ALSA's PulseAudio device) from the null sink's monitor."""
    length_s = 6.0
    speech = original[5 * SAMPLE_RATE : round((5 + length_s) * SAMPLE_RATE)]
    noise = np.random.default_rng(1).normal(0, 0.1, speech.size).astype(np.float32)
    card = tmp_path / "card.wav"
    sf.write(card, np.stack([noise, speech], axis=1), SAMPLE_RATE, subtype="PCM_16")
    with pulse_server(tmp_path) as env:
        listed = stage.send("--list-devices", env=env)
        assert listed.wait() == 0
        assert any("pulse" in line for line in listed.out), listed.out
        sender = stage.send("--device", "pulse", "--channel", "2", "--url", base, env=env)
        sid = sender.printed("session")
        wait_for(lambda: len(session_pcm(db, sid)) >= SAMPLE_RATE, "the card's first audio")
        played = subprocess.run(["paplay", "--device=desk", str(card)], env=os.environ | env, timeout=60)
        assert played.returncode == 0
        time.sleep(1.0)
        sender.interrupt()
        assert sender.wait() == 0, sender.err[-5:]
    held = as_float(session_pcm(db, sid))  # silence, the speech, silence: each second of it, in order
    found = positions(speech, held)
    assert len(found) == length_s
    assert_in_order(found)
