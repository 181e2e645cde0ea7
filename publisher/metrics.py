"""The publisher's Prometheus metrics (one registry per application)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

from common.metrics import new_registry


class PublisherMetrics:
    """Displays connected and dropped, captions delivered, gaps repaired from the caption stream."""

    def __init__(self) -> None:
        self.registry = new_registry()
        self.displays = Gauge(
            "wsp_publisher_displays",
            "Caption displays connected to this process now.",
            registry=self.registry,
        )
        self.captions_delivered = Counter(
            "wsp_publisher_captions_delivered",
            "Caption events sent to displays (replayed and live), by type.",
            ["type"],
            registry=self.registry,
        )
        self._delivered_by_type: dict[str, Any] = {}
        self.displays_dropped = Counter(
            "wsp_publisher_displays_dropped",
            "Displays closed (4408) because they could not keep up: their queue overflowed, or they answered "
            "no ping for WSP_DISPLAY_TIMEOUT_S.",
            registry=self.registry,
        )
        self.displays_refused = Counter(
            "wsp_publisher_displays_refused",
            "Displays refused before they were served, by error code (too_many_displays).",
            ["reason"],
            registry=self.registry,
        )
        self.gap_repairs = Counter(
            "wsp_publisher_gap_repairs",
            "Live finals that arrived after a gap, which was filled from the caption stream first.",
            registry=self.registry,
        )

    def delivered(self, kind: str) -> None:
        """Count one caption event of type ``kind`` sent to a display (called for every send)."""
        child = self._delivered_by_type.get(kind)
        if child is None:
            child = self._delivered_by_type[kind] = self.captions_delivered.labels(kind)
        child.inc()
