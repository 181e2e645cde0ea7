"""The seams of the core: what it asks of a model ("transcribe this buffer with this prompt", and what comes
back) and of a voice activity detector. Implementations live in :mod:`asr_worker.transcribers`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from asr_worker.core.words import Word
from common.options import StreamingOptions


@dataclass(frozen=True, slots=True)
class Segment:
    """One decoded segment. Times are relative to the start of the audio that was transcribed."""

    start: float
    end: float
    words: tuple[Word, ...]
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0
    word_probability: float = 1.0
    """The mean of the model's probabilities for its words: how sure it is of what it heard."""

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words)


@dataclass(frozen=True, slots=True)
class TranscribeRequest:
    """A buffer to transcribe. ``offset_s`` is where the buffer starts in the stream (for logs and fakes)."""

    audio: np.ndarray
    offset_s: float
    prompt: str
    options: StreamingOptions


class Transcriber(Protocol):
    """Anything that turns 16 kHz mono float32 audio into segments with word timestamps."""

    def transcribe(self, request: TranscribeRequest) -> list[Segment]: ...


class SpeechDetector(Protocol):
    """Finds speech in 16 kHz mono audio: a list of (start_s, end_s) relative to the audio start."""

    def speech(self, audio: np.ndarray) -> list[tuple[float, float]]: ...


@dataclass(frozen=True, slots=True)
class TranslateRequest:
    """One unit of the transcript (a sentence or a clause) to translate, and the audio it was heard in."""

    source: str
    """The committed transcript of the unit, in ``language``."""
    language: str
    """The spoken language (Whisper code)."""
    audio: np.ndarray
    """16 kHz mono float32: the unit's stretch of the stream, for translators that listen."""
    offset_s: float
    """Where ``audio`` starts in the stream."""
    context: str
    """The translation committed before this unit (its last ``prompt_chars``), for continuity."""
    options: StreamingOptions


class Translator(Protocol):
    """Turns one unit of a transcript into English text (the translation track's model seam).

    The default, :class:`~asr_worker.transcribers.translator.WhisperTranslator`, is Whisper's own speech
    translation: it listens to the unit's audio again with ``task="translate"``. A text translator (a
    machine-translation model on a GPU host) reads ``source`` and ``context`` and ignores the audio. The
    answer is final: it is committed as the unit's English, so it must be whole English text (an empty
    string when there is nothing to say).

    A translator with a true ``listens`` attribute translates the audio: it is given each unit as soon as
    the pause after it is heard, when ``source`` may still lack the words the transcript has not committed
    yet. One without it (a text translator) is given a unit once its transcript is committed.
    """

    def translate(self, request: TranslateRequest) -> str: ...
