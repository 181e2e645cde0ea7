"""Guards against text Whisper makes up: silence read as speech, stock phrases, repetition loops."""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Sequence

from asr_worker.core.seam import Segment
from asr_worker.core.words import Word
from common.options import StreamingOptions

# Phrases Whisper is known to produce from silence, music or noise (it learned them from subtitles).
# Compared after normalisation (NFKC, lower case, no punctuation or spaces).
KNOWN_HALLUCINATIONS = (
    "ご視聴ありがとうございました",
    "ご視聴ありがとうございます",
    "ご視聴いただきありがとうございます",
    "最後までご視聴いただきありがとうございます",
    "チャンネル登録よろしくお願いします",
    "チャンネル登録お願いします",
    "字幕は視聴者によって作成されました",
    "thankyouforwatching",
    "thanksforwatching",
    "thankyouforwatchingpleasesubscribe",
    "pleasesubscribetomychannel",
    "subtitlesbytheamaraorgcommunity",
)

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


def is_known_hallucination(text: str) -> bool:
    key = normalise(text)
    return bool(key) and any(key == phrase for phrase in KNOWN_HALLUCINATIONS)


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
"""A character loop must cover at least this many characters (so 100000 is not a loop)."""


def _char_loop(text: str, repeats: int) -> bool:
    """The same 1-6 characters ``repeats`` times in a row (loops Japanese splits into odd pieces).

    A run of digits is a number, not a loop (100,000,000 is eight zeros in a row once normalised).
    """
    key = normalise(text)
    pattern = re.compile(r"(.{1,6}?)\1{" + str(repeats - 1) + ",}")
    return any(len(m.group(0)) >= LOOP_MIN_CHARS and not m.group(0).isdigit() for m in pattern.finditer(key))


REPEAT_MIN_CHARS = 8
"""A phrase said twice in a row is a decoding loop when it is at least this long ("very, very" is not)."""


def repeat_start(keys: list[str], history: int) -> int | None:
    """Index (into ``keys``, after ``history`` leading context keys) where a phrase repeats itself.

    Whisper at the end of a buffer often says the last sentence again ("... in passing. And it is worth
    mentioning in passing."); a run of words that immediately repeats the run before it, committed
    words included, is cut there.
    """
    for k in range(max(history, 1), len(keys)):
        for n in range(1, k + 1):
            unit = keys[k : k + n]
            if len(unit) < n:
                break
            if unit == keys[k - n : k] and len("".join(unit)) >= REPEAT_MIN_CHARS:
                return k - history
    return None


def char_loop_start(words: list[Word], repeats: int) -> int | None:
    """Index of the first word whose text completes a character loop (see :func:`_char_loop`)."""
    text = ""
    for index, word in enumerate(words):
        text += word.text
        if _char_loop(text, repeats):
            return index
    return None


def compression_ratio(text: str) -> float:
    """gzip ratio as Whisper computes it: high for repetitive text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_silence(segment: Segment, options: StreamingOptions) -> bool:
    """Whisper's own rule: likely no speech and a low-confidence decode."""
    return (
        segment.no_speech_prob > options.no_speech_threshold
        and segment.avg_logprob < options.log_prob_threshold
    )


def clean(segments: list[Segment], options: StreamingOptions, history: Sequence[Word] = ()) -> list[Segment]:
    """Drop made-up segments and cut repetition loops; everything after a loop is dropped too.

    ``history`` is the committed text just before the buffer, so that a phrase repeated across the
    commit boundary is caught as well.
    """
    kept: list[Segment] = []
    keys = [normalise(w.text) for w in history if normalise(w.text)]
    for segment in segments:
        if is_silence(segment, options) or is_known_hallucination(segment.text):
            continue
        words = list(segment.words)
        cuts = [len(cut_loop(words, options.max_repeats))]
        seq = keys + [normalise(w.text) for w in words]
        repeated = repeat_start(seq, len(keys))
        if repeated is not None:
            cuts.append(_word_index(words, repeated))
        looped_char = char_loop_start(words, options.max_repeats + 1)
        if looped_char is not None:
            cuts.append(looped_char)
        cut = min(cuts)
        if cut == 0 and kept and segment.compression_ratio > options.compression_ratio_threshold:
            return []  # the decode goes round in whole segments, as Whisper's score for it says
        words = words[:cut]
        looped = cut < len(segment.words)
        # The segment's own text: Whisper scores the whole window, so one looping segment would
        # condemn the good segments decoded with it.
        ratio = compression_ratio(options.joiner.join(w.text for w in words))
        made_up = looped and segment.no_speech_prob > options.loop_no_speech_threshold
        if words and ratio <= options.compression_ratio_threshold and not made_up:
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
            keys += [normalise(w.text) for w in words if normalise(w.text)]
        if looped:
            break
    return kept


def _word_index(words: list[Word], key_index: int) -> int:
    """Map an index among non-empty normalised keys back to an index in ``words``."""
    seen = -1
    for index, word in enumerate(words):
        if normalise(word.text):
            seen += 1
            if seen == key_index:
                return index
    return len(words)
