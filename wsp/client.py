"""Push an audio file to a running ingest service at real-time pace, like a venue's microphone would.

``wsp simulate FILE --url http://HOST:PORT`` creates a session (or continues ``--session SID --token
AUDIO_TOKEN``), streams the file over the audio WebSocket in frames of ``--chunk-ms`` and ends the stream.
If the connection drops, it reconnects and continues exactly where the service says the audio stands
(:mod:`wsp.uplink`).
``WSP_API_KEY``, when set, is sent to create the session.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from common.audio import SAMPLE_RATE, float_to_pcm16, load_audio
from common.auth import with_token
from common.errors import ConfigError, WspError
from common.schemas import (
    SessionLinks,
)
from common.settings import Settings
from wsp.uplink import AudioUplink

log = logging.getLogger(__name__)

BYTES_PER_SECOND = SAMPLE_RATE * 2
RECONNECT_ATTEMPTS = 5
"""Failed connections in a row (retried with growing, jittered delays) before giving up."""


@dataclass(frozen=True)
class SessionInfo:
    id: str
    audio_url: str
    display_url: str
    captions_url: str


@dataclass(frozen=True)
class PushResult:
    samples: int
    """The session's total samples once the stream ended."""
    reconnects: int


def http_base(url: str) -> str:
    """``http://host:port`` of the ingest service, whatever scheme or trailing slash it was given in."""
    url = url.strip().rstrip("/")
    for old, new in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(old):
            url = new + url[len(old) :]
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url must look like http://HOST:PORT, got {url!r}")
    return url


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("message") or body)
    except ValueError:
        return response.text[:200]


def _info(body: Any) -> SessionInfo:
    links = SessionLinks.model_validate(body)
    return SessionInfo(
        id=links.id, audio_url=links.audio_url, display_url=links.display_url, captions_url=links.captions_url
    )


async def open_session(
    base: str,
    session: str | None,
    language: str = "ja",
    tracks: Sequence[dict[str, str]] | None = None,
    glossary: Sequence[str] = (),
    title: str = "",
    token: str | None = None,
    api_key: str | None = None,
) -> SessionInfo:
    """Create a session (or look up ``session`` with its audio ``token``) on the ingest service at ``base``.

    The URLs of a new session carry its tokens; those of a looked-up one carry ``token`` on the audio URL.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=headers) as client:
        try:
            if session:
                if not token:
                    raise ConfigError("continuing a session needs its audio token (--token)")
                response = await client.get(
                    f"/v1/sessions/{quote(session, safe='')}", params={"token": token}
                )
            else:
                body: dict[str, Any] = {"language": language, "glossary": list(glossary), "title": title}
                if tracks:
                    body["tracks"] = list(tracks)
                response = await client.post("/v1/sessions", json=body)
        except httpx.HTTPError as exc:
            raise WspError(f"cannot reach ingest at {base}: {exc}") from exc
    if response.status_code >= 400:
        raise WspError(f"ingest refused the session ({response.status_code}): {_error_text(response)}")
    info = _info(response.json())
    if session and token:
        info = replace(info, audio_url=with_token(info.audio_url, token))
    return info


async def push_audio(audio_url: str, pcm: bytes, chunk_bytes: int, realtime: bool = True) -> PushResult:
    """Stream ``pcm`` (s16le) to ``audio_url`` after whatever the session already holds, then end it.

    Real time: each frame leaves when its last sample is due. A dropped connection is reopened
    (:data:`RECONNECT_ATTEMPTS` times in a row at most) and what the service did not acknowledge is sent
    again.
    """
    if chunk_bytes <= 0 or chunk_bytes % 2:
        raise ConfigError("the chunk must be a positive whole number of samples")
    uplink = AudioUplink(audio_url, backlog_s=None, max_failures=RECONNECT_ATTEMPTS, want_fast=not realtime)

    async def produce() -> None:
        paced = realtime
        if not paced:  # recorded audio goes as fast as the service grants, else in real time
            await uplink.ready.wait()
            paced = not uplink.fast_granted
            if paced:
                log.info("ingest takes this audio at real-time pace only")
        loop = asyncio.get_running_loop()
        began = loop.time()
        for pos in range(0, len(pcm), chunk_bytes):
            frame = pcm[pos : pos + chunk_bytes]
            if paced:
                await asyncio.sleep(max(0.0, began + (pos + len(frame)) / BYTES_PER_SECOND - loop.time()))
            uplink.push(frame)
        uplink.finish()

    producer = asyncio.create_task(produce())
    try:
        samples = await uplink.run()
    finally:
        producer.cancel()
    return PushResult(samples=samples, reconnects=uplink.reconnects)


def tracks_for(language: str, task: str) -> list[dict[str, str]] | None:
    """The tracks of a session in ``language``: a translation adds an English track beside the transcript."""
    if task != "translate" or language == "en":
        return None
    return [{"name": language, "task": "transcribe"}, {"name": "en", "task": "translate"}]


def _api_key() -> str | None:
    """``WSP_API_KEY`` of this machine's environment, checked like the services check it."""
    try:
        return Settings().api_key_value()
    except ValidationError as exc:
        problems = [f"WSP_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("; ".join(problems)) from exc


def run_remote(args: argparse.Namespace, path: Path) -> int:
    """`wsp simulate --url`: the command-line side (prints what a person needs to watch the captions)."""
    if args.chunk_ms <= 0:
        raise ConfigError("--chunk-ms must be positive")
    if args.session and not getattr(args, "token", None):
        raise ConfigError("--session needs --token: the audio token the session was created with")
    base = http_base(args.url)
    audio = load_audio(path, args.start, args.end)
    pcm = float_to_pcm16(audio)
    chunk = max(1, round(args.chunk_ms * SAMPLE_RATE / 1000)) * 2

    async def run() -> PushResult:
        info = await open_session(
            base,
            args.session,
            language=args.language,
            tracks=tracks_for(args.language, args.task),
            glossary=args.glossary or (),
            title=path.name,
            token=getattr(args, "token", None),
            api_key=_api_key(),
        )
        print(f"session: {info.id}", flush=True)
        print(f"display: {info.display_url}", flush=True)
        print(f"captions: {info.captions_url}", flush=True)
        print(f"streaming {path} ({audio.size / SAMPLE_RATE:.1f} s) ...", file=sys.stderr)
        return await push_audio(info.audio_url, pcm, chunk, realtime=not args.comp_unaware)

    result = asyncio.run(run())
    print(
        f"done: the session holds {result.samples / SAMPLE_RATE:.1f} s of audio "
        f"({result.reconnects} reconnects)",
        file=sys.stderr,
    )
    return 0
