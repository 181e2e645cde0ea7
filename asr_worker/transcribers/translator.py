"""Whisper's own speech translation behind the :class:`~asr_worker.core.seam.Translator` seam."""

from __future__ import annotations

from asr_worker.core import guards
from asr_worker.core.seam import Transcriber, TranscribeRequest, TranslateRequest
from asr_worker.core.words import join_words


class WhisperTranslator:
    """Listens to a unit's audio again with ``task="translate"``: Whisper's translation into English.

    Uses the session's :class:`~asr_worker.core.seam.Transcriber` (one loaded model serves both tracks).
    The committed English before the unit is the prompt, so the translation continues it; the guards that
    keep made-up text out of a transcript (loops, subtitle credits, text faster than speech, words in a
    script English is never written in) apply to the translation too.
    """

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber

    def translate(self, request: TranslateRequest) -> str:
        if request.audio.size == 0:
            return ""
        options = request.options
        if options.task != "translate":
            options = options.model_copy(update={"task": "translate"})
        heard = self._transcriber.transcribe(
            TranscribeRequest(
                audio=request.audio, offset_s=request.offset_s, prompt=request.context, options=options
            )
        )
        segments = guards.clean(heard, options)
        return join_words((w for s in segments for w in s.words), " ")
