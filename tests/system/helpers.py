"""What the system tests of `wsp up` share: starting it as a process, reading its banner, killing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_up(env: dict[str, str]) -> subprocess.Popen[str]:
    """`wsp up` in a process group of its own, its stdout (the banner) piped, its stderr dropped."""
    return subprocess.Popen(
        [sys.executable, "-m", "wsp.cli", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def read_banner(proc: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """What `wsp up` prints up to its "Ctrl-C" line (or until its stdout ends or ``timeout_s`` passes)."""
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C" in line:
            break
    return "".join(lines)


def kill_up(proc: subprocess.Popen[str]) -> None:
    """Kill what is left of a `wsp up` of :func:`start_up` (its whole process group); close its stdout."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
