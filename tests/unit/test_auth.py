"""Who may do what: per-session audio and read tokens, the deployment's API key, clear refusals."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from redis.asyncio import Redis as AsyncRedis

from common import auth
from common.redis_conn import EmbeddedRedis
from common.settings import Settings
from common.ws_protocol import WebSocketProtocol
from ingest.app import create_app as create_ingest
from publisher.app import create_app as create_publisher

API_KEY = "k" * 12 + "-test-key-0123"

# --- the pure checks ------------------------------------------------------------------------------


def test_each_token_grants_only_its_scope() -> None:
    mine, other = auth.issue(), auth.issue()
    stored = mine.hashes()
    assert auth.check(mine.audio, auth.Scope.AUDIO, stored, None) is None
    assert auth.check(mine.audio, auth.Scope.READ, stored, None) is None
    assert auth.check(mine.read, auth.Scope.READ, stored, None) is None
    assert auth.check(mine.read, auth.Scope.AUDIO, stored, None) is not None  # a display cannot send audio
    for stranger in (other.audio, other.read, "", None, "x" * 100_000, mine.audio + " "):
        assert auth.check(stranger, auth.Scope.READ, stored, None) is not None
    assert auth.check(API_KEY, auth.Scope.AUDIO, stored, API_KEY) is None
    assert auth.check(API_KEY, auth.Scope.AUDIO, stored, None) is not None  # no key configured: no key


def test_a_refusal_does_not_tell_whether_the_session_exists() -> None:
    mine = auth.issue()
    wrong_token = auth.check(auth.new_token(), auth.Scope.READ, mine.hashes(), None)
    no_session = auth.check(auth.new_token(), auth.Scope.READ, {}, None)
    assert wrong_token == no_session


def test_tokens_are_long_random_and_stored_only_as_hashes() -> None:
    tokens = {auth.new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 32 for t in tokens)
    issued = auth.issue()
    assert issued.audio not in issued.hashes().values() and issued.read not in issued.hashes().values()
    assert auth.bearer("Bearer abc") == "abc" and auth.bearer("Basic abc") is None and auth.bearer("") is None


@pytest.mark.parametrize("key", ["short", "has a space in it ok", "tab\tinside-the-key-0123"])
def test_a_weak_api_key_is_refused_at_start_up(key: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="api_key"):
        Settings(api_key=key)
    assert Settings(api_key="").api_key is None
    assert API_KEY not in repr(Settings(api_key=API_KEY))  # never shown in logs or reprs


# --- the services, with an API key ------------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    ingest: str
    publisher: str
    db: redis.Redis

    def audio_ws(self, sid: str, token: str | None) -> str:
        url = self.ingest.replace("http://", "ws://") + f"/v1/sessions/{sid}/audio"
        return url if token is None else auth.with_token(url, token)

    def captions_ws(self, sid: str, token: str | None) -> str:
        url = self.publisher.replace("http://", "ws://") + f"/v1/sessions/{sid}/captions"
        return url if token is None else auth.with_token(url, token)


def _serve(app: Any, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws=WebSocketProtocol, log_config=None)
    server = uvicorn.Server(config)
    threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "a service did not start"
        time.sleep(0.02)
    return server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    url = os.environ.get("WSP_REDIS_URL")
    embedded = None if url else EmbeddedRedis()
    url = url or embedded.url  # type: ignore[union-attr]
    ingest_port, publisher_port = _free_port(), _free_port()
    settings = Settings(
        redis_url=url, api_key=API_KEY, ingest_port=ingest_port, publisher_port=publisher_port
    )
    servers = [
        _serve(create_ingest(settings, AsyncRedis.from_url(url)), ingest_port),
        _serve(create_publisher(settings, AsyncRedis.from_url(url)), publisher_port),
    ]
    db = redis.Redis.from_url(url)
    try:
        yield Services(f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{publisher_port}", db)
    finally:
        for server in servers:
            server.should_exit = True
        db.close()
        if embedded is not None:
            embedded.close()


def create(services: Services, key: str | None = API_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{services.ingest}/v1/sessions", json={"language": "ja"}, headers=headers, timeout=10)


def session(services: Services) -> dict[str, Any]:
    response = create(services)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
