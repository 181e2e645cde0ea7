"""The translation track: each sentence of the transcript translated once, as one English final carrying its
audio span; the Translator seam; bilingual export; how a translation run is scored."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from asr_worker.core.interpreter import MAX_UNIT_S, SentenceInterpreter
from asr_worker.core.processor import OnlineProcessor
from asr_worker.core.seam import Segment, TranscribeRequest, TranslateRequest, Translator
from asr_worker.core.words import Word
from asr_worker.transcribers.scripted import ScriptedTranscriber
from asr_worker.transcribers.translator import WhisperTranslator
from common.audio import SAMPLE_RATE
from common.options import StreamingOptions
from common.schemas import CaptionEvent
from publisher.export import build_bilingual_cues, rules_for, to_srt
from wsp.bench.scoring import Sentence, chrf, span_timings
from wsp.bench.simulation import TimedCommit, simulate

OPTIONS = StreamingOptions(language="ja", task="translate", vad=False)


@dataclass
class Dictionary:
    """A translator that looks each unit up: what a text translator would do, and a record of requests."""

    table: dict[str, str]
    requests: list[TranslateRequest] = field(default_factory=list)

    def translate(self, request: TranslateRequest) -> str:
        self.requests.append(request)
        return self.table.get(request.source, "")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(start, end, text) for text, start, end in spec]


def test_the_translator_seam_is_a_protocol_both_implementations_meet() -> None:
    translators: list[Translator] = [Dictionary({}), WhisperTranslator(ScriptedTranscriber([]))]
    assert all(callable(t.translate) for t in translators)


def test_each_sentence_is_translated_once_it_is_committed_with_its_audio_span() -> None:
    table = {"皆さんこんばんは。": "Good evening, everyone.", "本日はようこそ。": "Welcome today."}
    translator = Dictionary(table)
    interpreter = SentenceInterpreter(translator, OPTIONS)
    interpreter.insert_audio(silence(3.0))
    interpreter.hear(
        words(("皆さん", 0.5, 0.9), ("こんばんは。", 1.0, 1.6), ("本日は", 2.0, 2.4)), settled=False
    )
    assert interpreter.ready()
    step = interpreter.process_iter()
    assert [(w.text, w.start, round(w.end, 3)) for w in step.committed] == [
        ("Good evening, everyone.", 0.0, 1.9)
    ]
    request = translator.requests[0]
    assert request.source == "皆さんこんばんは。" and request.language == "ja"
    assert request.offset_s == 0.0 and request.audio.size == round(1.9 * SAMPLE_RATE)
    assert not interpreter.ready()  # 本日は is not a sentence yet
    assert interpreter.process_iter().committed == []

    interpreter.insert_audio(silence(1.0))
    interpreter.hear(words(("ようこそ。", 2.5, 3.0)), settled=True)
    step = interpreter.process_iter()
    assert [(w.text, w.start, round(w.end, 3)) for w in step.committed] == [("Welcome today.", 1.6, 3.3)]
    assert translator.requests[-1].context == "Good evening, everyone."


def test_a_sentence_without_punctuation_ends_at_a_pause_or_when_the_transcript_settles() -> None:
    translator = Dictionary({"開演に先立ちまして": "Before the concert,", "ご案内します": "an announcement"})
    interpreter = SentenceInterpreter(translator, OPTIONS)
    interpreter.insert_audio(silence(4.0))
    interpreter.hear(
        words(("開演に", 0.0, 0.5), ("先立ちまして", 0.5, 1.2), ("ご案内", 1.9, 2.4)), settled=False
    )
    assert [w.text for w in interpreter.process_iter().committed] == ["Before the concert,"]
    interpreter.hear(words(("します", 2.4, 2.8)), settled=False)
    assert not interpreter.ready()  # still unstable text after it
    interpreter.hear([], settled=True)
    assert [w.text for w in interpreter.process_iter().committed] == ["an announcement"]


def test_a_long_sentence_is_interpreted_by_clauses() -> None:
    translator = Dictionary({})
    interpreter = SentenceInterpreter(translator, OPTIONS)
    interpreter.insert_audio(silence(MAX_UNIT_S + 3))
    said = words(
        ("携帯電話など、", 0.0, 2.0),
        ("音の出る機器の", 2.0, 4.0),
        ("電源は", 4.0, 6.0),
        ("お切りに", 6.0, 7.5),
    )
    interpreter.hear(said, settled=False)
    interpreter.process_iter()
    assert [r.source for r in translator.requests] == ["携帯電話など、"]


def test_a_long_stretch_without_clause_marks_is_cut_at_the_words_that_fit() -> None:
    """The transcript came late and all at once (a slow machine): the end of the stream still translates
    it in units Whisper's window can hold, never one long unit."""
    translator = Dictionary({})
    interpreter = SentenceInterpreter(translator, OPTIONS)
    interpreter.insert_audio(silence(31.0))
    interpreter.hear([Word(i * 1.0, i * 1.0 + 0.9, f"語{i}") for i in range(30)], settled=True)
    interpreter.finish()
    spans = [(r.offset_s, r.offset_s + r.audio.size / SAMPLE_RATE) for r in translator.requests]
    assert len(spans) >= 4 and all(end - start <= MAX_UNIT_S + 1.0 for start, end in spans)
    assert "".join(r.source for r in translator.requests) == "".join(f"語{i}" for i in range(30))


