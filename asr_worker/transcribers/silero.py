"""Voice activity detection with the silero ONNX model that ships inside faster-whisper (no torch)."""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from common.audio import SAMPLE_RATE


class SileroDetector:
    """faster-whisper's silero VAD (a :class:`~asr_worker.core.seam.SpeechDetector`) with streaming-friendly
    settings: short silences split regions."""

    def __init__(self, threshold: float = 0.5, min_silence_ms: int = 300, pad_ms: int = 100) -> None:
        self._options = VadOptions(
            threshold=threshold,
            min_silence_duration_ms=min_silence_ms,
            speech_pad_ms=pad_ms,
            min_speech_duration_ms=120,
        )

    def speech(self, audio: np.ndarray) -> list[tuple[float, float]]:
        if audio.size < SAMPLE_RATE // 10:
            return []
        regions = get_speech_timestamps(audio, self._options, sampling_rate=SAMPLE_RATE)
        return [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE) for r in regions]
