"""LocalAgreement-2: a word is committed once two consecutive hypotheses agree on it.

Agreement is decided on characters, whitespace ignored, so that two hypotheses that split the same
Japanese text into different token pieces still agree. In spaced languages a word is only committed
when both hypotheses end a word at the same place (no half words); in unspaced languages any piece
inside the agreed prefix may be committed, since display joins pieces without spaces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from asr_worker.core.words import Word

OVERLAP_WINDOW_S = 1.0
"""A new hypothesis whose first word starts this close to the last commit, or to the start of its buffer,
may repeat committed words."""
OVERLAP_MAX_WORDS = 5
"""Longest run of committed words looked for again at the start of a new hypothesis."""
RECENT_WORDS = 16
"""Committed words remembered for that comparison (and for spotting phrases said twice)."""
MIDPOINT_SLACK_S = 0.1
"""Words whose middle lies this much before the last committed end still count as new.

The middle, not the start: Whisper often stretches a word over the pause after it, and the next word
then starts before the stretched word's end although it was never committed.
"""

ONSET_S = 1.0
"""Words starting this long after the last commit (or before any) begin an utterance."""
ONSET_MIN_PROBABILITY = 0.5
"""The words that begin an utterance are committed only when the model is this sure of them on average.

At an onset the model has no context and the VAD lets through anything voice-like (a crowd, a song):
two decodes of the same sound agree on the same guess as easily as on real words, and the model's own
uncertainty is what tells them apart. Once an utterance is under way, agreement alone decides."""

_NOT_TEXT = re.compile(r"[\W_]+", re.UNICODE)
_WORD_ENDED = re.compile(r"[.,!?;:\"')\]]$")
"""A word ending in punctuation is complete, whatever comes after it."""


def _key(text: str) -> str:
    return "".join(text.split())


def _loose(text: str) -> str:
    """For spotting committed words heard again: case and punctuation do not matter."""
    return _NOT_TEXT.sub("", text).casefold()


RESPELLED_MIN_CHARS = 6
"""Only words this long count as respelled: short ones are too alike by chance (there / their)."""
RESPELLED_SIMILARITY = 0.7
"""difflib similarity above which two words are one word spelled two ways (Suéneheim / Swayneheim)."""


def _respelled(heard: str, committed: str) -> bool:
    """True when ``heard`` is a long word that differs from ``committed`` only in its spelling."""
    a, b = _loose(heard), _loose(committed)
    if a == b or min(len(a), len(b)) < RESPELLED_MIN_CHARS:
        return False
    return SequenceMatcher(None, a, b).ratio() >= RESPELLED_SIMILARITY


def _after_words(words: list[Word], restated: Sequence[Word]) -> list[Word] | None:
    """``words`` without the first ones, which say ``restated`` (case and punctuation aside); else None."""
    said = [key for key in (_loose(w.text) for w in restated) if key]
    heard = [w for w in words if _loose(w.text)]
    if [_loose(w.text) for w in heard[: len(said)]] != said:
        return None
    return heard[len(said) :]


def _after_text(words: list[Word], restated: Sequence[Word]) -> list[Word] | None:
    """``words`` without their first characters, which say ``restated`` (whitespace aside); else None."""
    out: list[Word] = []
    left = "".join(_key(w.text) for w in restated)
    for w in words:
        key = _key(w.text)
        if not left:
            out.append(w)
        elif left.startswith(key):
            left = left[len(key) :]
        elif key.startswith(left):
            out.append(Word(w.start, w.end, _drop_chars(w.text, len(left)), w.probability))
            left = ""
        else:
            return None
    if left:
        return None
    return [w for w in out if _key(w.text)]


def _drop_chars(text: str, count: int) -> str:
    """``text`` without its first ``count`` characters, whitespace not counted."""
    seen = 0
    for i, ch in enumerate(text):
        seen += not ch.isspace()
        if seen >= count:
            return text[i + 1 :]
    return ""


@dataclass
class HypothesisBuffer:
    """The uncommitted part of the last hypothesis and what is needed to compare the next one."""

    spaced: bool
    last_committed_end: float = 0.0
    pending: list[Word] = field(default_factory=list)
    recent: list[Word] = field(default_factory=list)

    def insert(
        self, words: list[Word], restated: Sequence[Word] = (), buffer_start: float | None = None
    ) -> list[Word]:
        """Take a new hypothesis (absolute times); return it without what is already committed.

        ``restated`` is the committed text the hypothesis's audio holds. A hypothesis that begins with
        exactly that text is cut right after it, whatever its times say: a word stretched over the pause
        after it would otherwise hide the words that follow. In unspaced languages the cut may fall
        inside a piece: the pieces of one word (プロ|グラム, プログ|ラム) differ from step to step, and
        cutting by time would let the next two hypotheses begin differently and never agree. Otherwise
        words are judged by their times.

        Committed words heard again are dropped from the start of the hypothesis: right after the last
        commit (the buffer was cut there and its audio holds the last word again), and right after
        ``buffer_start`` (the model read the committed text as its prompt, just before this audio, and
        may say its end again: a prompt echo, most likely after a pause or in noise).
        """
        if restated:
            after = _after_words(words, restated) if self.spaced else _after_text(words, restated)
            if after is not None:
                return after
        floor = self.last_committed_end - MIDPOINT_SLACK_S
        new = [w for w in words if w.middle > floor and _key(w.text)]
        near_commit = bool(new) and abs(new[0].start - self.last_committed_end) < OVERLAP_WINDOW_S
        near_start = bool(new) and buffer_start is not None and new[0].start - buffer_start < OVERLAP_WINDOW_S
        if new and self.recent and (near_commit or near_start):
            tail = "".join(_loose(w.text) for w in self.recent)
            drop = 0
            for n in range(1, min(OVERLAP_MAX_WORDS, len(new)) + 1):
                head = "".join(_loose(w.text) for w in new[:n])
                if head and tail.endswith(head):
                    drop = n
            new = new[drop:]
            again = new and new[0].start < self.last_committed_end
            if not drop and self.spaced and again and _respelled(new[0].text, self.recent[-1].text):
                new = new[1:]  # the last committed word heard again, spelled another way (a name)
        return new

    def agree(
        self, new: list[Word], until: float = float("inf"), last_until: float = float("inf")
    ) -> list[Word]:
        """Commit the prefix of ``new`` that the previous hypothesis agrees with; remember the rest.

        Words ending after ``until`` wait for a later step even when both hypotheses agree on them. In
        spaced languages so does the last word of ``new`` when it ends after ``last_until`` without
        punctuation: nothing was heard after it yet, so it may be the start of a longer word.
        """
        previous = "".join(_key(w.text) for w in self.pending)
        boundaries: set[int] = set()
        offset = 0
        for w in self.pending:
            offset += len(_key(w.text))
            boundaries.add(offset)
        current = "".join(_key(w.text) for w in new)
        agreed = 0
        for a, b in zip(previous, current, strict=False):
            if a != b:
                break
            agreed += 1

        committed: list[Word] = []
        offset = 0
        for i, w in enumerate(new):
            offset += len(_key(w.text))
            if offset > agreed or (self.spaced and offset not in boundaries) or w.end > until:
                break
            if self.spaced and i == len(new) - 1 and w.end > last_until and not _WORD_ENDED.search(w.text):
                break
            committed.append(w)
        if not self._sure_onset(committed):
            committed = []
        self.pending = new[len(committed) :]
        self._remember(committed)
        return committed

    def keep_unheard(self, earlier: list[Word]) -> None:
        """Add to the pending words those of an ``earlier`` hypothesis beyond what the last one reached.

        For the last step of a stream: Whisper sometimes ends a decode early, before the last phrase;
        mid-stream the next step hears it again, but after the last step nothing would.
        """
        reach = max(self.last_committed_end, self.pending[-1].end if self.pending else 0.0)
        self.pending += [w for w in earlier if w.middle > reach]

    def commit_pending(self, until: float = float("inf"), keep_unsure: bool = False) -> list[Word]:
        """Commit pending words ending by ``until`` without waiting for agreement.

        Used at the end of the stream (everything), when the buffer hits its hard bound, and for words
        followed by a pause. Words that would begin an utterance the model is unsure of are dropped
        instead (see ``ONSET_MIN_PROBABILITY``), or left pending with ``keep_unsure`` (agreement may
        still take them, with the words after them).
        """
        count = 0
        while count < len(self.pending) and self.pending[count].end <= until:
            count += 1
        committed = self.pending[:count]
        if not self._sure_onset(committed):
            if not keep_unsure:
                self.pending = self.pending[count:]
            return []
        self.pending = self.pending[count:]
        self._remember(committed)
        return committed

    def _sure_onset(self, words: list[Word]) -> bool:
        """False for words that begin an utterance and that the model is unsure of."""
        if not words or (self.recent and words[0].start - self.last_committed_end <= ONSET_S):
            return True
        return sum(w.probability for w in words) / len(words) >= ONSET_MIN_PROBABILITY

    def _remember(self, committed: list[Word]) -> None:
        if committed:
            self.last_committed_end = max(self.last_committed_end, committed[-1].end)
            self.recent = (self.recent + committed)[-RECENT_WORDS:]
