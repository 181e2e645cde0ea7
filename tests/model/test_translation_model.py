"""The translation track with the real model on real speech: English finals, one per unit of the Japanese
transcript, each carrying the audio span of the Japanese it translates."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from asr_worker.core.words import foreign_to_english
from asr_worker.transcribers.whisper import WhisperTranscriber
from common.audio import SAMPLE_RATE, load_audio
from common.options import StreamingOptions
from common.settings import Settings
from wsp.bench.stream import stream

pytestmark = pytest.mark.model

SAMPLE = Path(__file__).resolve().parents[2] / "common" / "samples" / "ja_concert.wav"
CUT_S = 21.0
"""The first sentences of the concert sample, cut in the pause after 「…設定してください。」."""


def test_japanese_speech_is_interpreted_sentence_by_sentence() -> None:
    transcriber = WhisperTranscriber.load(Settings())
    audio = load_audio(SAMPLE, end_s=CUT_S)
    options = StreamingOptions(language="ja", task="translate")
    result = stream(transcriber, audio, options, chunk_s=0.5, comp_aware=False).result

    finals = [" ".join(w.text for w in c.words) for c in result.commits]
    assert len(finals) >= 2, finals
    assert len(re.findall(r"[A-Za-z]{2,}", " ".join(finals))) >= 8, finals
    assert not any(foreign_to_english(text) for text in finals), finals
    assert not re.search(r" [.,!?]| '(s|m|re|ve|ll|d)\b| n't\b", " ".join(finals)), finals
    spans = [(c.start_s, c.end_s) for c in result.commits]
    assert all(0 <= start < end <= audio.size / SAMPLE_RATE + 1e-6 for start, end in spans), spans
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(spans)), spans
    # Each final pairs with Japanese committed in its span.
    japanese = [w for c in result.source_commits for w in c.words]
    for start, end in spans:
        assert any(start - 0.5 <= w.middle <= end + 0.5 for w in japanese), (start, end)
