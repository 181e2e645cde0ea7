"""What a venue needs around its screens: links that open on other devices (public address, short links,
QR codes), the session record a display shows its title from, `wsp up` open to the local network and
keeping its sessions across a restart, and session ids and tokens that begin with '-'."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from typing import Any

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE, float_to_pcm16
from tests.system.helpers import read_banner, start_up
from wsp.client import push_audio


class Up:
    """``wsp up`` as a process (scripted engine), started and stopped like an operator would."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.ingest = f"http://127.0.0.1:{env['WSP_INGEST_PORT']}"
        self.publisher = f"http://127.0.0.1:{env['WSP_PUBLISHER_PORT']}"

    def start(self) -> str:
        self.proc = start_up(self.env)
        return read_banner(self.proc)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc = None


def _finals(
    captions_url: str, expected: int = 0, timeout_s: float = 30, text: str | None = None
) -> list[dict[str, Any]]:
    """Finals from the start of the session's captions: ``expected`` of them, or until they say ``text``
    (or the time is up)."""
    import json

    finals: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s

    def enough() -> bool:
        if text is not None:
            return "".join(f["text"] for f in finals) == text
        return len(finals) >= expected

    with connect(captions_url, open_timeout=10) as ws:
        while time.monotonic() < deadline and not enough():
            try:
                event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            except (TimeoutError, ConnectionClosed):
                break
            if event["type"] == "final":
                finals.append(event)
    return finals


def test_sessions_survive_a_restart_of_wsp_up(scripted_env: dict[str, str], scripted_words: str) -> None:
    env = scripted_env
    words = ScriptedTranscriber.from_text(scripted_words)
    up = Up(env)
    pcm = float_to_pcm16(np.zeros(round((words[-1].end + 1.5) * SAMPLE_RATE), dtype=np.float32))
    half = len(pcm) // 2 // 3200 * 3200
    try:
        banner = up.start()
        assert env["WSP_REDIS_DATA_DIR"] in banner and "survive a restart" in banner
        session = httpx.post(up.ingest + "/v1/sessions", json={"language": "ja"}).json()
        # half the audio, and the connection drops (the laptop's wsp up is stopped mid-talk)
        with connect(session["audio_url"]) as ws:
            ws.send('{"type": "start", "sample_rate": 16000}')
            ws.recv(timeout=10)
            for at in range(0, half, 3200):  # at the pace of speech: agreement needs audio after a word
                ws.send(pcm[at : at + 3200])
                time.sleep(0.1)
        before = _finals(session["captions_url"], 1)
        assert before, "no caption before the restart"
        up.stop()

        up.start()
        url = f"{up.ingest}/v1/sessions/{session['id']}"
        state = httpx.get(url, params={"token": session["audio_token"]})
        assert state.status_code == 200, state.text  # the token still opens the session
        assert state.json()["samples"] == half // 2
        pushed = asyncio.run(push_audio(session["audio_url"], pcm[half:], 6400, realtime=False))
        assert pushed.samples == len(pcm) // 2  # the audio went on where it stood
        whole = "".join(scripted_words.split())
        after = _finals(session["captions_url"], timeout_s=20, text=whole)
        text = "".join(f["text"] for f in after)
        assert [f["seq"] for f in after] == list(range(1, len(after) + 1))
        assert text == whole  # nothing lost or repeated across the restart
    finally:
        up.stop()
