"""Whisper's own speech translation behind the :class:`~asr_worker.core.seam.Translator` seam."""

from __future__ import annotations

from asr_worker.core import guards
from asr_worker.core.seam import Transcriber, TranscribeRequest, TranslateRequest
from asr_worker.core.words import join_words


class WhisperTranslator:
    """Listens to a unit's audio again with ``task="translate"``: Whisper's translation into English.

    Uses the session's :class:`~asr_worker.core.seam.Transcriber` (one loaded model serves both tracks).
    No prompt: with Whisper base the English committed before a unit, given as the prompt, was carried into
    the next translations ("the power of the car's ..." again and again; chrF 20.7 against 26.0 without a
    prompt, the concert sample's sentences one by one), so each unit is translated on its own. No word
    timestamps either: a unit is committed whole, and the alignment pass costs about a fifth of a decode.
    The guards that keep made-up text out of a transcript (loops, subtitle credits, text faster than
    speech, words in a script English is never written in) apply to the translation too.
    """

    listens = True
    """It translates the audio: a unit can be translated as soon as its speech is heard, before the
    transcript of it is committed (see :class:`~asr_worker.core.interpreter.SentenceInterpreter`)."""

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber

    def translate(self, request: TranslateRequest) -> str:
        if request.audio.size == 0:
            return ""
        options = request.options.model_copy(update={"task": "translate", "word_timestamps": False})
        step = TranscribeRequest(audio=request.audio, offset_s=request.offset_s, prompt="", options=options)
        heard = self._transcriber.transcribe(step)
        segments = guards.clean(heard, options)
        return join_words((w for s in segments for w in s.words), " ")
