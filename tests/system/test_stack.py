"""One-command mode: `wsp up` brings everything up and down cleanly; `wsp demo` prints the captions."""

from __future__ import annotations

import asyncio
import io
import signal
import socket
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE
from common.settings import Settings
from tests.system.helpers import kill_up, read_banner, start_up
from wsp.demo import run_demo


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_up_serves_everything_and_ctrl_c_stops_it_all(scripted_env: dict[str, str]) -> None:
    ingest, publisher = int(scripted_env["WSP_INGEST_PORT"]), int(scripted_env["WSP_PUBLISHER_PORT"])
    proc = start_up(scripted_env)
    try:
        banner = read_banner(proc)
        assert f"http://127.0.0.1:{ingest}" in banner and f":{publisher}   (display links" in banner
        redis_port = int(banner.split("redis://127.0.0.1:")[1].split("/")[0])

        assert httpx.get(f"http://127.0.0.1:{ingest}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{publisher}/healthz").status_code == 200
        created = httpx.post(f"http://127.0.0.1:{ingest}/v1/sessions", json={"language": "ja"})
        assert created.status_code == 201

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=45) == 0
        for port in (ingest, publisher, redis_port):
            assert not port_open(port), f"port {port} still open after Ctrl-C"
    finally:
        kill_up(proc)


def test_demo_prints_every_caption_a_display_receives(
    scripted_env: dict[str, str], scripted_words: str, tmp_path: Path
) -> None:
    audio = tmp_path / "speech.wav"
    seconds = ScriptedTranscriber.from_text(scripted_words)[-1].end + 1.0
    sf.write(audio, np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32), SAMPLE_RATE)
    env = {k.removeprefix("WSP_").lower(): v for k, v in scripted_env.items() if k.startswith("WSP_")}
    settings = Settings(**env)  # type: ignore[arg-type]
    out = io.StringIO()
    summary = asyncio.run(run_demo(settings, audio, "ja", None, chunk_ms=250, out=out))
    shown = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert "".join(shown) == "".join(scripted_words.split())
    assert [line.split()[1] for line in out.getvalue().splitlines()] == [
        f"#{i}" for i in range(1, len(shown) + 1)
    ]
    assert summary["ja"]["finals"] == len(shown)
    assert 0 <= summary["ja"]["latency_p50_s"] < 3