def test_the_end_of_the_stream_translates_what_is_left() -> None:
    translator = Dictionary({"ありがとう": "Thank you"})
    interpreter = SentenceInterpreter(translator, OPTIONS)
    interpreter.insert_audio(silence(2.0))
    interpreter.hear(words(("ありがとう", 0.5, 1.5)), settled=False)
    assert not interpreter.ready()
    assert [w.text for w in interpreter.finish().committed] == ["Thank you"]


def test_a_resumed_interpreter_neither_repeats_nor_drops_a_sentence() -> None:
    table = {"一つ目。": "One.", "二つ目。": "Two."}
    first = SentenceInterpreter(Dictionary(table), OPTIONS)
    first.insert_audio(silence(3.0))
    first.hear(words(("一つ目。", 0.2, 1.0)), settled=False)
    assert [w.text for w in first.process_iter().committed] == ["One."]
    first.hear(words(("二つ", 1.5, 2.0)), settled=False)
    saved = first.state()

    resumed = SentenceInterpreter(Dictionary(table), OPTIONS, saved)
    assert resumed.buffer_start_s == pytest.approx(1.0)
    resumed.insert_audio(silence(3.0 - resumed.buffer_start_s))  # the worker re-reads from the buffer start
    resumed.hear(words(("目。", 2.0, 2.5)), settled=True)
    committed = resumed.process_iter().committed
    assert [w.text for w in committed] == ["Two."] and committed[0].start >= 1.0


def test_skipping_ahead_gives_up_the_untranslated_transcript() -> None:
    interpreter = SentenceInterpreter(Dictionary({}), OPTIONS)
    interpreter.insert_audio(silence(2.0))
    interpreter.hear(words(("途中", 0.5, 1.0)), settled=False)
    skip = interpreter.skip_to(10 * SAMPLE_RATE)
    assert (skip.start_s, skip.end_s, skip.committed) == (2.0, 10.0, [])
    assert interpreter.finish().committed == []


@dataclass
class Overhearing:
    """Hears English words with their Whisper pieces and a Japanese one among them."""

    def transcribe(self, request: TranscribeRequest) -> list[Segment]:
        assert request.options.task == "translate"
        said = (
            Word(0.0, 0.3, "では"),
            Word(0.3, 0.8, "Ladies"),
            Word(0.9, 1.5, "and"),
            Word(1.6, 2.0, "gentlemen."),
        )
        return [Segment(0.0, 2.0, said, word_probability=0.9)]


def test_whisper_translation_commits_english_only() -> None:
    translator = WhisperTranslator(Overhearing())
    options = StreamingOptions(language="ja", task="transcribe")
    request = TranslateRequest("では皆さま", "ja", silence(2.0), 0.0, "", options)
    assert translator.translate(request) == "Ladies and gentlemen."
    assert translator.translate(TranslateRequest("", "ja", silence(0), 0.0, "", options)) == ""


def test_translation_decodes_take_fewer_tokens_per_second() -> None:
    assert StreamingOptions(language="ja", task="translate").max_tokens_per_s == 8.0
    assert StreamingOptions(language="ja").max_tokens_per_s == 12.0


