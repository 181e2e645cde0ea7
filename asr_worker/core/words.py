"""Words with absolute times, the unit the streaming core commits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SENTENCE_ENDS = frozenset("。．！？!?.…‼⁇⁈⁉")
"""Characters that end a sentence; a committed word ending in one is a place to cut the buffer."""

_CLOSERS = "\"'”’」』）)]}"


@dataclass(frozen=True, slots=True)
class Word:
    """A piece of recognised text with its start and end in seconds from the start of the stream."""

    start: float
    end: float
    text: str
    probability: float = 1.0
    """How sure the model was of this word (1.0 where nothing says otherwise)."""

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2

    def shifted(self, offset: float) -> Word:
        return Word(self.start + offset, self.end + offset, self.text, self.probability)

    @property
    def ends_sentence(self) -> bool:
        stripped = self.text.rstrip().rstrip(_CLOSERS)
        return bool(stripped) and stripped[-1] in SENTENCE_ENDS


def join_words(words: Iterable[Word], joiner: str) -> str:
    """Join pieces for display: ``""`` for Japanese, ``" "`` for English."""
    return joiner.join(w.text for w in words if w.text)
