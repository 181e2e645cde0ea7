"""How a streaming run is scored: commit latency, error rate against a reference, lost tail.

Normalisation before scoring (both reference and hypothesis): Unicode NFKC, lower case, punctuation and
symbols removed. Japanese is scored by characters (CER) with whitespace removed and Arabic numerals
written as kanji numerals (40 -> 四十), so 第40番 and 第四十番 count as the same. Other languages are scored
by words (WER).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

import jiwer
import numpy as np
import sacrebleu
from kanjize import number2kanji

from common.options import UNSPACED_LANGUAGES
from wsp.bench.simulation import TimedCommit

_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_DIGITS = re.compile(r"\d+")


def normalise_for_scoring(text: str, language: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PUNCT.sub(" ", text)
    if language in UNSPACED_LANGUAGES:
        text = _DIGITS.sub(lambda m: number2kanji(int(m.group(0))) if int(m.group(0)) else "零", text)
        return "".join(text.split())
    return " ".join(text.split())


def error_rate(reference: str, hypothesis: str, language: str) -> float:
    """CER for unspaced languages, WER otherwise, after :func:`normalise_for_scoring`."""
    ref = normalise_for_scoring(reference, language)
    hyp = normalise_for_scoring(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    if language in UNSPACED_LANGUAGES:
        return float(jiwer.cer(ref, hyp))
    return float(jiwer.wer(ref, hyp))


def weighted_percentile(values: Sequence[float], weights: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values`` where each counts ``weights`` times (lower interpolation)."""
    if not values:
        return float("nan")
    order = np.argsort(values)
    v = np.asarray(values, dtype=float)[order]
    w = np.asarray(weights, dtype=float)[order]
    cumulative = np.cumsum(w)
    index = int(np.searchsorted(cumulative, q / 100.0 * cumulative[-1], side="left"))
    return float(v[min(index, len(v) - 1)])


def latency_stats(commits: Sequence[TimedCommit]) -> dict[str, float]:
    """Delay from the end of each committed word in the audio to its emission, weighted by characters."""
    delays: list[float] = []
    weights: list[float] = []
    for commit in commits:
        for word in commit.words:
            delays.append(commit.emitted_s - word.end)
            weights.append(max(1, len("".join(word.text.split()))))
    if not delays:
        return {"latency_p50_s": float("nan"), "latency_p90_s": float("nan"), "latency_mean_s": float("nan")}
    return {
        "latency_p50_s": weighted_percentile(delays, weights, 50),
        "latency_p90_s": weighted_percentile(delays, weights, 90),
        "latency_mean_s": float(np.average(delays, weights=weights)),
    }


def lost_tail_s(speech: Sequence[tuple[float, float]], commits: Sequence[TimedCommit]) -> float:
    """Seconds of speech at the end of the audio that no committed word overlaps.

    ``speech`` is the (start, end) speech regions of the whole file (from the VAD). Walking back from the
    last region, every region without a committed word in it counts as lost, until one has words.
    """
    words = [w for c in commits for w in c.words]
    lost = 0.0
    for start, end in reversed(speech):
        if any(w.start < end and w.end > start for w in words):
            break
        lost += end - start
    return round(lost, 3)


