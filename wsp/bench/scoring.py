"""How a streaming run is scored: commit latency, error rate against a reference, lost tail.

Normalisation before scoring (both reference and hypothesis): Unicode NFKC, lower case, punctuation and
symbols removed. Japanese is scored by characters (CER) with whitespace removed and Arabic numerals
written as kanji numerals (40 -> 四十), so 第40番 and 第四十番 count as the same. Other languages are scored
by words (WER).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import jiwer
import numpy as np
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
