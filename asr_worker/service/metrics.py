"""The ASR worker's Prometheus metrics (one registry per worker).

Latency is measured against the audio stream's entry ids: Redis gives each entry the server's clock in
milliseconds when ingest appended it, so "how old is the audio this worker just processed" and "how long
after its audio arrived was a caption committed" need no clock of the client's.
"""

from __future__ import annotations

import contextlib
import time

from prometheus_client import Counter, Gauge, Histogram

from common.metrics import new_registry

STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
"""Seconds one decoding step may take: well under the step's audio (0.5 s) is real time with room."""
LATENCY_BUCKETS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
"""Seconds from audio reaching ingest to its caption being committed (target p90 around 4.5 s)."""


def entry_time(entry_id: str) -> float | None:
    """Unix time (s) at which Redis appended a stream entry with an auto id ``<ms>-<n>``."""
    ms, _, _ = entry_id.partition("-")
    return int(ms) / 1000 if ms.isdigit() else None


class WorkerMetrics:
    """Sessions, lag, step cost, commit latency, captions and lease takeovers of one worker."""

    def __init__(self) -> None:
        self.registry = new_registry()
        reg = self.registry
        self.sessions_active = Gauge(
            "wsp_worker_sessions_active", "Sessions this worker runs now.", registry=reg
        )
        self.lag = Gauge(
            "wsp_worker_session_lag_seconds",
            "How far behind real time a session is: age of the newest audio its last step processed.",
            ["session"],
            registry=reg,
        )
        self.rtf = Gauge(
            "wsp_worker_session_rtf",
            "Real-time factor of a session's last batch: decoding seconds per second of new audio.",
            ["session"],
            registry=reg,
        )
        self.step_seconds = Histogram(
            "wsp_worker_step_seconds",
            "Duration of one decoding step of one track.",
            buckets=STEP_BUCKETS,
            registry=reg,
        )
        self.audio_seconds = Counter(
            "wsp_worker_audio_seconds",
            "Seconds of audio fed to the streaming core (per track).",
            registry=reg,
        )
        self.compute_seconds = Counter(
            "wsp_worker_compute_seconds",
            "Seconds spent in decoding steps (rate / audio rate = RTF).",
            registry=reg,
        )
        self.commit_latency = Histogram(
            "wsp_worker_commit_latency_seconds",
            "Delay from the end of a final caption's audio reaching ingest to the caption being committed.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.captions = Counter(
            "wsp_worker_captions_published",
            "Caption events committed and published, by type (final, partial, end, skip).",
            ["type"],
            registry=reg,
        )
        self.takeovers = Counter(
            "wsp_worker_lease_takeovers",
            "Sessions this worker took over from another worker (epoch above 1 when claimed).",
            registry=reg,
        )
        self.leases_lost = Counter(
            "wsp_worker_leases_lost", "Sessions dropped because another worker now holds them.", registry=reg
        )
        self.sessions_finished = Counter(
            "wsp_worker_sessions_finished", "Sessions run to their end and flushed.", registry=reg
        )

    def batch(self, sid: str, audio_s: float, compute_s: float, newest_entry: str | None) -> None:
        """After a batch of audio was stepped: the session's RTF and lag behind real time."""
        if audio_s > 0:
            self.rtf.labels(sid).set(compute_s / audio_s)
        arrived = entry_time(newest_entry) if newest_entry else None
        if arrived is not None:
            self.lag.labels(sid).set(max(0.0, time.time() - arrived))

    def committed(self, audio_arrived: float | None, finals: int) -> None:
        """A step's finals were committed; ``audio_arrived`` is when the end of their audio arrived."""
        if finals:
            self.captions.labels("final").inc(finals)
            if audio_arrived is not None:
                self.commit_latency.observe(max(0.0, time.time() - audio_arrived))

    def forget(self, sid: str) -> None:
        """The session left this worker: drop its per-session series."""
        for gauge in (self.lag, self.rtf):
            with contextlib.suppress(KeyError):
                gauge.remove(sid)