@dataclass(frozen=True)
class Sentence:
    """A sentence of the reference with its true place in the audio (``.segments.json``)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class SentenceTiming:
    """When the commit that completes a reference sentence was emitted, and its delay after the sentence."""

    sentence: Sentence
    emitted_s: float | None
    """None when no character of the sentence was committed."""

    @property
    def latency_s(self) -> float | None:
        return None if self.emitted_s is None else self.emitted_s - self.sentence.end


def _committed_chars(commits: Sequence[TimedCommit], language: str) -> tuple[str, list[float]]:
    """The committed text, normalised for scoring, and the emission time of each of its characters."""
    chars: list[str] = []
    times: list[float] = []
    for commit in commits:
        for word in commit.words:
            key = normalise_for_scoring(word.text, language).replace(" ", "")
            chars.extend(key)
            times.extend([commit.emitted_s] * len(key))
    return "".join(chars), times


def _alignment(reference: str, hypothesis: str) -> dict[int, int]:
    """Reference character index -> hypothesis character index, for the characters both share in order."""
    matcher = SequenceMatcher(None, reference, hypothesis, autojunk=False)
    pairs: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            pairs[block.a + k] = block.b + k
    return pairs


def sentence_timings(
    sentences: Sequence[Sentence], commits: Sequence[TimedCommit], language: str
) -> list[SentenceTiming]:
    """For every reference sentence, the emission of the commit holding its last character that was heard.

    Reference and committed text are aligned character by character (after :func:`normalise_for_scoring`);
    a sentence is complete when the last of its characters that found a counterpart has been committed.
    """
    keys = [normalise_for_scoring(s.text, language).replace(" ", "") for s in sentences]
    hypothesis, times = _committed_chars(commits, language)
    pairs = _alignment("".join(keys), hypothesis)
    out: list[SentenceTiming] = []
    offset = 0
    for sentence, key in zip(sentences, keys, strict=True):
        matched = [pairs[i] for i in range(offset, offset + len(key)) if i in pairs]
        out.append(SentenceTiming(sentence, times[max(matched)] if matched else None))
        offset += len(key)
    return out


def invented_tail_chars(reference: str, hypothesis: str, language: str) -> int:
    """Characters the hypothesis goes on with after the end of the reference: text made up after the talk.

    Trailing characters without a counterpart in the reference count, less as many as the reference has
    unmatched at its own end (those are mishearings of the last words, not inventions).
    """
    ref = normalise_for_scoring(reference, language).replace(" ", "")
    hyp = normalise_for_scoring(hypothesis, language).replace(" ", "")
    pairs = _alignment(ref, hyp)
    if not pairs:
        return len(hyp)
    last_ref = max(pairs)
    return max(0, len(hyp) - 1 - pairs[last_ref] - (len(ref) - 1 - last_ref))


def longest_stall_s(commits: Sequence[TimedCommit], speech: Sequence[tuple[float, float]]) -> float:
    """The longest time nothing was committed although speech that was not yet committed had been heard.

    After each commit, the next uncommitted speech begins at the first speech moment after the commit's
    last word; from then (or from the commit, if later) until the next commit is a stall. The clock of the
    emissions is the audio's (audio arrives in real time), so both are compared directly.
    """
    regions = sorted(speech)
    if not regions or not commits:
        return 0.0

    def next_speech(after: float) -> float | None:
        for start, end in regions:
            if end > after:
                return max(start, after)
        return None

    longest = max(0.0, commits[0].emitted_s - regions[0][0])
    for before, after in itertools.pairwise(commits):
        waiting = next_speech(before.end_s)
        if waiting is not None and waiting < after.emitted_s:
            longest = max(longest, after.emitted_s - max(before.emitted_s, waiting))
    return round(longest, 3)


def error_counts(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    """(errors, reference length) behind :func:`error_rate`: what an aggregate over several clips adds up."""
    ref = normalise_for_scoring(reference, language)
    hyp = normalise_for_scoring(hypothesis, language)
    if not ref:
        return len(hyp), 0
    if language in UNSPACED_LANGUAGES:
        chars = jiwer.process_characters(ref, hyp)
        return chars.substitutions + chars.deletions + chars.insertions, len(ref)
    words = jiwer.process_words(ref, hyp)
    return words.substitutions + words.deletions + words.insertions, len(ref.split())


def chrf(reference: str, hypothesis: str) -> float:
    """chrF (sacrebleu, character n-grams up to 6, beta 2) of a translation against its reference, 0-100.

    A translation is scored by what it shares with the reference at the character level, not word by word:
    a word error rate says little when any of several wordings is right.
    """
    return float(sacrebleu.corpus_chrf([hypothesis], [[reference]]).score)


SPAN_SLACK_S = 0.5
"""A translation final whose audio span ends this close before a sentence's true end covers the sentence
(its span is that of the transcript's words, whose ends are a little early or late)."""


def span_timings(sentences: Sequence[Sentence], commits: Sequence[TimedCommit]) -> list[SentenceTiming]:
    """For every sentence of the spoken language, the emission of the first commit whose audio span
    reaches its end: when the translation of the whole sentence was on screen.

    For a translation the text cannot be aligned with the spoken sentences; the audio spans can.
    """
    out: list[SentenceTiming] = []
    for sentence in sentences:
        emitted = next((c.emitted_s for c in commits if c.end_s >= sentence.end - SPAN_SLACK_S), None)
        out.append(SentenceTiming(sentence, emitted))
    return out
