"""The ingest service's Prometheus metrics (one registry per application)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from common.metrics import new_registry


class IngestMetrics:
    """Sessions created and refused, audio accepted and refused, audio connections open, Redis memory."""

    def __init__(self) -> None:
        self.registry = new_registry()
        self.sessions_created = Counter(
            "wsp_ingest_sessions_created", "Sessions created (POST /v1/sessions).", registry=self.registry
        )
        self.audio_frames = Counter(
            "wsp_ingest_audio_frames", "Binary audio frames accepted into a session.", registry=self.registry
        )
        self.audio_bytes = Counter(
            "wsp_ingest_audio_bytes", "Bytes of PCM audio accepted into a session.", registry=self.registry
        )
        self.audio_rejected = Counter(
            "wsp_ingest_audio_rejected",
            "Audio connections or frames refused, by error code (frame_too_large, unknown_session, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.audio_connections = Gauge(
            "wsp_ingest_audio_connections", "Audio WebSocket connections open now.", registry=self.registry
        )
        self.sessions_refused = Counter(
            "wsp_ingest_sessions_refused",
            "Session creations refused, by error code (rate_limited, too_many_sessions, at_capacity, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.redis_used_memory = Gauge(
            "wsp_ingest_redis_used_memory_bytes",
            "Redis used_memory, read every second.",
            registry=self.registry,
        )
        self.redis_maxmemory = Gauge(
            "wsp_ingest_redis_maxmemory_bytes", "Redis maxmemory (0: no limit).", registry=self.registry
        )
        self.redis_memory_high = Gauge(
            "wsp_ingest_redis_memory_high",
            "1 while Redis memory is above WSP_REDIS_MEMORY_HIGH of maxmemory (no new sessions or audio).",
            registry=self.registry,
        )
