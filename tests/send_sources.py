"""Live sources for the `wsp send` tests, with real parts on the loopback: FFmpeg (the Debian program) as an
RTMP server, an SRT listener and an HLS encoder (its segments served by a local HTTP server), a PulseAudio
server whose null sink stands in for a sound card, and the `wsp send` command itself as a process.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import redis

from common.audio import SAMPLE_RATE
from common.contract import keys
from tests.served import free_port

ROOT = Path(__file__).resolve().parent.parent
FFMPEG = shutil.which("ffmpeg")
PULSEAUDIO = shutil.which("pulseaudio")
START_S = 20.0
"""Longest wait for a process of these tests to be ready (a session printed, a server listening)."""
STOP_S = 30.0
"""Longest wait for `wsp send` to end after Ctrl-C (it sends what is left and waits for `ended`)."""
ENCODE = ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]
"""How the test encoders send: AAC, 48 kHz stereo, as OBS or a hardware encoder would."""
KINDS = ("rtmp", "srt", "hls")
HLS_SEGMENT_S = 1
LEAD_S = 0.5
"""Silence put before the original when looking for the session's audio in it (see :func:`positions`)."""


def ffmpeg_input(audio: Path, start_s: float = 0.0, length_s: float | None = None) -> list[str]:
    """Read ``audio`` in real time (``-re``), from ``start_s``, for ``length_s``."""
    cut = ["-t", f"{length_s:g}"] if length_s is not None else []
    return ["-re", "-ss", f"{start_s:g}", *cut, "-i", str(audio)]


class LiveSource:
    """FFmpeg playing (part of) a file in real time as a live stream of ``kind`` on the loopback."""

    def __init__(self, kind: str, audio: Path, workdir: Path, port: int | None = None) -> None:
        assert FFMPEG is not None
        self.kind = kind
        self.port = port or free_port()
        self._audio = audio
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: http.server.ThreadingHTTPServer | None = None
        self.hls_dir = workdir / f"hls-{self.port}"
        self.url = {
            "rtmp": f"rtmp://127.0.0.1:{self.port}/live/stage",
            "srt": f"srt://127.0.0.1:{self.port}?mode=caller",
            "hls": f"http://127.0.0.1:{self.port}/live.m3u8",
        }[kind]

    def play(self, start_s: float = 0.0, length_s: float | None = None) -> None:
        """Start FFmpeg (the encoder); for HLS also the HTTP server, once the first segments exist."""
        assert FFMPEG is not None
        common = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        source = ffmpeg_input(self._audio, start_s, length_s)
        if self.kind == "rtmp":
            out = [*ENCODE, "-f", "flv", "-listen", "1", self.url]
        elif self.kind == "srt":
            out = [*ENCODE, "-f", "mpegts", f"srt://127.0.0.1:{self.port}?mode=listener"]
        else:
            self.hls_dir.mkdir(parents=True, exist_ok=True)
            out = [*ENCODE, "-f", "hls", "-hls_time", str(HLS_SEGMENT_S), "-hls_list_size", "10"]
            out += [str(self.hls_dir / "live.m3u8")]
        log = (self._workdir / f"ffmpeg-{self.kind}-{self.port}.log").open("ab")
        self._proc = subprocess.Popen([*common, *source, *out], stdin=subprocess.DEVNULL, stderr=log)
        log.close()
        if self.kind == "hls":
            wait_for(lambda: (self.hls_dir / "live.m3u8").exists(), "the first HLS playlist")
            if self._http is None:
                self.serve()

    def serve(self) -> None:
        """Serve the HLS folder over HTTP (again, after :meth:`unserve`)."""
        handler = functools.partial(_QuietHandler, directory=str(self.hls_dir))
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def unserve(self) -> None:
        """Take the HLS server away (a network blip); the encoder goes on."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def kill(self) -> None:
        """The encoder crashes (SIGKILL)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait(10)

    def wait(self, timeout_s: float) -> None:
        """Until the encoder has played what it was given."""
        assert self._proc is not None
        self._proc.wait(timeout_s)

    def close(self) -> None:
        self.kill()
        self.unserve()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def wait_for(ready: object, what: str, timeout_s: float = START_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} did not come in {timeout_s:g} s"
        time.sleep(0.05)


