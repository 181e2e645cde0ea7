"""The streaming core with the real bundled Whisper model on real audio (slow: marker `model`).

Streams are computation-unaware (the clock is the audio), so results do not depend on machine load.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from asr_worker.core.processor import OnlineProcessor, free_steps
from asr_worker.core.seam import TranscribeRequest
from asr_worker.core.words import Word
from asr_worker.transcribers.silero import SileroDetector
from asr_worker.transcribers.whisper import MAX_LENGTH, PROMPT_OVERHEAD, WhisperTranscriber, token_cap
from common.audio import SAMPLE_RATE, load_audio
from common.options import StreamingOptions
from common.settings import Settings
from wsp.bench.nonspeech import signals as nonspeech_signals
from wsp.bench.scoring import error_rate, lost_tail_s, normalise_for_scoring
from wsp.bench.simulation import SimulationResult, simulate

SAMPLES = Path(__file__).resolve().parents[2] / "common" / "samples"
JA_SEGMENTS = Path("/work/shared/eval/ja/ja_synth_concert_jf_alpha.segments.json")
JA_PREFIX_S = 25.0
"""About this much of the Japanese clip is streamed: the sentences that end by then (plus one more if it
ends within a second and a half), cut in the pause after the last of them."""
TRANSLATE_PREFIX_S = 13.3
"""The concert's first two sentences (they end at 12.97 s, in a pause): enough English to read as English."""
NONSPEECH_S = 8.0
NONSPEECH_SEEDS = 2
NONSPEECH_CHUNK_S = 1.0
CHUNK_S = 0.5


@pytest.fixture(scope="module")
def transcriber() -> WhisperTranscriber:
    return WhisperTranscriber.load(Settings())


@pytest.fixture(scope="module")
def ja_prefix() -> tuple[np.ndarray, str | None]:
    """The first ~25 s of the Japanese concert clip, and the reference text of exactly those sentences
    (None when the sentence timings are not available: the clip is then simply cut at 25 s)."""
    if not JA_SEGMENTS.is_file():
        return load_audio(SAMPLES / "ja_concert.wav", end_s=JA_PREFIX_S), None
    sentences = json.loads(JA_SEGMENTS.read_text(encoding="utf-8"))
    kept = [s for s in sentences if s["end"] <= JA_PREFIX_S + 1.5]
    following = sentences[len(kept)]["start"] if len(kept) < len(sentences) else kept[-1]["end"] + 1.0
    cut = (kept[-1]["end"] + following) / 2
    audio = load_audio(SAMPLES / "ja_concert.wav", end_s=cut)
    return audio, "".join(s["text"] for s in kept)


def stream(transcriber: WhisperTranscriber, audio: np.ndarray, options: StreamingOptions) -> SimulationResult:
    detector = SileroDetector(options.vad_threshold)
    processor = OnlineProcessor(transcriber, options, detector=detector, clock=free_steps)
    return simulate(processor, audio, chunk_s=CHUNK_S, comp_aware=False)


def committed(result: SimulationResult) -> list[Word]:
    return [w for c in result.commits for w in c.words]


def assert_append_only_and_monotonic(result: SimulationResult, audio_s: float) -> None:
    emitted = [c.emitted_s for c in result.commits]
    assert emitted == sorted(emitted)
    for earlier, later in itertools.pairwise(result.commits):
        assert later.start_s >= earlier.end_s - 1e-6  # a later commit never reaches back into an earlier one
    for before, after in itertools.pairwise(committed(result)):
        assert before.end <= after.start + 1e-6
    for word in committed(result):
        assert 0.0 <= word.start <= word.end <= audio_s + 1e-6
    for commit in result.commits:
        assert commit.emitted_s >= commit.end_s - 1e-6  # nothing is committed before it was heard


def assert_nothing_lost_at_the_end(result: SimulationResult, audio: np.ndarray) -> None:
    speech = SileroDetector().speech(audio)
    assert speech, "the clip should contain speech"
    assert lost_tail_s(speech, result.commits) == 0


@pytest.fixture(scope="module")
def jfk(transcriber: WhisperTranscriber) -> tuple[np.ndarray, SimulationResult]:
    audio = load_audio(SAMPLES / "en_jfk.wav")
    return audio, stream(transcriber, audio, StreamingOptions(language="en"))


@pytest.fixture(scope="module")
def ja_run(
    transcriber: WhisperTranscriber, ja_prefix: tuple[np.ndarray, str | None]
) -> tuple[np.ndarray, SimulationResult]:
    audio, _ = ja_prefix
    return audio, stream(transcriber, audio, StreamingOptions(language="ja"))


