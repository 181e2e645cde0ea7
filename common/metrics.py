"""Prometheus plumbing shared by the services: one registry per application, rendered on ``/metrics``.

Each service builds its own :class:`prometheus_client.CollectorRegistry` (never the global one), so
``wsp up`` (three services in one process) and a test suite that builds many applications never
register the same series twice. Metric names start with ``wsp_``.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


def metrics_response(registry: CollectorRegistry) -> Response:
    """The Prometheus text exposition of ``registry``."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
