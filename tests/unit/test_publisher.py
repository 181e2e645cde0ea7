"""The caption publisher against a real Redis server: displays, replay, gap repair, export, back-pressure.

Captions are written by hand exactly as a worker writes them: XADD to ``keys.captions`` (final, skip,
end) and PUBLISH to ``keys.live`` (also partial).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.sync.client import ClientConnection, connect

from common.settings import Settings
from publisher.app import create_app
from publisher.hub import CaptionHub
from publisher.replay import BadQuery, parse_request
from tests.served import Served, free_port

QUEUE = 16
"""Live events held per display in these tests: small, so a display that never reads is dropped soon."""


@dataclass
class Publisher:
    base: str
    app: FastAPI

    @property
    def hub(self) -> CaptionHub:
        hub: CaptionHub = self.app.state.hub
        return hub

    def ws(self, sid: str, query: str = "") -> str:
        """The captions URL of ``sid`` with its read token (see :data:`READ_TOKENS`) and ``query``."""
        url = self.base.replace("http://", "ws://") + f"/v1/sessions/{sid}/captions"
        params = [f"token={READ_TOKENS[sid]}"] if sid in READ_TOKENS else []
        params += [query] if query else []
        return url + (f"?{'&'.join(params)}" if params else "")

    def wait_displays(self, sid: str, count: int) -> None:
        """Wait until ``count`` displays of the session are subscribed (the hub says so)."""
        deadline = time.monotonic() + 10
        while self.hub.displays(sid) != count:
            assert time.monotonic() < deadline, f"{self.hub.displays(sid)} displays, wanted {count}"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def publisher(redis_url: str) -> Iterator[Publisher]:
    """The publisher on a free port, served by uvicorn in a thread."""
    port = free_port()
    settings = Settings(redis_url=redis_url, publisher_port=port, display_queue_size=QUEUE)
    served = Served(lambda client: create_app(settings, client), redis_url, port)
    yield Publisher(served.base, served.app)
    served.stop()


_connections = ExitStack()


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    with _connections:
        yield


def display(url: str, **options: Any) -> ClientConnection:
    """A display connection, closed at the end of the test."""
    return _connections.enter_context(connect(url, open_timeout=10, **options))


# --- writing captions as a worker does ------------------------------------------------------------


READ_TOKENS: dict[str, str] = {}
"""The read token of every session written below (the URLs of :meth:`Publisher.ws` carry it)."""


def test_parse_request_defaults_and_per_track_since() -> None:
    assert parse_request(None, None, ["ja", "en"]).tracks == ("ja", "en")
    assert dict(parse_request("en", "7", ["ja", "en"]).since) == {"en": 7}
    assert dict(parse_request(None, "ja:12,en:9", ["ja", "en"]).since) == {"ja": 12, "en": 9}
    assert dict(parse_request(None, "en:9", ["ja", "en"]).since) == {"ja": 0, "en": 9}
    with pytest.raises(BadQuery):
        parse_request("ja,de", None, ["ja", "en"])


# --- export ---------------------------------------------------------------------------------------


def export(publisher: Publisher, sid: str, fmt: str, **params: str) -> httpx.Response:
    """An SRT/VTT export, with the session's read token unless ``params`` has a ``token``."""
    if sid in READ_TOKENS:
        params = {"token": READ_TOKENS[sid]} | params
    return httpx.get(f"{publisher.base}/v1/sessions/{sid}/captions.{fmt}", params=params, timeout=10)
