"""Bad settings at start-up: every service says which setting is wrong in one line and exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("clean_env")


def test_the_real_command_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")} | {"WSP_INGEST_PORT": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", "wsp.cli", "ingest"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "WSP_INGEST_PORT" in done.stderr