class SendProcess:
    """`wsp send ...` as a process: its output lines as they come, Ctrl-C, and its exit."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wsp.cli", "send", *args],
            cwd=ROOT,
            env=clean | {"PYTHONUNBUFFERED": "1"} | (env or {}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))

    def printed(self, prefix: str) -> str:
        """The value of the first ``prefix: value`` line on stdout, waiting for it."""
        wait_for(lambda: self._has(prefix) or self.proc.poll() is not None, f"`{prefix}:` from wsp send")
        for line in self.out:
            if line.startswith(prefix + ": "):
                return line.split(": ", 1)[1]
        raise AssertionError(f"wsp send exited {self.proc.returncode} without {prefix}: {self.err[-5:]}")

    def _has(self, prefix: str) -> bool:
        return any(line.startswith(prefix + ": ") for line in self.out)

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout_s: float = STOP_S) -> int:
        code = self.proc.wait(timeout_s)
        for reader in self._readers:  # the last lines
            reader.join(timeout_s)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for reader in self._readers:
            reader.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def session_pcm(db: redis.Redis, sid: str) -> bytes:
    """Every audio sample the session's stream holds, checked to be contiguous (none twice, no holes)."""
    pcm = bytearray()
    entries: Any = db.xrange(keys.audio(sid))
    for _, fields in entries:
        if fields.get(b"kind") != b"audio":
            continue
        assert int(fields[b"sample0"]) == len(pcm) // 2, "the session's audio has a hole or an overlap"
        pcm += fields[b"pcm"]
    return bytes(pcm)


def as_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def locate(block: np.ndarray, audio: np.ndarray) -> tuple[float, float]:
    """Where ``block`` best matches in ``audio`` (seconds) and how well (normalised correlation)."""
    n = block.size
    size = 1 << int(np.ceil(np.log2(audio.size + n)))
    corr = np.fft.irfft(np.fft.rfft(audio, size) * np.conj(np.fft.rfft(block, size)), size)[
        : audio.size - n + 1
    ]
    energy = np.concatenate(([0.0], np.cumsum(audio.astype(np.float64) ** 2)))
    window = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-12))
    score = corr / (window * np.sqrt(float(np.sum(block.astype(np.float64) ** 2))) + 1e-12)
    best = int(np.argmax(score))
    return best / SAMPLE_RATE, float(score[best])


def positions(sent: np.ndarray, original: np.ndarray, block_s: float = 1.0) -> list[tuple[float, float]]:
    """For each whole ``block_s`` of what the session holds: where it is in the original, and how sure.

    An AAC encoder puts a few milliseconds of priming before the first sample, so the session's audio can
    start slightly before the original: the original is looked at with a little silence in front.
    """
    size = round(block_s * SAMPLE_RATE)
    padded = np.concatenate((np.zeros(round(LEAD_S * SAMPLE_RATE), dtype=original.dtype), original))
    found = []
    for start in range(0, sent.size - size + 1, size):
        block = sent[start : start + size]
        if np.sqrt(np.mean(block**2)) < 1e-3:  # a pause: it fits anywhere
            continue
        at, score = locate(block, padded)
        found.append((at - LEAD_S, score))
    return found


@contextlib.contextmanager
def pulse_server(workdir: Path) -> Iterator[dict[str, str]]:
    """A PulseAudio server of this test with a 2-channel null sink ``desk`` (a sound card's stand-in); yields
    the environment its clients need (the sink's monitor is their default input)."""
    assert PULSEAUDIO is not None
    runtime = workdir / "pulse-runtime"
    runtime.mkdir(mode=0o700)
    env = {
        "XDG_RUNTIME_DIR": str(runtime),
        "PULSE_RUNTIME_PATH": str(runtime / "pulse"),
        "HOME": str(workdir),
        "PULSE_SOURCE": "desk.monitor",
        "PULSE_SINK": "desk",
    }
    full = os.environ | env
    log = (workdir / "pulseaudio.log").open("ab")
    server = subprocess.Popen(
        [
            PULSEAUDIO,
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "-L",
            "module-native-protocol-unix",
            "-L",
            "module-null-sink sink_name=desk channels=2 rate=48000",
        ],
        env=full,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    try:
        wait_for(
            lambda: subprocess.run(["pactl", "info"], env=full, capture_output=True).returncode == 0,
            "the PulseAudio server",
        )
        yield env
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
