"""Short display links: ``wsp:link:<code>`` holds where ``/d/<code>`` on the publisher leads.

Ingest writes one per display of a session (stage screen, phone, OBS...) when the microphone page asks
for the session's display links; the publisher reads it and redirects to the full display link. The
record holds the display's path and query, the session's read token included: a code is as good as the
read token, and whoever can read Redis can read the captions anyway (the audio token is never stored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from common.contract import keys

SID = "sid"
QUERY = "query"
"""Fields of a link's JSON."""


@dataclass(frozen=True)
class LinkTarget:
    """Where a short link leads: the display of session ``sid`` with ``query`` (token and options)."""

    sid: str
    query: str

    def path(self) -> str:
        return f"/v1/sessions/{self.sid}/display?{self.query}"


async def save(redis: Any, code: str, target: LinkTarget, ttl_s: float) -> None:
    """Store (or refresh) a link for ``ttl_s`` seconds; the same code always leads to the same display."""
    body = json.dumps({SID: keys.check_session_id(target.sid), QUERY: target.query})
    await redis.set(keys.short_link(code), body, px=max(1, round(ttl_s * 1000)))


async def load(redis: Any, code: str) -> LinkTarget | None:
    """Where ``code`` leads, or None (unknown, expired, malformed)."""
    raw = await redis.get(keys.short_link(code))
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        return LinkTarget(keys.check_session_id(str(body[SID])), str(body[QUERY]))
    except (ValueError, KeyError, TypeError, keys.InvalidId):
        return None