def test_a_simulated_run_pairs_every_english_final_with_its_japanese() -> None:
    """The transcript track and the interpreter run together as a worker runs them."""
    japanese = ScriptedTranscriber.from_text("皆さん こんばんは。 本日は 秋の 演奏会に ようこそ。")
    english = ScriptedTranscriber.from_text("Good evening. Welcome to autumn's concert.")

    @dataclass
    class Both:
        def transcribe(self, request: TranscribeRequest) -> list[Segment]:
            timeline = english if request.options.task == "translate" else japanese
            return ScriptedTranscriber(timeline, tail_s=0.0).transcribe(request)

    engine = Both()
    source = OnlineProcessor(engine, OPTIONS.model_copy(update={"task": "transcribe"}))
    interpreter = SentenceInterpreter(WhisperTranslator(engine), OPTIONS)
    result = simulate(interpreter, silence(4.5), 0.25, comp_aware=False, source=source)
    assert [" ".join(w.text for w in c.words) for c in result.commits] == [
        "Good evening.",
        "Welcome to autumn's concert.",
    ]
    ends = [c.end_s for c in result.commits]
    sentence_ends = [c.end_s for c in result.source_commits if c.words[-1].ends_sentence]
    assert 1.4 <= ends[0] <= 1.4 + 0.3  # こんばんは。 ends at 1.4 s: its audio and a little after
    assert ends[1] >= sentence_ends[-1]


def _final(track: str, seq: int, text: str, start: float, end: float) -> CaptionEvent:
    return CaptionEvent(type="final", track=track, text=text, start=start, end=end, emitted_at=0.0, seq=seq)


def test_bilingual_export_puts_each_sentence_above_its_translation() -> None:
    ja = [
        _final("ja", 1, "今日は", 0.5, 1.0),
        _final("ja", 2, "いい天気です。", 1.0, 2.25),
        _final("ja", 3, "明日は雨でしょう。", 3.0, 4.8),
        _final("ja", 4, "以上です。", 6.0, 7.0),
    ]
    en = [_final("en", 1, "It is fine today.", 0.3, 2.4), _final("en", 2, "It will rain tomorrow.", 2.4, 5.0)]
    cues = build_bilingual_cues(ja, en, rules_for("ja"), rules_for("en"))
    assert [c.lines for c in cues] == [
        ("今日はいい天気です。", "It is fine today."),
        ("明日は雨でしょう。", "It will rain tomorrow."),
        ("以上です。",),  # nothing came for it: the transcript alone
    ]
    assert [(c.start, c.end) for c in cues] == [(0.3, 2.4), (2.4, 5.0), (6.0, 7.0)]
    assert "1\n00:00:00,300 --> 00:00:02,400\n今日はいい天気です。\nIt is fine today.\n" in to_srt(cues)


def test_translation_is_scored_by_chrf_and_sentences_by_audio_span() -> None:
    reference = "Good evening, everyone. Thank you for coming."
    assert chrf(reference, reference) == pytest.approx(100.0)
    assert 0 < chrf(reference, "Good evening. Thanks for coming.") < 100
    sentences = [
        Sentence(0.0, 2.0, "皆さまこんばんは。"),
        Sentence(2.5, 5.0, "ありがとうございます。"),
        Sentence(6, 8, "x"),
    ]
    commits = [
        TimedCommit(3.5, (Word(0.0, 1.8, "Good evening, everyone."),)),
        TimedCommit(7.0, (Word(1.8, 5.1, "Thank you for coming."),)),
    ]
    assert [t.latency_s for t in span_timings(sentences, commits)] == [1.5, 2.0, None]


@dataclass
class Regions:
    """A voice activity detector that hears speech where it is told (absolute times, audio from 0 s)."""

    speech_at: list[tuple[float, float]]

    def speech(self, audio: np.ndarray) -> list[tuple[float, float]]:
        return self.speech_at


