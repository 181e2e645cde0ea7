"""``wsp bench send``: what `wsp send` adds, per kind of source: the delay from a sample leaving the source
(the decoder, or PortAudio's callback) to ingest acknowledging it, p50/p90, and the CPU one sender uses.
For the streams also the delay from the sample going into the encoder (written into FFmpeg in real time by
this process, as a capture card would) to the acknowledgement: the protocol's own buffering included.

Real parts on this machine: Redis, ingest and the publisher as processes (no worker: the figures are the
sender's), FFmpeg playing the concert sample in real time as an RTMP server, an SRT listener and an HLS
encoder, the file itself, and a PulseAudio null sink as the sound card (where PulseAudio is installed).
Each kind is one `wsp send` process; its ``--stats`` file holds the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import redis
import soundfile as sf

from common.audio import SAMPLE_RATE, float_to_pcm16, load_audio
from common.errors import ConfigError
from wsp.bench.audio_match import as_float, positions, session_pcm
from wsp.bench.live_sources import PULSEAUDIO, FeedClock, SendProcess, pulse_server
from wsp.bench.live_sources import LiveSource as Encoder
from wsp.bench.processes import LocalPipeline

SOURCE_KINDS = ("file", "rtmp", "srt", "hls", "device")
SETTLE_S = 2.0
"""After the source has played everything, time for the last audio to arrive before Ctrl-C."""
LEASE_TTL_S = 3.0
WARMUP_S = 5.0
"""The first seconds of a stream are left out of the encoder-to-ack delay: connecting and probing."""


def run_send_bench(
    sample: Path, kinds: Sequence[str], seconds: float, workdir: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Figures per kind (the ``--stats`` of each sender), on ``seconds`` of ``sample``."""
    unknown = sorted(set(kinds) - set(SOURCE_KINDS))
    if unknown:
        raise ConfigError(f"unknown source kinds {unknown}; choose from {', '.join(SOURCE_KINDS)}")
    audio = load_audio(sample)
    if seconds <= 0 or seconds > audio.size / SAMPLE_RATE:
        raise ConfigError(f"--seconds must be between 0 and the sample's {audio.size / SAMPLE_RATE:.0f} s")
    with _workdir(workdir) as folder:
        excerpt = folder / "excerpt.wav"
        sf.write(excerpt, audio[: round(seconds * SAMPLE_RATE)], SAMPLE_RATE, subtype="PCM_16")
        with LocalPipeline(folder / "pipeline", None, LEASE_TTL_S) as pipeline:
            pipeline.start(workers=0)
            return {
                kind: _one(kind, excerpt, seconds, pipeline.ingest_url, pipeline.redis_url, folder)
                for kind in kinds
            }


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="wsp-bench-send-") as folder:
        yield Path(folder)


def _one(
    kind: str, excerpt: Path, seconds: float, ingest: str, redis_url: str, folder: Path
) -> dict[str, Any]:
    stats = folder / f"{kind}.json"
    common = ["--url", ingest, "--stats", str(stats)]
    if kind == "file":
        sender = SendProcess(str(excerpt), *common)
        try:
            sender.printed("session")
            sender.wait(seconds + 60)
        finally:
            sender.close()
    elif kind == "device":
        _device(excerpt, seconds, common, folder)
    else:
        encoder = Encoder(kind, excerpt, folder)
        audio = load_audio(excerpt)
        clock = encoder.feed(float_to_pcm16(audio))
        sender = SendProcess(encoder.url, *common)
        try:
            sid = sender.printed("session")
            clock.join(seconds + 30)
            encoder.wait(30)
            time.sleep(SETTLE_S)
            sender.interrupt()
            sender.wait()
        finally:
            sender.close()
            encoder.close()
        with redis.Redis.from_url(redis_url) as db:
            held = as_float(session_pcm(db, sid))
        streamed: dict[str, Any] = json.loads(stats.read_text(encoding="utf-8"))
        return streamed | _from_the_encoder(streamed["acks_at"], clock, held, audio)
    figures: dict[str, Any] = json.loads(stats.read_text(encoding="utf-8"))
    return figures


def _from_the_encoder(
    acks: list[list[float]], clock: FeedClock, held: np.ndarray, fed: np.ndarray
) -> dict[str, Any]:
    """The delay from a sample going into the encoder to ingest acknowledging it, after the start-up.

    Which fed sample a session sample is comes from locating the session's first second of sound in what
    was fed (the encoder's priming and an HLS reader's start shift them).
    """
    found = [(i, *positions(held[i * SAMPLE_RATE : (i + 1) * SAMPLE_RATE], fed)[0]) for i in range(3)]
    index, at_s, score = max(found, key=lambda f: f[2])
    offset = round(at_s * SAMPLE_RATE) - index * SAMPLE_RATE
    delays = []
    for at, samples in acks:
        if samples < WARMUP_S * SAMPLE_RATE:
            continue
        went_in = clock.at(int(samples) - 1 + offset)
        if went_in is not None:
            delays.append(at - went_in)
    p50, p90 = np.percentile(delays, [50, 90]) if delays else (float("nan"), float("nan"))
    return {
        "encoder_to_ack_p50_s": round(float(p50), 4),
        "encoder_to_ack_p90_s": round(float(p90), 4),
        "encoder_match": round(score, 3),
    }


def _device(excerpt: Path, seconds: float, common: list[str], folder: Path) -> None:
    """The excerpt played into a PulseAudio null sink; `wsp send` records its monitor through PortAudio."""
    if PULSEAUDIO is None:
        raise ConfigError("the device kind needs PulseAudio (apt install pulseaudio pulseaudio-utils)")
    with pulse_server(folder) as env:
        sender = SendProcess("--device", "pulse", *common, env=env)
        try:
            sender.printed("session")  # the card is open before the session is made
            subprocess.run(["paplay", str(excerpt)], env=os.environ | env, timeout=seconds + 30, check=True)
            time.sleep(SETTLE_S)
            sender.interrupt()
            sender.wait()
        finally:
            sender.close()


def table(figures: dict[str, dict[str, Any]]) -> str:
    """The figures as the README's table."""
    head = "| source | audio | sender: p50 | p90 | max | encoder to ack: p50 | p90 | CPU (one core) |"
    rows = [head, "|---" * 8 + "|"]
    for kind, f in figures.items():
        delays = [f"{1000 * f[f'delay_{q}_s']:.0f} ms" for q in ("p50", "p90", "max")]
        total = [f.get(f"encoder_to_ack_{q}_s") for q in ("p50", "p90")]
        delays += [f"{1000 * t:.0f} ms" if t is not None else "-" for t in total]
        rows.append(f"| {kind} | {f['audio_s']:.0f} s | {' | '.join(delays)} | {f['cpu_percent']:.1f} % |")
    return "\n".join(rows)
