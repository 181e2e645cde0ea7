"""Who may do what: per-session audio and read tokens, the deployment's API key, clear refusals."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from redis.asyncio import Redis as AsyncRedis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from common import auth
from common.contract import keys
from common.redis_conn import EmbeddedRedis
from common.schemas import CaptionEvent
from common.settings import Settings
from common.ws_protocol import WebSocketProtocol
from ingest.app import create_app as create_ingest
from publisher.app import create_app as create_publisher
from tests.waiting import wait_until

API_KEY = "k" * 12 + "-test-key-0123"


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
    wait_until(lambda: server.started, 20, "a service to start")
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


def refused(url: str, first: str | bytes | None = '{"type": "start"}') -> tuple[dict[str, Any], int | None]:
    """The error the service sends (after ``first``, if any), and its close code."""
    with connect(url, open_timeout=10) as ws:
        if first is not None:
            ws.send(first)
        message = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    return message, closed.value.rcvd.code if closed.value.rcvd else None


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["type"] == "error" and body["code"] == "unauthorized" and body["message"]


def test_creating_a_session_needs_the_api_key(services: Services) -> None:
    assert_unauthorized(create(services, key=None))
    assert_unauthorized(create(services, key="not-the-key-but-long-enough"))
    junk = httpx.post(f"{services.ingest}/v1/sessions", content=b"\xff{{", timeout=10)
    assert_unauthorized(junk)  # the key is checked before the body is even read
    assert junk.headers["www-authenticate"] == "Bearer"
    body = session(services)
    assert body["audio_url"].endswith(f"/audio?token={body['audio_token']}")
    assert body["captions_url"].endswith(f"/captions?token={body['read_token']}")
    assert API_KEY not in json.dumps(body)


def test_a_read_token_cannot_send_audio_and_no_audio_lands(services: Services) -> None:
    body = session(services)
    message, code = refused(services.audio_ws(body["id"], body["read_token"]))
    assert (code, message["type"], message["code"]) == (4401, "error", "unauthorized")
    assert "audio token" in message["message"]
    assert services.db.xlen(keys.audio(body["id"])) == 0


@pytest.mark.parametrize("whose", ["none", "wrong", "other session's audio", "other session's read"])
def test_the_audio_socket_refuses_every_token_but_its_own(services: Services, whose: str) -> None:
    mine, other = session(services), session(services)
    token = {
        "none": None,
        "wrong": auth.new_token(),
        "other session's audio": other["audio_token"],
        "other session's read": other["read_token"],
    }[whose]
    message, code = refused(services.audio_ws(mine["id"], token), first=b"\x00\x00")
    assert (code, message["code"]) == (4401, "unauthorized")
    assert services.db.xlen(keys.audio(mine["id"])) == 0


def test_the_audio_token_and_the_api_key_may_send_audio(services: Services) -> None:
    body = session(services)
    for token in (body["audio_token"], API_KEY):
        with connect(services.audio_ws(body["id"], token), open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(b"\x00\x00" * 100)
    message, code = refused(services.audio_ws("nosuchsession", API_KEY))
    assert (code, message["code"]) == (4404, "unknown_session")  # only the key may learn that


def test_a_session_s_status_needs_one_of_its_tokens(services: Services) -> None:
    mine, other = session(services), session(services)
    url = f"{services.ingest}/v1/sessions/{mine['id']}"
    assert_unauthorized(httpx.get(url, timeout=10))
    assert_unauthorized(httpx.get(url, params={"token": other["read_token"]}, timeout=10))
    assert_unauthorized(httpx.get(f"{services.ingest}/v1/sessions/nosuch", params={"token": "x"}, timeout=10))
    for token in (mine["read_token"], mine["audio_token"]):
        assert httpx.get(url, params={"token": token}, timeout=10).json()["id"] == mine["id"]
    by_key = httpx.get(url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert by_key.status_code == 200
    missing = httpx.get(
        f"{services.ingest}/v1/sessions/nosuch", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )
    assert missing.status_code == 404


def test_captions_and_exports_need_a_token_of_the_session(services: Services) -> None:
    mine, other = session(services), session(services)
    sid = mine["id"]
    for token in (None, auth.new_token(), other["read_token"], other["audio_token"]):
        message, code = refused(services.captions_ws(sid, token), first=None)
        assert (code, message["type"], message["code"]) == (4401, "error", "unauthorized")
        export = httpx.get(f"{services.publisher}/v1/sessions/{sid}/captions.srt", timeout=10)
        assert_unauthorized(export)
        export = httpx.get(
            f"{services.publisher}/v1/sessions/{sid}/captions.vtt", params={"token": token or ""}, timeout=10
        )
        assert_unauthorized(export)
    said = CaptionEvent(
        type="final", track="ja", seq=1, text="こんばんは。", start=0.0, end=1.0, emitted_at=0.0
    )
    services.db.xadd(keys.captions(sid), {"event": said.model_dump_json()})
    for token in (mine["read_token"], mine["audio_token"], API_KEY):
        with connect(services.captions_ws(sid, token), open_timeout=10) as ws:
            assert CaptionEvent.model_validate_json(ws.recv(timeout=10)) == said  # let in: the captions come
        vtt = httpx.get(f"{services.publisher}/v1/sessions/{sid}/captions.vtt", params={"token": token})
        assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
    with connect(mine["captions_url"], open_timeout=10) as ws:
        assert CaptionEvent.model_validate_json(ws.recv(timeout=10)) == said  # the URL ingest returned works
