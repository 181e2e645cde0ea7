"""What the tests of `wsp send` share across tiers: the concert sample, cutting excerpts of it, and the
encoders and senders of one test (:class:`Stage`).

The fixtures here are made available to a tier by importing them in its ``conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common.audio import SAMPLE_RATE, load_audio
from wsp.bench.live_sources import FFMPEG, LiveSource, SendProcess

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "common" / "samples" / "ja_concert.wav"
IN_CI = bool(os.environ.get("CI"))
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None and not IN_CI, reason="needs ffmpeg (apt install ffmpeg)")


@pytest.fixture(scope="module")
def original() -> np.ndarray:
    return load_audio(SAMPLE)


@pytest.fixture
def excerpt(tmp_path: Path, original: np.ndarray) -> Iterator[object]:
    def cut(start_s: float, length_s: float, name: str = "excerpt.wav") -> Path:
        path = tmp_path / name
        first = round(start_s * SAMPLE_RATE)
        sf.write(path, original[first : first + round(length_s * SAMPLE_RATE)], SAMPLE_RATE, subtype="PCM_16")
        return path

    yield cut


class Stage:
    """The encoders and senders of one test; all of them are ended with it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._sources: list[LiveSource] = []
        self._senders: list[SendProcess] = []

    def source(self, kind: str, audio: Path = SAMPLE, port: int | None = None) -> LiveSource:
        source = LiveSource(kind, audio, self.workdir, port)
        self._sources.append(source)
        return source

    def send(self, *args: str, env: dict[str, str] | None = None) -> SendProcess:
        sender = SendProcess(*args, env=env)
        self._senders.append(sender)
        return sender

    def live(
        self, kind: str, ingest_url: str, audio: Path = SAMPLE, **play: float
    ) -> tuple[LiveSource, SendProcess, str]:
        """An encoder playing ``audio`` as ``kind``, and `wsp send` sending it into a new session."""
        source = self.source(kind, audio)
        source.play(**play)
        sender = self.send(source.url, "--url", ingest_url)
        return source, sender, sender.printed("session")

    def close(self) -> None:
        for sender in self._senders:
            sender.close()
        for source in self._sources:
            source.close()


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    on = Stage(tmp_path)
    yield on
    on.close()
