"""Guards against text Whisper makes up: silence read as speech, stock phrases, repetition loops."""

from __future__ import annotations

import itertools
import re
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from asr_worker.core.seam import Segment
from asr_worker.core.words import Word, foreign_to_english
from common.options import StreamingOptions

SUBTITLE_CREDITS = tuple(
    re.compile(pattern)
    for pattern in (
        # Japanese video endings: thanks for watching, please subscribe, who made the subtitles.
        r"(最後まで)?(ご|お)?(視聴|覧)(いただ(き|いて))?(誠に|本当に)?(ありがとう|有難う)(ございま(した|す))?",
        r"チャンネル登録(を|も)?(よろしく|宜しく)?(お願い(します|いたします)?)?",
        r"(高評価|グッドボタン)(と|や)?(チャンネル登録)?(を|も)?(よろしく|お願い)[^\s]{0,8}",
        r"字幕(は|の)?(視聴者|ボランティア)?(によって|が)?(作成|提供)(されました|しました)?",
        # English ones.
        r"thank(s|you)((so|very)much)?forwatching(pleasesubscribe)?",
        r"(please)?(like(and)?)?subscribe(to(my|our|the)channel)?",
        r"(subtitle|caption|transcription|translation)s?(by|providedby|madeby)[a-z]{0,40}",
        r"amaraorg(community)?",
    )
)
"""The family of phrases Whisper learned from the end of subtitled videos and says over silence, music
or noise, as patterns on normalised text (no spaces or punctuation), so that
「最後までご視聴いただき誠にありがとうございました」 and "Thanks so much for watching" are one invention."""
CREDIT_SHARE = 0.8
"""A segment is such a phrase when the phrase covers this much of it: a sentence that merely contains
「ご視聴ありがとうございました」 among other words is speech."""

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


def is_known_hallucination(text: str) -> bool:
    """True for a segment that is one of :data:`SUBTITLE_CREDITS` (and little else)."""
    key = normalise(text)
    if not key:
        return False
    covered = max((len(m.group(0)) for p in SUBTITLE_CREDITS for m in p.finditer(key)), default=0)
    return covered >= CREDIT_SHARE * len(key)


def cut_loop(words: list[Word], max_repeats: int) -> list[Word]:
    """Cut ``words`` before a unit of 1 to 4 words that repeats ``max_repeats`` times in a row.

    The first occurrence is kept (a speaker may say 「上に、」 once); the loop is not.
    """
    keys = [normalise(w.text) for w in words]
    for start in range(len(words)):
        for size in range(1, 5):
            unit = keys[start : start + size]
            if len(unit) < size or not "".join(unit):
                break
            repeats = 1
            while keys[start + repeats * size : start + (repeats + 1) * size] == unit:
                repeats += 1
            if repeats >= max_repeats:
                return words[: start + size]
    return words


LOOP_MIN_CHARS = 8
"""A unit said ``max_repeats`` times in a row is a loop once the repeats cover this many characters
(so 100000 and ははは are not)."""
REPEAT_MIN_CHARS = 8
"""A unit said just twice in a row is a loop when it is at least this long ("very, very" is not)."""
REPEAT_MIN_CHARS_UNSPACED = 5
"""The same for unspaced languages, whose characters carry more: 「スタッフの上に」 twice is a loop,
「とてもとても」 is not."""


@dataclass(frozen=True, slots=True)
class Loop:
    """Where a unit of text starts repeating itself back to back, in normalised characters."""

    start: int
    unit: int
    repeats: int

    @property
    def end(self) -> int:
        return self.start + self.unit * self.repeats

    def runs_to_end(self, text: str) -> bool:
        """Whether nothing but the loop follows it in ``text`` (a last repeat cut short included)."""
        rest = text[self.end :]
        return text[self.start : self.start + len(rest)] == rest