def test_a_silence_in_the_audio_ends_a_sentence_whisper_did_not_punctuate() -> None:
    """Whisper stretches a word over the pause after it: the words' times show no gap, the audio does."""
    translator = Dictionary({"開演に先立ちまして": "Before the concert,"})
    interpreter = SentenceInterpreter(translator, OPTIONS, detector=Regions([(0.0, 1.3), (1.8, 3.0)]))
    interpreter.insert_audio(silence(3.0))
    interpreter.hear(
        words(("開演に", 0.0, 0.5), ("先立ちまして", 0.5, 1.8), ("ご案内", 1.8, 2.4)), settled=False
    )
    assert [w.text for w in interpreter.process_iter().committed] == ["Before the concert,"]
    assert translator.requests[0].source == "開演に先立ちまして"


def test_a_sentence_is_translated_as_soon_as_a_silence_follows_its_last_committed_word() -> None:
    """No need to wait for the next sentence's words: the transcript's unstable tail lies after the pause."""
    translator = Dictionary({"開演に先立ちまして": "Before the concert,"})
    interpreter = SentenceInterpreter(translator, OPTIONS, detector=Regions([(0.0, 1.3), (1.9, 2.6)]))
    interpreter.insert_audio(silence(2.6))
    said = words(("開演に", 0.0, 0.5), ("先立ちまして", 0.5, 1.25))
    interpreter.hear(said, settled=False, tail_start=0.9)  # the tail is before the pause: not yet
    assert not interpreter.ready()
    interpreter.hear([], settled=False, tail_start=1.9)
    assert [w.text for w in interpreter.process_iter().committed] == ["Before the concert,"]


@dataclass
class Listener:
    """A translator that listens to the audio (as Whisper does): units need no transcript."""

    listens = True
    requests: list[TranslateRequest] = field(default_factory=list)

    def translate(self, request: TranslateRequest) -> str:
        self.requests.append(request)
        return f"Sentence {len(self.requests)}."


class Loudness:
    """Hears speech wherever the audio is not silent."""

    def speech(self, audio: np.ndarray) -> list[tuple[float, float]]:
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        if loud.size == 0:
            return []
        breaks = np.flatnonzero(np.diff(loud) > SAMPLE_RATE // 10)
        starts = [loud[0], *loud[breaks + 1]]
        ends = [*loud[breaks], loud[-1]]
        return [(a / SAMPLE_RATE, (b + 1) / SAMPLE_RATE) for a, b in zip(starts, ends, strict=True)]


def speech_at(seconds: float, *spans: tuple[float, float]) -> np.ndarray:
    audio = silence(seconds)
    for start, end in spans:
        audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)] = 0.1
    return audio


def test_a_listening_translator_translates_each_sentence_as_soon_as_its_pause_is_heard() -> None:
    """Whisper translates the audio: a sentence need not wait for its transcript, only for the pause."""
    translator = Listener()
    interpreter = SentenceInterpreter(translator, OPTIONS, detector=Loudness())
    audio = speech_at(8.0, (0.5, 2.5), (3.2, 5.0), (5.6, 6.0))
    interpreter.insert_audio(audio[: round(2.6 * SAMPLE_RATE)])
    assert not interpreter.ready()  # 0.1 s of silence: maybe a breath
    interpreter.insert_audio(audio[round(2.6 * SAMPLE_RATE) : round(2.9 * SAMPLE_RATE)])
    step = interpreter.process_iter()
    assert [(w.text, w.start, round(w.end, 3)) for w in step.committed] == [("Sentence 1.", 0.0, 2.8)]
    interpreter.hear(words(("皆さん", 0.5, 1.2), ("こんばんは", 1.2, 2.5)), settled=True)  # late: dropped
    interpreter.hear(words(("本日は", 3.2, 5.0)), settled=True)
    interpreter.insert_audio(audio[round(2.9 * SAMPLE_RATE) : round(5.4 * SAMPLE_RATE)])
    step = interpreter.process_iter()
    assert [(w.start, round(w.end, 3)) for w in step.committed] == [(2.8, 5.3)]
    assert translator.requests[1].source == "本日は"
    interpreter.insert_audio(audio[round(5.4 * SAMPLE_RATE) : round(6.5 * SAMPLE_RATE)])
    assert not interpreter.ready()  # 0.4 s of speech and a pause: maybe a breath
    interpreter.insert_audio(audio[round(6.5 * SAMPLE_RATE) :])  # the speaker has stopped
    assert [(w.text, w.start) for w in interpreter.process_iter().committed] == [("Sentence 3.", 5.3)]
    assert interpreter.finish().committed == []
