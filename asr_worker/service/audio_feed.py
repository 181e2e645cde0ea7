"""What a worker makes of a session's audio stream: the part of each entry a track still needs, how far
behind real time a track is, and the entry a track resumes from.

Pure: the entries are read through :mod:`common.contract.audio`.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

from common.audio import SAMPLE_RATE
from common.contract.audio import FIRST_ENTRY, AudioEntry

log = logging.getLogger(__name__)


def entry_ms(entry_id: str) -> int | None:
    """The Redis server's clock (ms) when it appended an entry with an auto id ``<ms>-<n>``."""
    ms = entry_id.partition("-")[0]
    return int(ms) if ms.isdigit() else None


def lag_s(entries: list[AudioEntry], heard_sample: int, edge_id: str) -> float:
    """How far behind real time a track is: how much earlier than the newest entry of the stream
    (``edge_id``) the oldest audio in ``entries`` that the track has not heard arrived.

    Both times are the Redis server's (entry ids), so clocks of other hosts do not matter. Audio the track's
    model has already heard (re-read after a takeover) does not count; 0 when there is nothing new.
    """
    edge = entry_ms(edge_id)
    for entry in entries:
        if not entry.is_end and entry.sample_end > heard_sample:
            arrived = entry_ms(entry.id)
            return 0.0 if edge is None or arrived is None else max(0.0, (edge - arrived) / 1000)
    return 0.0


def unseen_part(entry: AudioEntry, fed_until: int, max_gap_s: float) -> np.ndarray:
    """The samples of ``entry`` a track that has been fed up to ``fed_until`` still needs.

    Audio already fed is cut off (entries are re-read after a takeover). A gap before the entry (the
    stream was trimmed under a slow worker) is filled with silence, at most ``max_gap_s`` of it, so
    time stamps stay absolute.
    """
    if entry.sample_end <= fed_until:
        return entry.samples[:0]
    if entry.sample0 >= fed_until:
        gap = entry.sample0 - fed_until
        if gap == 0:
            return entry.samples
        log.warning("audio gap of %.2f s before entry %s", gap / SAMPLE_RATE, entry.id)
        pad = np.zeros(min(gap, round(max_gap_s * SAMPLE_RATE)), dtype=np.float32)
        return np.concatenate([pad, entry.samples])
    return entry.samples[fed_until - entry.sample0 :]


class ResumeIndex:
    """Recent entries (id, first sample, end sample), to name the entry a track must resume from."""

    def __init__(self) -> None:
        self._entries: deque[tuple[str, int, int]] = deque()

    def add(self, entry: AudioEntry) -> None:
        if not entry.is_end:
            self._entries.append((entry.id, entry.sample0, entry.sample_end))

    def entry_for(self, sample: int) -> str:
        """The id of the entry holding ``sample`` (or the next one); the stream start if none is known."""
        for eid, _, end in self._entries:
            if end > sample:
                return eid
        return self._entries[-1][0] if self._entries else FIRST_ENTRY

    def forget_before(self, sample: int) -> None:
        """Drop entries that end at or before ``sample`` (keeping the last one)."""
        while len(self._entries) > 1 and self._entries[0][2] <= sample:
            self._entries.popleft()

    def __len__(self) -> int:
        return len(self._entries)