def find_loop(
    text: str,
    max_repeats: int,
    repeat_min_chars: int,
    after: int = 0,
    boundaries: frozenset[int] = frozenset(),
) -> Loop | None:
    """The first loop in normalised ``text`` whose second occurrence begins at or after character ``after``
    (the text before it was said earlier: a passage a speaker says twice in a row, across commits, is speech).

    A loop is recognised by its shape, whatever its words: a unit of any length said again right after
    itself, twice if it is long (``repeat_min_chars``), ``max_repeats`` times if it covers
    ``LOOP_MIN_CHARS``. Punctuation between the repeats does not count (the text is normalised). A run
    of digits is a number, not a loop (100,000,000 is eight zeros in a row once normalised).

    A loop may be read from several starting points ("s|soldier|soldier|s"); the first one on a word
    boundary (``boundaries``) is taken, so that the cut after the first occurrence falls between words.
    """
    size_of = len(text)
    for start in range(size_of):
        for unit in range(1, (size_of - start) // 2 + 1):
            if start + unit < after:
                continue  # its second occurrence must begin in the new text
            piece = text[start : start + unit]
            repeats = 1
            while text.startswith(piece, start + repeats * unit):
                repeats += 1
            if repeats < 2 or piece.isdigit():
                continue
            if unit >= repeat_min_chars or (repeats >= max_repeats and repeats * unit >= LOOP_MIN_CHARS):
                return _on_boundary(text, Loop(start, unit, repeats), boundaries)
    return None


def _on_boundary(text: str, loop: Loop, boundaries: frozenset[int]) -> Loop:
    """The same loop read from a later start on a word boundary, if it still repeats as often there."""
    for shift in range(loop.unit):
        start = loop.start + shift
        piece = text[start : start + loop.unit]
        if start in boundaries and all(
            text.startswith(piece, start + k * loop.unit) for k in range(1, loop.repeats)
        ):
            return Loop(start, loop.unit, loop.repeats)
    return loop


def compression_ratio(text: str) -> float:
    """gzip ratio as Whisper computes it: high for repetitive text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


MAX_CHARS_PER_S = 20.0
"""Faster than anyone speaks an unspaced language (Japanese runs at 6-10 characters a second)."""
MAX_WORDS_PER_S = 7.0
"""Faster than anyone speaks a spaced language (fast English runs at about 4 words a second)."""
PACE_MIN_UNITS = 3
"""Segments shorter than this (characters or words) are not judged by their pace: too short to time."""
PACE_MIN_SPAN_S = 0.1
"""The shortest time a segment is taken to cover, whatever its word timestamps say."""


def is_too_fast(segment: Segment, options: StreamingOptions) -> bool:
    """A segment that says more than a person could in the time it covers: Whisper made it up.

    Text the model invents where there is no speech (at the end of the audio, after the last word) gets
    word timestamps squeezed into an instant: 「スタッフの音がある」 in 0.06 s.
    """
    if not segment.words:
        return False
    if options.joiner == "":
        units, most = len(normalise(segment.text)), MAX_CHARS_PER_S
    else:
        units, most = sum(1 for w in segment.words if normalise(w.text)), MAX_WORDS_PER_S
    span = max(PACE_MIN_SPAN_S, segment.words[-1].end - segment.words[0].start)
    return units >= PACE_MIN_UNITS and units / span > most


def is_silence(segment: Segment, options: StreamingOptions) -> bool:
    """Whisper's own rule: likely no speech and a low-confidence decode. Its confidence is the whole
    window's; the same rule on the segment's own words catches what Whisper makes up from noise, music
    or a crowd (likely no speech, and words it is unsure of), which real speech in a reverberant hall,
    however noisy, does not give."""
    if (
        segment.no_speech_prob > options.no_speech_threshold
        and segment.avg_logprob < options.log_prob_threshold
    ):
        return True
    return (
        segment.no_speech_prob > options.loop_no_speech_threshold
        and segment.word_probability < options.unsure_word_probability
    )


def english_only(segment: Segment) -> Segment:
    """The segment without its words in a script English is never written in (「では」 in a translation)."""
    words = tuple(w for w in segment.words if not foreign_to_english(w.text))
    if len(words) == len(segment.words):
        return segment
    return replace(segment, words=words)


def is_copy(key: str, made_up: Sequence[str], min_chars: int) -> bool:
    """Whether a segment (its normalised text ``key``) repeats one judged made up earlier in the same decode.

    Within a window Whisper conditions each segment on the ones before it: a segment that says again what
    an earlier one said is the decoder copying itself, and copying raises its word probabilities without
    any new evidence from the audio (noise read as 「スタッフルーツ」 at 0.29, then twice more at 0.72 and
    0.86). The copy carries the verdict of its original. A passage a speaker really says twice is heard
    with confidence the first time, so its repeat keeps its own verdict.
    """
    return any(len(original) >= min_chars and key.startswith(original) for original in made_up)


def clean(segments: list[Segment], options: StreamingOptions, history: Sequence[Word] = ()) -> list[Segment]:
    """Drop made-up segments and cut repetition loops; everything after a loop is dropped too.

    ``history`` is the committed text just before the buffer, so that a phrase repeated across the
    commit boundary is caught as well. A loop is cut after its first occurrence (a speaker may say
    「上に、」 once); a segment that is nothing but a loop going round (Whisper on noise) is dropped whole.
    """
    if options.task == "translate":  # Whisper translates into English only
        segments = [english_only(s) for s in segments]
    kept: list[Segment] = []
    said = "".join(normalise(w.text) for w in history)
    repeat_min = REPEAT_MIN_CHARS_UNSPACED if options.joiner == "" else REPEAT_MIN_CHARS
    heard: list[Segment] = []
    made_up: list[str] = []
    for segment in segments:
        if is_too_fast(segment, options):
            break  # squeezed in where there was no speech to hear: what follows is no better
        key = normalise(segment.text)
        if (
            is_silence(segment, options)
            or is_known_hallucination(segment.text)
            or is_copy(key, made_up, repeat_min)
        ):
            made_up.append(key)
        else:
            heard.append(segment)
    for decoded in (segments, heard):  # the whole decode, and what is left of it once made-up text is out
        text = "".join(normalise(s.text) for s in decoded)
        loop = find_loop(text, options.max_repeats, repeat_min)
        if loop and loop.start == 0 and loop.repeats >= options.max_repeats and loop.runs_to_end(text):
            return []  # it goes round one phrase, in segments or not: not speech
    for segment in heard:
        words = list(segment.words)
        cut = len(cut_loop(words, options.max_repeats))
        keys = [normalise(w.text) for w in words]
        edges = frozenset(itertools.accumulate((len(k) for k in keys), initial=len(said)))
        loop = find_loop(said + "".join(keys), options.max_repeats, repeat_min, len(said), edges)
        if loop is not None:
            covers = loop.start <= len(said) and loop.runs_to_end(said + "".join(keys))
            whole = covers and loop.repeats >= options.max_repeats  # a sentence said twice was said once
            cut = min(cut, 0 if whole else _words_within(keys, loop.start + loop.unit - len(said)))
        if cut == 0 and kept and segment.compression_ratio > options.compression_ratio_threshold:
            return []  # the decode goes round in whole segments, as Whisper's score for it says
        words = words[:cut]
        looped = cut < len(segment.words)
        # The segment's own text: Whisper scores the whole window, so one looping segment would
        # condemn the good segments decoded with it.
        ratio = compression_ratio(options.joiner.join(w.text for w in words))
        invented = looped and segment.no_speech_prob > options.loop_no_speech_threshold
        if words and ratio <= options.compression_ratio_threshold and not invented:
            kept.append(
                Segment(
                    segment.start,
                    segment.end,
                    tuple(words),
                    segment.no_speech_prob,
                    segment.avg_logprob,
                    ratio,
                )
            )
            said += "".join(keys[: len(words)])
        if looped:
            break
    return kept


def _words_within(keys: list[str], chars: int) -> int:
    """How many of the words (their normalised ``keys``) end within the first ``chars`` characters."""
    end = 0
    for index, key in enumerate(keys):
        end += len(key)
        if end > chars:
            return index
    return len(keys)
