"""The level of the audio being sent, and the two things a technician must hear about at once: a feed that
has gone silent (a muted channel, a fader down, the wrong input) and one that clips (gain too high).

Pure: PCM in, figures and warnings out, with the time given by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FULL_SCALE = 32768.0
FLOOR_DBFS = -90.0
"""What digital silence reads as (instead of minus infinity)."""
SILENCE_DBFS = -50.0
"""Audio whose RMS stays below this is silence: the noise floor of a quiet room through a desk is above."""
SILENCE_WARN_S = 10.0
"""Silence this long is worth a warning: a pause in speech is shorter."""
CLIP_SAMPLE = 32767 - 1
"""A sample at or beyond this (either sign) is at full scale: clipped, or about to be."""
CLIP_RUN = 3
"""Consecutive full-scale samples that count as clipping (one alone can be a legitimate peak)."""
CLIP_WINDOW_S = 2.0
"""Clipping is reported while any happened within this many seconds."""
PEAK_HOLD_S = 1.5
"""The meter's peak mark holds for this long before it falls to the current peak."""


def dbfs(value: float) -> float:
    """A linear level (full scale 1.0) in dB relative to full scale, floored at :data:`FLOOR_DBFS`."""
    return max(FLOOR_DBFS, 20.0 * math.log10(value)) if value > 0 else FLOOR_DBFS


@dataclass(frozen=True)
class Levels:
    rms_dbfs: float
    peak_dbfs: float
    clipped: bool


def measure(pcm: bytes) -> Levels:
    """RMS and peak of a block of PCM s16le, and whether it holds a run of full-scale samples."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if samples.size == 0:
        return Levels(FLOOR_DBFS, FLOOR_DBFS, False)
    wide = samples.astype(np.int32)
    rms = math.sqrt(float(np.mean(wide.astype(np.float64) ** 2))) / FULL_SCALE
    peak = float(np.max(np.abs(wide))) / FULL_SCALE
    hot = np.abs(wide) >= CLIP_SAMPLE
    clipped = bool(hot.sum() >= CLIP_RUN) and _longest_run(hot) >= CLIP_RUN
    return Levels(dbfs(rms), dbfs(peak), clipped)


def _longest_run(mask: np.ndarray) -> int:
    padded = np.concatenate(([0], mask.view(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int(np.max(edges[1::2] - edges[::2])) if edges.size else 0


@dataclass(frozen=True)
class MeterReading:
    """What the terminal shows: the current level, the held peak, and the alarms."""

    rms_dbfs: float
    peak_dbfs: float
    silent_s: float
    """How long the audio has been silent (0 while there is signal)."""
    clipping: bool


class LevelWatch:
    """Feed it every block as it is sent; it keeps the meter and says when an alarm starts or stops."""

    def __init__(self) -> None:
        self._rms = FLOOR_DBFS
        self._peak = FLOOR_DBFS
        self._peak_at = -math.inf
        self._silent_since: float | None = None
        self._clipped_at = -math.inf
        self._warned_silence = False
        self._warned_clipping = False
        self._now = 0.0

    def feed(self, pcm: bytes, now: float) -> list[str]:
        """Take one block heard at ``now`` (seconds, any clock); the warnings that begin or end with it."""
        levels = measure(pcm)
        self._now = now
        self._rms = levels.rms_dbfs
        if levels.peak_dbfs >= self._peak or now - self._peak_at > PEAK_HOLD_S:
            self._peak, self._peak_at = levels.peak_dbfs, now
        if levels.clipped:
            self._clipped_at = now
        if levels.rms_dbfs < SILENCE_DBFS:
            self._silent_since = now if self._silent_since is None else self._silent_since
        else:
            self._silent_since = None
        return self._alarms()

    def _alarms(self) -> list[str]:
        said = []
        silent = self.reading().silent_s >= SILENCE_WARN_S
        if silent and not self._warned_silence:
            said.append(
                f"silence: nothing above {SILENCE_DBFS:g} dBFS for {SILENCE_WARN_S:g} s; check the desk's "
                "send, the channel and the input"
            )
        elif self._warned_silence and not silent:
            said.append("signal is back")
        self._warned_silence = silent
        clipping = self.reading().clipping
        if clipping and not self._warned_clipping:
            said.append("clipping: the input reaches full scale; lower the gain on the desk or the card")
        elif self._warned_clipping and not clipping:
            said.append("no more clipping")
        self._warned_clipping = clipping
        return said

    def reading(self) -> MeterReading:
        silent = 0.0 if self._silent_since is None else self._now - self._silent_since
        return MeterReading(
            rms_dbfs=self._rms,
            peak_dbfs=self._peak,
            silent_s=silent,
            clipping=self._now - self._clipped_at <= CLIP_WINDOW_S,
        )
