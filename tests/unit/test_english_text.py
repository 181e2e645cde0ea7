"""English that reads as English: pieces joined as words, punctuation and clitics attached, ordinals whole,
and no Japanese committed into an English track."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from asr_worker.core import guards
from asr_worker.core.seam import Segment
from asr_worker.core.words import Word, assemble_pieces, foreign_to_english, join_words
from asr_worker.transcribers.whisper import to_segment
from common.options import StreamingOptions
from common.schemas import CaptionEvent
from common.text import join_text
from publisher.export import build_cues, rules_for


@pytest.mark.parametrize(
    ("pieces", "text"),
    [
        (["Everyone", "'s", "here."], "Everyone's here."),
        (["I", "'m", "going"], "I'm going"),
        (["we", "do", "n't", "know"], "we don't know"),
        (["they", "'re", "ready", ",", "and", "we", "'ve", "seen", "it"], "they're ready, and we've seen it"),
        (["you", "'ll", "see", "what", "I", "'d", "do", "!"], "you'll see what I'd do!"),
        (["Symphony", "No.", "40", "th"], "Symphony No. 40th"),
        (["the", "1", "st", "and", "2", "nd", "half"], "the 1st and 2nd half"),
        (["today", ".", "The", "recording"], "today. The recording"),
        (["the", "car", "'s", "engine"], "the car's engine"),
        (["(", "live", ")", "tonight", "?"], "(live) tonight?"),
        (["north", "is", "the", "third", "way"], "north is the third way"),
    ],
)
def test_english_pieces_join_as_english(pieces: list[str], text: str) -> None:
    assert join_text(pieces, " ") == text


def test_japanese_pieces_join_without_spaces() -> None:
    assert join_text(["皆さま", "こんばん", "は。"], "") == "皆さまこんばんは。"


def _raw(*texts: str) -> list[Word]:
    return [Word(i * 0.2, i * 0.2 + 0.2, t, 0.9 - i * 0.01) for i, t in enumerate(texts)]


def test_pieces_without_a_leading_space_continue_the_word_before() -> None:
    """faster-whisper splits a translation of Japanese speech on tokens: " program", " t", "od", "ay"."""
    words = assemble_pieces(_raw(" the", " program", " t", "od", "ay", "."))
    assert [w.text for w in words] == ["the", "program", "today."]
    today = words[-1]
    assert (today.start, today.end) == (0.4, 1.2)
    assert today.probability == pytest.approx(0.85)
    assert join_words(words, " ") == "the program today."


def test_ordinals_and_clitics_from_tokens_stay_whole() -> None:
    words = assemble_pieces(_raw(" Everyone", "'s", " Symphony", " No", ".", " 40", "th"))
    assert join_words(words, " ") == "Everyone's Symphony No. 40th"


def test_the_whisper_adapter_assembles_pieces_only_for_spaced_output() -> None:
    raw = [
        SimpleNamespace(start=0.0, end=0.3, word=" program", probability=0.9),
        SimpleNamespace(start=0.3, end=0.4, word=" t", probability=0.8),
        SimpleNamespace(start=0.4, end=0.6, word="oday", probability=0.7),
    ]
    segment = SimpleNamespace(
        start=0.0, end=0.6, words=raw, no_speech_prob=0.0, avg_logprob=-0.1, compression_ratio=1.0
    )
    assert to_segment(segment, spaced=True).text == "programtoday"  # two words: program, today
    assert [w.text for w in to_segment(segment, spaced=True).words] == ["program", "today"]
    assert [w.text for w in to_segment(segment).words] == ["program", "t", "oday"]


@pytest.mark.parametrize(
    ("text", "foreign"),
    [
        ("では", True),
        ("コンサート", True),
        ("演奏会", True),
        ("Dvořák", False),
        ("café", False),
        ("40th", False),
        ("'s", False),
        ("—", False),
    ],
)
def test_foreign_script_is_recognised(text: str, foreign: bool) -> None:
    assert foreign_to_english(text) is foreign


def test_japanese_pieces_are_never_committed_to_an_english_track() -> None:
    words = (
        Word(0.0, 0.4, "では"),
        Word(0.5, 0.9, "Ladies"),
        Word(1.0, 1.3, "and"),
        Word(1.4, 1.9, "gentlemen."),
    )
    segment = Segment(0.0, 1.9, words, word_probability=0.9)
    english = StreamingOptions(language="ja", task="translate")
    kept = guards.clean([segment], english)
    assert [w.text for s in kept for w in s.words] == ["Ladies", "and", "gentlemen."]
    japanese = StreamingOptions(language="ja")
    assert next(w.text for s in guards.clean([segment], japanese) for w in s.words) == "では"


def test_exported_english_cues_read_as_english() -> None:
    finals = [
        CaptionEvent(type="final", track="en", text=t, start=s, end=s + 0.5, emitted_at=0.0, seq=i + 1)
        for i, (t, s) in enumerate([("Everyone", 0.0), ("'s here", 0.5), (".", 1.0)])
    ]
    cues = build_cues(finals, rules_for("en"))
    assert [c.text for c in cues] == ["Everyone's here."]


def test_a_segment_decoded_without_word_timestamps_spreads_its_words() -> None:
    """A translation unit is decoded without the alignment pass: its words share the segment's time."""
    segment = SimpleNamespace(
        start=1.0,
        end=3.0,
        text=" Everyone's here.",
        words=None,
        no_speech_prob=0.1,
        avg_logprob=-0.2,
        compression_ratio=1.0,
    )
    decoded = to_segment(segment, spaced=True)
    assert [w.text for w in decoded.words] == ["Everyone's", "here."]
    assert decoded.words[0].start == 1.0 and decoded.words[-1].end == pytest.approx(3.0)
    assert 0.8 < decoded.word_probability < 0.85  # exp(-0.2)
