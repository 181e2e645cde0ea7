"""Guards against text Whisper makes up: silence read as speech, stock phrases, repetition loops."""

from __future__ import annotations

import re
import unicodedata

from asr_worker.transcriber import Segment
from asr_worker.words import Word
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


def keep_segment(segment: Segment, options: StreamingOptions) -> bool:
    """False for segments that are most likely not speech or are made up."""
    if (
        segment.no_speech_prob > options.no_speech_threshold
        and segment.avg_logprob < options.log_prob_threshold
    ):
        return False
    if segment.compression_ratio > options.compression_ratio_threshold:
        return False
    return not is_known_hallucination(segment.text)


def clean(segments: list[Segment], options: StreamingOptions) -> list[Segment]:
    """Drop made-up segments and cut repetition loops; everything after a loop is dropped too."""
    kept: list[Segment] = []
    for segment in segments:
        if not keep_segment(segment, options):
            continue
        words = cut_loop(list(segment.words), options.max_repeats)
        looped = len(words) < len(segment.words) or _char_loop(segment.text, options.max_repeats + 1)
        if words and not _char_loop("".join(w.text for w in words), options.max_repeats + 1):
            kept.append(
                Segment(
                    segment.start,
                    segment.end,
                    tuple(words),
                    segment.no_speech_prob,
                    segment.avg_logprob,
                    segment.compression_ratio,
                )
            )
        if looped:
            break
    return kept
