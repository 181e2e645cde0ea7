"""Words with absolute times, the unit the streaming core commits."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.text import join_text

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
    """Join pieces for display: ``""`` for Japanese, ``" "`` for English (see :func:`join_text`)."""
    return join_text((w.text for w in words), joiner)


def assemble_pieces(pieces: Sequence[Word]) -> list[Word]:
    """Whole words from a spaced-language decode whose pieces keep Whisper's leading space.

    Whisper's tokens mark the start of a word with a leading space; a token without one continues the word
    before it. A decode whose words were split on tokens (faster-whisper does so when the *spoken* language
    is Japanese, even when the output is an English translation) comes as ``" program"``, ``" t"``,
    ``"od"``, ``"ay"``: the pieces are joined back into ``program today``, and ``"40"``, ``"th"`` into
    ``40th``. A word spans its pieces' times; its probability is the lowest of theirs. Texts come back
    stripped.
    """
    words: list[Word] = []
    for piece in pieces:
        text = piece.text
        if not text.strip():
            continue
        if words and not text[0].isspace():
            last = words[-1]
            words[-1] = Word(
                last.start,
                max(last.end, piece.end),
                last.text + text,
                min(last.probability, piece.probability),
            )
        else:
            words.append(Word(piece.start, piece.end, text.strip(), piece.probability))
    return [Word(w.start, w.end, w.text.strip(), w.probability) for w in words]


_FOREIGN_SCRIPTS = (
    "CJK",
    "HIRAGANA",
    "KATAKANA",
    "HANGUL",
    "THAI",
    "ARABIC",
    "HEBREW",
    "CYRILLIC",
    "DEVANAGARI",
)


def foreign_to_english(text: str) -> bool:
    """True for text written (in part) in a script English is never written in: 「では」 in an English track.

    Whisper asked to translate sometimes writes a word of the spoken language instead; such a piece is
    not English and is never committed to an English track.
    """
    for ch in text:
        if ord(ch) < 0x250 or not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        if name.startswith(_FOREIGN_SCRIPTS):
            return True
    return False
