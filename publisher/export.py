"""Caption export: group a track's finals into readable cues, then write SubRip or WebVTT.

Pure functions over :class:`~common.schemas.CaptionEvent` finals; the formats themselves are written by
the ``srt`` and ``webvtt-py`` libraries.
"""

from __future__ import annotations

import html
import math
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import srt
import webvtt
from webvtt.models import Timestamp

from common.options import UNSPACED_LANGUAGES
from common.schemas import CaptionEvent
from common.text import join_text

SENTENCE_END = re.compile(r"[。．！？!?.…][」』”’\")]*$")
"""A piece of text that ends a sentence: a cue ends after it."""


@dataclass(frozen=True)
class CueRules:
    """How finals are grouped into cues (the usual subtitle reading limits)."""

    max_duration_s: float = 7.0
    """A cue never spans more than this, unless a single final already does."""
    max_lines: int = 2
    line_width: int = 42
    """Characters per line: 42 for Latin scripts, 16 for Japanese and other unspaced scripts."""
    max_pause_s: float = 1.5
    """A pause longer than this between two finals starts a new cue."""
    min_duration_s: float = 1.0
    """Short cues stay on screen this long, unless the next cue starts earlier."""
    joiner: str = " "


def rules_for(track: str) -> CueRules:
    """Reading limits for a track named by its language (``ja``, ``en``, ``zh-hant``...)."""
    if track.split("-", 1)[0] in UNSPACED_LANGUAGES:
        return CueRules(line_width=16, joiner="")
    return CueRules()


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Piece:
    start: float
    end: float
    text: str


def wrap(text: str, rules: CueRules) -> list[str]:
    """Break text into lines of at most ``rules.line_width`` characters, balanced in length."""
    text = text.strip()
    if not text:
        return []
    if rules.joiner:
        return textwrap.wrap(text, rules.line_width, break_on_hyphens=False) or [text]
    count = math.ceil(len(text) / rules.line_width)
    size = math.ceil(len(text) / count)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _pieces(finals: Iterable[CaptionEvent]) -> list[_Piece]:
    """Finals in sequence order, one per seq, with missing or inverted times made usable."""
    by_seq: dict[int, CaptionEvent] = {}
    for event in finals:
        if event.type == "final" and event.seq is not None:
            by_seq.setdefault(event.seq, event)
    pieces: list[_Piece] = []
    clock = 0.0
    for seq in sorted(by_seq):
        event = by_seq[seq]
        text = event.text.strip()
        start = event.start if event.start is not None else clock
        end = event.end if event.end is not None else start
        end = max(start, end)
        clock = end
        if text:
            pieces.append(_Piece(start, end, text))
    return pieces


def _split_long(piece: _Piece, rules: CueRules) -> list[_Piece]:
    """A final too long for one cue becomes several, its time shared in proportion to the characters."""
    lines = wrap(piece.text, rules)
    if len(lines) <= rules.max_lines:
        return [piece]
    chunks = [
        join_text(lines[i : i + rules.max_lines], rules.joiner) for i in range(0, len(lines), rules.max_lines)
    ]
    total = sum(len(c) for c in chunks)
    out: list[_Piece] = []
    start = piece.start
    for chunk in chunks:
        end = start + (piece.end - piece.start) * len(chunk) / total
        out.append(_Piece(start, end, chunk))
        start = end
    return out


def build_cues(finals: Iterable[CaptionEvent], rules: CueRules) -> list[Cue]:
    """Join consecutive finals into cues of at most ``max_lines`` lines and ``max_duration_s``.

    A cue ends after a sentence end, before a long pause, or when the next final would not fit.
    """
    return _cues(_pieces(finals), rules)


