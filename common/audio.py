"""Audio helpers: read any file soundfile understands into 16 kHz mono float32, and PCM conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from common.errors import AudioError

SAMPLE_RATE = 16_000
"""The pipeline's one sample rate: Whisper's."""


def load_audio(path: str | Path, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """Read ``path`` as 16 kHz mono float32 in [-1, 1], cut to ``[start_s, end_s)``.

    Any channel count is averaged down to mono; any sample rate is resampled with soxr (high quality).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"cannot read audio from {path}: {exc}") from exc
    if data.shape[1] == 0:
        raise AudioError(f"{path} has no audio channels")
    mono = data.mean(axis=1, dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise AudioError(f"bad range: start {start_s} s, end {end_s} s")
    first = round(start_s * SAMPLE_RATE)
    last = None if end_s is None else round(end_s * SAMPLE_RATE)
    mono = mono[first:last]
    if mono.size == 0:
        raise AudioError(f"{path} holds no audio in the chosen range")
    return np.ascontiguousarray(mono, dtype=np.float32)


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float32 [-1, 1] to little-endian signed 16-bit PCM bytes (rounded, clipped).

    The inverse of :func:`pcm16_to_float`: PCM bytes read as floats and written back are unchanged.
    """
    scaled = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit PCM bytes to float32 in [-1, 1]."""
    if len(data) % 2:
        raise AudioError(f"PCM s16le needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
