"""Who may create and end sessions, and how often: the admission rules of the ingest service.

One client must not be able to take every place of a deployment. Without the API key (a deployment that
lets anyone create sessions) each client address may create ``WSP_CLIENT_SESSIONS_PER_MINUTE`` sessions a
minute (:class:`RateLimiter`, per ingest process) and have ``WSP_MAX_SESSIONS_PER_CLIENT`` open at once
(counted in Redis, :mod:`common.contract.clients`). A request carrying the key is the operator's and
skips both.

A page of another web site must not create or end sessions from a visitor's browser: browsers send
``Origin`` with such requests, and one that is neither this service's own origin nor listed in
``WSP_ALLOWED_ORIGINS`` is refused (:func:`origin_refusal`). Clients that are not browsers send no
``Origin`` and are not concerned.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MAX_TRACKED_CLIENTS = 10_000
"""Client addresses whose creation rate is remembered at once; the least recently seen are forgotten
first (a forgotten client starts again with a full allowance)."""

SECONDS_PER_MINUTE = 60.0


class RateLimiter:
    """A token bucket per client address: ``per_minute`` creations a minute, in bursts of as many."""

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self._rate = per_minute / SECONDS_PER_MINUTE
        self._burst = max(1.0, float(round(per_minute)))
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """Take one creation for ``client``: 0 if allowed, else the seconds until one is."""
        now = self._clock()
        tokens, since = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - since) * self._rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self._rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait


def origin_refusal(headers: Mapping[str, str], allowed: Sequence[str]) -> str | None:
    """Why a browser request from another site is refused (None when it is not one, or is allowed).

    Same origin means the ``Origin`` names the host and port the request was sent to (its ``Host``):
    the scheme is left out, so a page served through an https proxy in front of this service counts.
    """
    origin = headers.get("origin")
    if origin is None:
        return None
    origin = origin.strip().rstrip("/")
    if origin in allowed:
        return None
    netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
    host = headers.get("host", "").strip().lower()
    if netloc and netloc == host:
        return None
    return (
        f"a page at {origin[:100]!r} may not do this: this service takes such requests only from its "
        "own pages and from the origins in WSP_ALLOWED_ORIGINS"
    )
