"""One-command mode: `wsp up` brings everything up and down cleanly; `wsp demo` prints the captions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.served import free_port

ROOT = Path(__file__).resolve().parents[2]


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
