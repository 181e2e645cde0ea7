"""What `wsp send`'s tests and benchmark read back: a session's audio from Redis, located second by second
in the original recording, so that a hole, a repeat or a wrong channel shows."""

from __future__ import annotations

from typing import Any

import numpy as np
import redis

from common.audio import SAMPLE_RATE
from common.contract import keys
from wsp.bench.processes import PipelineError

LEAD_S = 0.5
"""Silence put before the original when looking for the session's audio in it (see :func:`positions`)."""


def session_pcm(db: redis.Redis, sid: str) -> bytes:
    """Every audio sample the session's stream holds, checked to be contiguous (none twice, no holes)."""
    pcm = bytearray()
    entries: Any = db.xrange(keys.audio(sid))
    for _, fields in entries:
        if fields.get(b"kind") != b"audio":
            continue
        if int(fields[b"sample0"]) != len(pcm) // 2:
            raise PipelineError(f"the audio of session {sid} has a hole or an overlap")
        pcm += fields[b"pcm"]
    return bytes(pcm)


def as_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def locate(block: np.ndarray, audio: np.ndarray) -> tuple[float, float]:
    """Where ``block`` best matches in ``audio`` (seconds) and how well (normalised correlation)."""
    n = block.size
    size = 1 << int(np.ceil(np.log2(audio.size + n)))
    corr = np.fft.irfft(np.fft.rfft(audio, size) * np.conj(np.fft.rfft(block, size)), size)[
        : audio.size - n + 1
    ]
    energy = np.concatenate(([0.0], np.cumsum(audio.astype(np.float64) ** 2)))
    window = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-12))
    score = corr / (window * np.sqrt(float(np.sum(block.astype(np.float64) ** 2))) + 1e-12)
    best = int(np.argmax(score))
    return best / SAMPLE_RATE, float(score[best])


def positions(sent: np.ndarray, original: np.ndarray, block_s: float = 1.0) -> list[tuple[float, float]]:
    """For each whole ``block_s`` of what the session holds: where it is in the original, and how sure.

    An AAC encoder puts a few milliseconds of priming before the first sample, so the session's audio can
    start slightly before the original: the original is looked at with a little silence in front.
    """
    size = round(block_s * SAMPLE_RATE)
    padded = np.concatenate((np.zeros(round(LEAD_S * SAMPLE_RATE), dtype=original.dtype), original))
    found = []
    for start in range(0, sent.size - size + 1, size):
        block = sent[start : start + size]
        if np.sqrt(np.mean(block**2)) < 1e-3:  # a pause: it fits anywhere
            continue
        at, score = locate(block, padded)
        found.append((at - LEAD_S, score))
    return found