def test_english_speech_is_transcribed_as_it_streams(jfk: tuple[np.ndarray, SimulationResult]) -> None:
    audio, result = jfk
    text = result.text(" ")
    reference = (SAMPLES / "en_jfk.txt").read_text(encoding="utf-8")
    assert error_rate(reference, text, "en") <= 0.15, text
    assert len(result.commits) >= 2, "text should arrive while the speech goes on, not only at the end"
    assert_append_only_and_monotonic(result, audio.size / SAMPLE_RATE)
    assert_nothing_lost_at_the_end(result, audio)


def test_english_speech_keeps_every_word_of_the_famous_line(jfk: tuple[np.ndarray, SimulationResult]) -> None:
    _, result = jfk
    text = result.text(" ")
    assert "ask not what your country can do for you" in normalise_for_scoring(text, "en"), text


def test_japanese_speech_is_transcribed_as_it_streams(
    ja_run: tuple[np.ndarray, SimulationResult], ja_prefix: tuple[np.ndarray, str | None]
) -> None:
    _, result = ja_run
    reference = ja_prefix[1]
    if reference is None:
        pytest.skip(f"sentence timings not available for a reference prefix: {JA_SEGMENTS}")
    text = result.text("")
    assert " " not in text  # Japanese pieces are joined without spaces
    assert error_rate(reference, text, "ja") <= 0.35, text
    assert len(result.commits) >= 3, "text should arrive while the speech goes on, not only at the end"


def test_japanese_commits_are_append_only_and_nothing_is_lost_at_the_end(
    ja_run: tuple[np.ndarray, SimulationResult],
) -> None:
    audio, result = ja_run
    assert_append_only_and_monotonic(result, audio.size / SAMPLE_RATE)
    assert_nothing_lost_at_the_end(result, audio)


def test_japanese_speech_is_translated_into_english(
    transcriber: WhisperTranscriber, ja_prefix: tuple[np.ndarray, str | None]
) -> None:
    audio = ja_prefix[0][: round(TRANSLATE_PREFIX_S * SAMPLE_RATE)]
    options = StreamingOptions(language="ja", task="translate")
    assert options.joiner == " "
    result = stream(transcriber, audio, options)
    text = result.text(options.joiner)
    letters = [c for c in text if c.isalpha()]
    assert len(re.findall(r"[A-Za-z]{2,}", text)) >= 5, text
    assert sum(c.isascii() for c in letters) >= 0.9 * len(letters), text
    assert_append_only_and_monotonic(result, audio.size / SAMPLE_RATE)


NONSPEECH = [name for name, _ in nonspeech_signals(1.0, NONSPEECH_SEEDS)]


@pytest.mark.parametrize("name", NONSPEECH)
@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("vad", [True, False], ids=["vad", "no-vad"])
def test_nothing_is_committed_without_speech(
    transcriber: WhisperTranscriber, name: str, language: str, vad: bool
) -> None:
    # Several kinds and seeds: what Whisper makes up from one noise depends on the processor's
    # floating-point path, so no single signal may decide the suite. Without the VAD every step decodes
    # the signal and the guards alone stand.
    audio = dict(nonspeech_signals(NONSPEECH_S, NONSPEECH_SEEDS))[name]
    options = StreamingOptions(language=language, vad=vad)
    detector = SileroDetector(options.vad_threshold) if vad else None
    processor = OnlineProcessor(transcriber, options, detector, clock=free_steps)
    result = simulate(processor, audio, NONSPEECH_CHUNK_S, False)
    assert result.text(options.joiner) == ""
    assert result.commits == []


def test_a_long_buffer_with_a_long_prompt_fits_whispers_context(transcriber: WhisperTranscriber) -> None:
    # 20 s of speech may decode 400 tokens at 20 a second; with a 200-character Japanese prompt the two
    # would pass Whisper's 448-token context, which faster-whisper refuses: the step must fit instead.
    options = StreamingOptions(language="ja", max_tokens_per_s=20)
    audio = load_audio(SAMPLES / "ja_concert.wav", 30.0, 50.0)
    prompt = (SAMPLES / "ja_concert.txt").read_text(encoding="utf-8")[:200]
    segments = transcriber.transcribe(TranscribeRequest(audio, 30.0, prompt, options))
    assert "".join(s.text for s in segments)


def test_the_tokens_of_a_step_and_its_prompt_never_pass_448() -> None:
    options = StreamingOptions(language="ja", max_tokens_per_s=20)
    for prompt_tokens in (0, 100, 180, 223, 400):
        assert (
            min(prompt_tokens, 223) + token_cap(options, 30.0, prompt_tokens) + PROMPT_OVERHEAD <= MAX_LENGTH
        )
    assert token_cap(options, 2.0, 0) == 40
