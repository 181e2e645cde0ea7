"""Text of committed pieces as a reader sees it: how pieces are joined in each kind of language.

Shared by the workers (the text of a final) and the publisher (finals joined into cues), which meet only
through :mod:`common`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ATTACHED = re.compile(r"^(?:[.,!?;:%)\]}…”’]|'(?:s|m|d|ll|re|ve|t)\b|n't\b)", re.IGNORECASE)
"""The start of a spaced-language piece that belongs to the word before it: punctuation that follows a
word, and the English clitics ('s, 'm, 'd, 'll, 're, 've, n't)."""
_ORDINAL = re.compile(r"^(?:st|nd|rd|th)\b", re.IGNORECASE)
"""An ordinal's ending: glued to a number before it (``40`` + ``th`` -> ``40th``)."""
_OPENERS = re.compile(r"[(\[{“‘]$")
"""The end of a piece after which the next one follows without a space (an opening bracket or quote)."""


def join_text(parts: Iterable[str], joiner: str) -> str:
    """Join text pieces for display: ``""`` for Japanese, ``" "`` for English and other spaced languages.

    In spaced languages a piece that starts with punctuation or an English clitic is glued to the one before
    it (``Everyone`` + ``'s`` -> ``Everyone's``, ``today`` + ``.`` -> ``today.``), so that pieces committed
    apart read as the words they are.
    """
    out = ""
    for part in parts:
        part = part.strip() if joiner else part
        if not part:
            continue
        if out and joiner and not _glued(out, part):
            out += joiner
        out += part
    return out


def _glued(before: str, part: str) -> bool:
    """True when ``part`` continues the text ``before`` without a space."""
    if _ATTACHED.match(part) or _OPENERS.search(before):
        return True
    return before[-1].isdigit() and bool(_ORDINAL.match(part))
