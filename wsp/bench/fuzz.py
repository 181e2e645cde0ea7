"""``wsp bench fuzz``: the cases of :mod:`wsp.bench.fuzz_cases` sent to a real ingest service.

:func:`run_bench` starts an embedded Redis server and ``wsp ingest`` as a child process (with an API key,
so every token path is exercised), sends the cases a few at a time, checks after every batch that the
process is alive and ``/healthz`` answers, and returns the figures as one dict.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from common.auth import with_token
from common.redis_conn import EmbeddedRedis
from ingest.app import MAX_CREATE_BODY_BYTES
from ingest.server import WS_MAX_SIZE_FLOOR
from wsp.bench.fuzz_cases import END, START, Case, HttpCase, Limits, Outcome, Verdict, WsCase, generate, judge

ANSWER_TIMEOUT_S = 15.0
"""How long a case waits for the service's answer (longer than ingest's own 10 s start timeout)."""
START_TIMEOUT_S = 30.0
MAX_FRAME_BYTES = 64_000
"""``WSP_MAX_FRAME_BYTES`` of the service under test (the deployment default)."""


@dataclass(frozen=True)
class Target:
    base: str
    api_key: str

    def ws(self, sid: str, token: str | None) -> str:
        url = self.base.replace("http://", "ws://") + f"/v1/sessions/{sid}/audio"
        return url if token is None else with_token(url, token)


class Runner:
    """Runs cases against ``target``; each case gets fresh sessions of its own."""

    def __init__(self, target: Target, http: httpx.AsyncClient) -> None:
        self.target = target
        self.http = http

    async def new_session(self) -> dict[str, Any]:
        response = await self.http.post(
            "/v1/sessions",
            json={"language": "ja"},
            headers={"Authorization": f"Bearer {self.target.api_key}"},
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def run(self, case: Case) -> Outcome:
        try:
            if isinstance(case, HttpCase):
                return await self._http(case)
            return await self._ws(case)
        except (httpx.HTTPError, OSError, WebSocketException) as exc:
            return Outcome(failure=f"unreachable: {type(exc).__name__}: {exc}")

    async def _token(self, choice: str, session: dict[str, Any] | None) -> str | None:
        if choice.startswith("="):
            return choice[1:]
        if choice == "none":
            return None
        if choice == "key":
            return self.target.api_key
        if choice == "wrong":
            return secrets.token_urlsafe(24)
        if choice == "other":
            return str((await self.new_session())["audio_token"])
        assert session is not None
        return str(session[f"{choice}_token"])

    async def _ws(self, case: WsCase) -> Outcome:
        session = None
        if case.session == "literal":
            sid = case.path_sid
        else:
            session = await self.new_session()
            sid = session["id"]
            if case.session == "ended":
                await converse(self.target.ws(sid, session["audio_token"]), (START, END))
        url = self.target.ws(sid, await self._token(case.token, session))
        if not case.reconnect:
            return await converse(url, case.messages)
        return await self._reconnect(url, sid, case)

    async def _reconnect(self, url: str, sid: str, case: WsCase) -> Outcome:
        """Stream, drop the connection, and check the next connection resumes exactly after the audio."""
        sent = sum(len(m) for m in case.messages if isinstance(m, bytes)) // 2
        async with connect(url, open_timeout=10) as ws:  # a client that reads "ready", sends, then drops
            await ws.send(case.messages[0])
            await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)
            for message in case.messages[1:]:
                await ws.send(message)
        stored = -1
        deadline = time.monotonic() + 5
        while stored != sent and time.monotonic() < deadline:
            response = await self.http.get(f"/v1/sessions/{sid}", params={"token": self.target.api_key})
            stored = int(response.json().get("samples", -1))
            await asyncio.sleep(0.02)
        outcome = await converse(url, (START, END))
        ready = outcome.messages[0] if outcome.messages else {}
        if stored != sent or not isinstance(ready, dict) or ready.get("samples") != sent:
            outcome.note = f"sent {sent} samples, the service holds {stored}, resumed at {ready}"
        return outcome

    async def _http(self, case: HttpCase) -> Outcome:
        path = case.path
        params: dict[str, str] = {}
        headers: dict[str, str] = {}
        session = await self.new_session() if "{sid}" in path else None
        if session is not None:
            path = path.replace("{sid}", session["id"])
        if case.auth == "key":
            headers["Authorization"] = f"Bearer {self.target.api_key}"
        elif case.auth == "wrong":
            headers["Authorization"] = f"Bearer {secrets.token_urlsafe(24)}"
        elif case.auth == "other":
            params["token"] = str((await self.new_session())["read_token"])
        elif case.auth in ("read", "audio") and session is not None:
            params["token"] = str(session[f"{case.auth}_token"])
        response = await self.http.request(
            case.method, path, content=case.body, params=params, headers=headers
        )
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:200]
        return Outcome(messages=[body], status=response.status_code)


async def converse(url: str, messages: tuple[bytes | str, ...]) -> Outcome:
    """Send ``messages`` (stopping if the service closes), then read everything until the close."""
    outcome = Outcome()
    try:
        async with connect(url, max_size=None, open_timeout=10, close_timeout=5) as ws:
            for message in messages:
                try:
                    await ws.send(message)
                except ConnectionClosed:
                    break
            try:
                while True:
                    raw = await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)
                    outcome.messages.append(_parsed(raw))
            except ConnectionClosed as closed:
                outcome.close_code = closed.rcvd.code if closed.rcvd else None
            except TimeoutError:
                outcome.note = f"no close within {ANSWER_TIMEOUT_S:.0f} s"
    except InvalidStatus as exc:  # refused before the WebSocket opened: judged like an HTTP answer
        outcome.status = exc.response.status_code
        outcome.messages.append(_parsed(bytes(exc.response.body or b"")))
    except (OSError, TimeoutError, WebSocketException) as exc:
        outcome.failure = f"unreachable: {type(exc).__name__}: {exc}"
    return outcome


def _parsed(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:200]


def _kind(case: Case) -> str:
    return ("http:" if isinstance(case, HttpCase) else "ws:") + case.kind


async def run_cases(target: Target, cases: list[Case], concurrency: int, alive: Any) -> dict[str, Any]:
    """Every case, ``concurrency`` at a time; ``alive()`` is checked after each batch."""
    verdicts: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    service_down = ""
    began = time.monotonic()
    done = 0
    async with httpx.AsyncClient(base_url=target.base, timeout=ANSWER_TIMEOUT_S) as http:
        runner = Runner(target, http)
        for first in range(0, len(cases), concurrency):
            batch = cases[first : first + concurrency]
            outcomes = await asyncio.gather(*(runner.run(case) for case in batch))
            for case, outcome in zip(batch, outcomes, strict=True):
                verdict = judge(case, outcome)
                verdicts[verdict.value] += 1
                if isinstance(case, HttpCase):
                    codes[f"http {outcome.status}"] += 1
                elif outcome.close_code is None and outcome.status is not None:
                    codes[f"ws handshake {outcome.status}"] += 1
                else:
                    codes[f"ws {outcome.close_code}"] += 1
                if verdict not in (Verdict.CLEAR, Verdict.CLEAR_CLOSE_ONLY) and len(examples) < 10:
                    examples.append(_example(case, outcome, verdict))
            done += len(batch)
            service_down = await alive(http)
            if service_down:
                break
    seconds = time.monotonic() - began
    return {
        "cases": done,
        "by_kind": dict(sorted(Counter(_kind(c) for c in cases[:done]).items())),
        "crashes": verdicts[Verdict.CRASH.value] + (1 if service_down else 0),
        "answered_clearly": verdicts[Verdict.CLEAR.value] + verdicts[Verdict.CLEAR_CLOSE_ONLY.value],
        "of_which_close_1009_only": verdicts[Verdict.CLEAR_CLOSE_ONLY.value],
        "unexpected_code": verdicts[Verdict.UNEXPECTED_CODE.value],
        "unclear": verdicts[Verdict.UNCLEAR.value],
        "answers": dict(sorted(codes.items())),
        "service_down": service_down or None,
        "seconds": round(seconds, 2),
        "cases_per_s": round(done / seconds, 1) if seconds else None,
        "examples": examples,
    }


def _example(case: Case, outcome: Outcome, verdict: Verdict) -> dict[str, Any]:
    return {
        "kind": _kind(case),
        "verdict": verdict.value,
        "expected": sorted(case.expect),
        "close_code": outcome.close_code,
        "status": outcome.status,
        "last_message": str(outcome.messages[-1])[:200] if outcome.messages else None,
        "failure": outcome.failure or outcome.note or None,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_bench(count: int, seed: int, concurrency: int = 8) -> dict[str, Any]:
    """Redis + ``wsp ingest`` (a child process), ``count`` cases of ``seed``, the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="wsp-fuzz-"))
    (workdir / "redis").mkdir()
    redis_server = EmbeddedRedis(directory=workdir / "redis")
    port = _free_port()
    target = Target(f"http://127.0.0.1:{port}", secrets.token_urlsafe(24))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")} | {
        "WSP_REDIS_URL": redis_server.url,
        "WSP_HOST": "127.0.0.1",
        "WSP_INGEST_PORT": str(port),
        "WSP_API_KEY": target.api_key,
        "WSP_MAX_FRAME_BYTES": str(MAX_FRAME_BYTES),
        "WSP_MAX_SESSIONS": str(10 * count + 100),  # the fuzz opens many sessions and ends few
        "WSP_LOG_LEVEL": "WARNING",
    }
    log_path = workdir / "ingest.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsp.cli", "ingest"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def alive(http: httpx.AsyncClient) -> str:
        if proc.poll() is not None:
            return f"ingest exited with {proc.returncode}"
        try:
            response = await http.get("/healthz", timeout=5)
        except httpx.HTTPError as exc:
            return f"/healthz unreachable: {exc}"
        return "" if response.status_code == 200 else f"/healthz answered {response.status_code}"

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=target.base) as http:
            deadline = time.monotonic() + START_TIMEOUT_S
            while await alive(http):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ingest did not start: {log_path.read_text()[-1000:]}")
                await asyncio.sleep(0.1)
        limits = Limits(MAX_FRAME_BYTES, max(WS_MAX_SIZE_FLOOR, 4 * MAX_FRAME_BYTES))
        cases = generate(count, seed, limits, MAX_CREATE_BODY_BYTES)
        return await run_cases(target, cases, concurrency, alive)

    try:
        figures = asyncio.run(main())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        redis_server.close()
    errors = [line for line in log_path.read_text(errors="replace").splitlines() if "Traceback" in line]
    if figures["crashes"] == 0 and not errors:
        shutil.rmtree(workdir, ignore_errors=True)
    else:  # keep the service's log for whoever looks into it
        figures["service_log"] = str(log_path)
    return {"seed": seed, "concurrency": concurrency, **figures, "service_tracebacks": len(errors)}
