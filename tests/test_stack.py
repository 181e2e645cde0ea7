"""One-command mode: `wsp up` brings everything up and down cleanly; `wsp demo` prints the captions."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE
from common.settings import Settings
from tests.served import free_port
from wsp.demo import run_demo

ROOT = Path(__file__).resolve().parent.parent
WORDS = "皆さん こんばんは。 本日は 秋の 演奏会に ようこそ。"


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def scripted_env(tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "script.json"
    write_script(script, ScriptedTranscriber.from_text(WORDS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
    env.update(
        WSP_ENGINE="scripted",
        WSP_SCRIPT_FILE=str(script),
        WSP_INGEST_PORT=str(free_port()),
        WSP_PUBLISHER_PORT=str(free_port()),
        WSP_LEASE_TTL_S="1.5",
        WSP_REDIS_DATA_DIR=str(tmp_path / "redis"),
    )
    return env


@pytest.mark.redis
def test_up_serves_everything_and_ctrl_c_stops_it_all(scripted_env: dict[str, str]) -> None:
    ingest, publisher = int(scripted_env["WSP_INGEST_PORT"]), int(scripted_env["WSP_PUBLISHER_PORT"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsp.cli", "up"],
        cwd=ROOT,
        env=scripted_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        banner = "".join(lines)
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
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.redis
def test_demo_prints_every_caption_a_display_receives(scripted_env: dict[str, str], tmp_path: Path) -> None:
    audio = tmp_path / "speech.wav"
    seconds = ScriptedTranscriber.from_text(WORDS)[-1].end + 1.0
    sf.write(audio, np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32), SAMPLE_RATE)
    env = {k.removeprefix("WSP_").lower(): v for k, v in scripted_env.items() if k.startswith("WSP_")}
    settings = Settings(**env)  # type: ignore[arg-type]
    out = io.StringIO()
    summary = asyncio.run(run_demo(settings, audio, "ja", None, chunk_ms=250, out=out))
    shown = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert "".join(shown) == "".join(WORDS.split())
    assert [line.split()[1] for line in out.getvalue().splitlines()] == [
        f"#{i}" for i in range(1, len(shown) + 1)
    ]
    assert summary["ja"]["finals"] == len(shown)
    assert 0 <= summary["ja"]["latency_p50_s"] < 3


@pytest.mark.model
def test_demo_with_the_real_model_captions_real_speech() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
    env.update(WSP_INGEST_PORT=str(free_port()), WSP_PUBLISHER_PORT=str(free_port()))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsp.cli",
            "demo",
            str(ROOT / "common/samples/en_jfk.wav"),
            "--language",
            "en",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    captions = " ".join(
        line.split("] ", 1)[1] for line in done.stdout.splitlines() if line.startswith("en #")
    )
    assert "country" in captions.lower()
    assert "en: finals" in done.stderr and "error_rate" in done.stderr
