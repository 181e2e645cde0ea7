"""The browser tier's driver: ``node`` runs a playwright-core script of this folder in Debian Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DRIVER_DIR = Path(__file__).resolve().parent
"""tests/browser: the node scripts, package.json and (after ``npm ci``) node_modules."""
CHROMIUM = os.environ.get("WSP_TEST_CHROMIUM", "/usr/bin/chromium")


def need_browser() -> None:
    """Skip the test unless Chromium, node and playwright-core are here."""
    missing = [
        what
        for what, ok in (
            (CHROMIUM, Path(CHROMIUM).exists()),
            ("node", shutil.which("node") is not None),
            ("playwright-core (npm ci in tests/browser)", (DRIVER_DIR / "node_modules").is_dir()),
        )
        if not ok
    ]
    if missing:
        pytest.skip("browser tests need " + ", ".join(missing) + " (.ci/run installs them)")


class Driver:
    """``node drive.mjs`` and its line protocol: does what it asks (``actions``), returns its result."""

    def __init__(
        self,
        config: dict[str, Any],
        actions: dict[str, Callable[[], None]],
        timeout_s: float,
        script: str = "drive.mjs",
    ) -> None:
        self.config = config
        self.actions = actions
        self.timeout_s = timeout_s
        self.script = script

    def run(self) -> dict[str, Any]:
        result: dict[str, Any] | None = None
        with subprocess.Popen(
            ["node", str(DRIVER_DIR / self.script), json.dumps(self.config)],
            cwd=DRIVER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            timer = threading.Timer(self.timeout_s, proc.kill)
            timer.start()
            try:
                for line in proc.stdout:
                    message = json.loads(line)
                    if message["event"] == "ask":
                        self.actions[message["what"]]()
                        proc.stdin.write("done\n")
                        proc.stdin.flush()
                    elif message["event"] == "result":
                        result = message
            finally:
                timer.cancel()
                stderr = proc.stderr.read()
                proc.wait(timeout=30)
        assert result is not None, f"the driver ended without a result (rc {proc.returncode}): {stderr}"
        assert result["ok"], result.get("error", "") + stderr
        return dict(result["result"])
