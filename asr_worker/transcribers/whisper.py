"""The faster-whisper adapter behind the :class:`~asr_worker.core.seam.Transcriber` seam."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np

from asr_worker.core.seam import Segment, TranscribeRequest
from asr_worker.core.words import Word, assemble_pieces
from asr_worker.transcribers.model_store import resolve_model
from common.errors import ModelError
from common.options import StreamingOptions
from common.settings import Settings

log = logging.getLogger(__name__)

MIN_TOKENS = 32
"""Even a short buffer may decode this many tokens (the prompt-free floor of a step)."""
MAX_LENGTH = 448
"""Whisper's text context: the prompt and the tokens a step decodes must fit in it together."""
PROMPT_OVERHEAD = 5
"""Tokens faster-whisper adds around a prompt: start of previous text, start of transcript, language,
task, and the first timestamp."""


FRAMES_PER_S = 100
"""Whisper's mel frames per second of audio."""


def _fit_window_model(base: type) -> type:
    """A WhisperModel whose encoder sees only the frames set for the calling thread.

    faster-whisper pads every window to 30 s; a streaming buffer is a few seconds long, and the
    encoder's cost is proportional to what it sees. Whisper decodes a shorter window well when a
    little padding follows the speech (the same idea as whisper.cpp's audio_ctx).
    """

    class FitWindowModel(base):
        _window = threading.local()

        def encode(self, features: np.ndarray) -> Any:
            frames = getattr(self._window, "frames", None)
            if frames is not None:
                features = features[..., :frames]
            return super().encode(features)

        def transcribe_window(self, audio: np.ndarray, frames: int | None, **kwargs: Any) -> list[Any]:
            self._window.frames = frames
            try:
                segments, _ = self.transcribe(audio, **kwargs)
                return list(segments)
            finally:
                self._window.frames = None

    return FitWindowModel


class WhisperTranscriber:
    """Decodes with a loaded faster-whisper model; one instance serves every track of a process."""

    def __init__(self, model: Any) -> None:
        self._model = model

    @classmethod
    def load(cls, settings: Settings) -> WhisperTranscriber:
        from faster_whisper import WhisperModel

        model_class = _fit_window_model(WhisperModel)
        location = resolve_model(settings.model, settings.cache_dir)
        device = settings.resolved_device()
        compute_type = settings.resolved_compute_type(device)
        try:
            model = model_class(
                location,
                device=device,
                compute_type=compute_type,
                cpu_threads=settings.resolved_cpu_threads() if device == "cpu" else 0,
                download_root=str(settings.cache_dir / "hub"),
            )
        except Exception as exc:  # faster-whisper raises many kinds: hub, file, runtime
            raise ModelError(
                f"cannot load model {settings.model!r} on {device}/{compute_type}: {exc}"
            ) from exc
        log.info("model %s loaded on %s (%s)", settings.model, device, compute_type)
        return cls(model)

    def transcribe(self, request: TranscribeRequest) -> list[Segment]:
        """One bounded streaming step: greedy or small beam, no temperature fallback, capped tokens."""
        opts = request.options
        seconds = request.audio.size / 16_000
        frames = None
        if opts.window_pad_s is not None and seconds + opts.window_pad_s < 30:
            frames = 2 * math.ceil((seconds + opts.window_pad_s) * FRAMES_PER_S / 2)  # the encoder halves it
        segments = self._model.transcribe_window(
            request.audio,
            frames,
            **decode_kwargs(opts, request.prompt, self._token_cap(opts, seconds, request.prompt)),
        )
        return [to_segment(s, spaced=opts.joiner == " ") for s in segments]

    def _token_cap(self, options: StreamingOptions, seconds: float, prompt: str) -> int:
        prompt_tokens = len(self._model.hf_tokenizer.encode(" " + prompt.strip()).ids) if prompt else 0
        return token_cap(options, seconds, prompt_tokens)

    def transcribe_offline(self, audio: Any, options: StreamingOptions) -> list[Segment]:
        """The whole file at once with the same decoding options (the accuracy baseline)."""
        kwargs = decode_kwargs(options, None, max_new_tokens=None)
        kwargs["condition_on_previous_text"] = True
        spaced = options.joiner == " "
        return [to_segment(s, spaced) for s in self._model.transcribe_window(audio, None, **kwargs)]


def token_cap(options: StreamingOptions, seconds: float, prompt_tokens: int) -> int:
    """Tokens one step may decode: ``max_tokens_per_s`` for every second of buffer, and what Whisper's
    448-token context leaves beside the prompt (faster-whisper keeps its last 223 tokens)."""
    room = MAX_LENGTH - min(prompt_tokens, MAX_LENGTH // 2 - 1) - PROMPT_OVERHEAD
    return max(1, min(room, max(MIN_TOKENS, math.ceil(seconds * options.max_tokens_per_s))))


def decode_kwargs(
    options: StreamingOptions, prompt: str | None, max_new_tokens: int | None
) -> dict[str, Any]:
    return {
        "language": options.language,
        "task": options.task,
        "beam_size": options.beam_size,
        "best_of": 1,
        "temperature": 0.0,
        "initial_prompt": prompt or None,
        "condition_on_previous_text": False,
        "word_timestamps": options.word_timestamps,
        "vad_filter": False,
        "no_speech_threshold": options.no_speech_threshold,
        "log_prob_threshold": options.log_prob_threshold,
        "compression_ratio_threshold": options.compression_ratio_threshold,
        "max_new_tokens": max_new_tokens,
        "no_repeat_ngram_size": options.no_repeat_ngram_size,
        "without_timestamps": False,
    }


def to_segment(segment: Any, spaced: bool = False) -> Segment:
    """A faster-whisper segment as the core's :class:`Segment`.

    ``spaced``: the output is in a spaced language (English, or any translation), so pieces without
    Whisper's leading space are joined to the word before them (:func:`assemble_pieces`).
    """
    raw = segment.words or []
    pieces = [Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in raw]
    if segment.words is None:  # decoded without word timestamps: its words spread over the segment
        pieces = spread_words(segment.text, float(segment.start), float(segment.end))
    words = (
        tuple(assemble_pieces(pieces))
        if spaced
        else tuple(Word(w.start, w.end, w.text.strip(), w.probability) for w in pieces)
    )
    return Segment(
        start=float(segment.start),
        end=float(segment.end),
        words=words,
        no_speech_prob=float(segment.no_speech_prob),
        avg_logprob=float(segment.avg_logprob),
        compression_ratio=float(segment.compression_ratio),
        word_probability=sum(float(w.probability) for w in raw) / len(raw)
        if raw
        else math.exp(min(0.0, float(segment.avg_logprob))),
    )


def spread_words(text: str, start: float, end: float) -> list[Word]:
    """The words of ``text`` (with their leading spaces) over ``start``-``end``, in proportion to length."""
    parts = [" " + part for part in text.split()]
    total = sum(len(p) for p in parts) or 1
    words: list[Word] = []
    at = start
    for part in parts:
        until = at + (end - start) * len(part) / total
        words.append(Word(at, until, part))
        at = until
    return words
