"""A growing audio buffer with an absolute start, stored in one preallocated array (no per-chunk copies)."""

from __future__ import annotations

import numpy as np

INITIAL_CAPACITY = 16_000 * 32
"""Room for 32 s of 16 kHz audio before the first reallocation."""


class AudioBuffer:
    """Samples from ``start_sample`` (absolute, since the stream began) to ``end_sample``."""

    def __init__(self, start_sample: int = 0) -> None:
        self._data = np.zeros(INITIAL_CAPACITY, dtype=np.float32)
        self._head = 0  # index in _data of start_sample
        self._size = 0
        self.start_sample = start_sample

    @property
    def end_sample(self) -> int:
        return self.start_sample + self._size

    def __len__(self) -> int:
        return self._size

    def append(self, samples: np.ndarray) -> None:
        needed = self._head + self._size + samples.size
        if needed > self._data.size:
            if self._size + samples.size <= self._data.size // 2:
                self._data[: self._size] = self._data[self._head : self._head + self._size]
            else:
                grown = np.zeros(max(self._data.size * 2, self._size + samples.size), dtype=np.float32)
                grown[: self._size] = self._data[self._head : self._head + self._size]
                self._data = grown
            self._head = 0
        end = self._head + self._size
        self._data[end : end + samples.size] = samples
        self._size += samples.size

    def view(self) -> np.ndarray:
        """The buffered samples (a view: copy it before appending if you keep it)."""
        return self._data[self._head : self._head + self._size]

    def drop_before(self, sample: int) -> None:
        """Forget samples before absolute index ``sample``."""
        count = min(max(0, sample - self.start_sample), self._size)
        self._head += count
        self._size -= count
        self.start_sample += count
