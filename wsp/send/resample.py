"""Decoded audio of any rate, layout and sample format to the pipeline's 16 kHz mono PCM s16le, by
libswresample (through PyAV), for both kinds of source: nothing is resampled by hand.
"""

from __future__ import annotations

import av
import numpy as np

from common.audio import SAMPLE_RATE


class Resampler:
    """Any frame PyAV decodes (any rate, layout, sample format) to 16 kHz mono s16le, by libswresample."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def convert(self, frame: av.AudioFrame | None) -> bytes:
        """The PCM of ``frame``; ``None`` flushes what the resampler still holds."""
        out = self._resampler.resample(frame)
        return b"".join(f.to_ndarray().astype("<i2", copy=False).tobytes() for f in out)

    def convert_array(self, samples: np.ndarray, rate: int) -> bytes:
        """Mono float32 samples in [-1, 1] at ``rate`` (a sound card's) to the pipeline's PCM."""
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        return self.convert(frame)