def _cues(pieces_in: Sequence[_Piece], rules: CueRules) -> list[Cue]:
    pieces = [part for piece in pieces_in for part in _split_long(piece, rules)]
    groups: list[list[_Piece]] = []
    for piece in pieces:
        current = groups[-1] if groups else None
        if current is not None:
            last = current[-1]
            joined = join_text([*(p.text for p in current), piece.text], rules.joiner)
            fits = (
                not SENTENCE_END.search(last.text)
                and piece.start - last.end <= rules.max_pause_s
                and piece.end - current[0].start <= rules.max_duration_s
                and len(wrap(joined, rules)) <= rules.max_lines
            )
            if fits:
                current.append(piece)
                continue
        groups.append([piece])
    return _timed(groups, rules)


def build_bilingual_cues(
    finals: Iterable[CaptionEvent],
    translation: Iterable[CaptionEvent],
    rules: CueRules,
    translation_rules: CueRules,
) -> list[Cue]:
    """One cue per translated sentence, holding the transcript of the same audio above its translation.

    A translation final carries the audio span of the transcript it translates (the interpreter commits
    one per sentence): each transcript final goes with the translation its span overlaps most. Transcript
    left without a translation (nothing came for it) gets cues of its own, grouped as :func:`build_cues`
    groups them. The lines of both languages are wrapped at their own widths; a cue holds a whole
    sentence in each, so it may have more than ``max_lines`` lines.
    """
    originals = _pieces(finals)
    translated = _pieces(translation)
    paired: list[list[_Piece]] = [[] for _ in translated]
    alone: list[_Piece] = []
    for piece in originals:
        best, overlap = None, 0.0
        for i, other in enumerate(translated):
            shared = min(piece.end, other.end) - max(piece.start, other.start)
            if shared > overlap or (best is None and shared >= 0 and piece.end == piece.start):
                best, overlap = i, shared
        if best is None:
            alone.append(piece)
        else:
            paired[best].append(piece)
    cues: list[Cue] = []
    for other, mine in zip(translated, paired, strict=True):
        start = min([other.start, *(p.start for p in mine)])
        end = max([other.end, *(p.end for p in mine)])
        lines = wrap(join_text((p.text for p in mine), rules.joiner), rules)
        lines += wrap(other.text, translation_rules)
        cues.append(Cue(start, end, tuple(lines)))
    if alone:
        cues += _cues(alone, rules)
    cues.sort(key=lambda cue: cue.start)
    out: list[Cue] = []
    for i, cue in enumerate(cues):
        end = max(cue.end, cue.start + rules.min_duration_s)
        if i + 1 < len(cues) and cues[i + 1].start > cue.start:
            end = min(end, cues[i + 1].start)
        out.append(Cue(cue.start, max(end, cue.start + 0.001), cue.lines))
    return out


def _timed(groups: Sequence[Sequence[_Piece]], rules: CueRules) -> list[Cue]:
    cues: list[Cue] = []
    for i, group in enumerate(groups):
        start, end = group[0].start, group[-1].end
        wanted = max(end, start + rules.min_duration_s)
        if i + 1 < len(groups):
            wanted = max(end, min(wanted, groups[i + 1][0].start))
        if wanted <= start:
            wanted = start + rules.min_duration_s
        text = join_text((p.text for p in group), rules.joiner)
        cues.append(Cue(start, wanted, tuple(wrap(text, rules))))
    return cues


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip text (plain text, numbered from 1)."""
    subtitles = [
        srt.Subtitle(
            index=i, start=timedelta(seconds=cue.start), end=timedelta(seconds=cue.end), content=cue.text
        )
        for i, cue in enumerate(cues, 1)
    ]
    return srt.compose(subtitles, reindex=False)


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT text; ``&``, ``<`` and ``>`` in captions are escaped as the format requires."""
    captions = [
        webvtt.Caption(
            start=str(Timestamp.from_seconds(cue.start)),
            end=str(Timestamp.from_seconds(cue.end)),
            text=[html.escape(line, quote=False) for line in cue.lines],
        )
        for cue in cues
    ]
    return webvtt.WebVTT(captions=captions).content
