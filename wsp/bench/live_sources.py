"""Live sources on the loopback for `wsp send`'s tests and its benchmark: FFmpeg (the system's program) as an
RTMP server, an SRT listener and an HLS encoder (its segments served by a local HTTP server), a PulseAudio
server whose null sink stands in for a sound card, and the `wsp send` command itself as a process.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from wsp.bench.processes import PipelineError, free_port

ROOT = Path(__file__).resolve().parents[2]
FFMPEG = shutil.which("ffmpeg")
PULSEAUDIO = shutil.which("pulseaudio")
START_S = 20.0
"""Longest wait for one of these processes to be ready (a session printed, a server listening)."""
STOP_S = 30.0
"""Longest wait for `wsp send` to end after Ctrl-C (it sends what is left and waits for `ended`)."""
ENCODE = ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]
"""How these encoders send: AAC, 48 kHz stereo, as OBS or a hardware encoder would."""
KINDS = ("rtmp", "srt", "hls")
FEED_RATE = 16_000
FEED_PIECE_S = 0.02
"""A fed encoder gets its PCM in pieces this long: a capture card's buffer."""
FEED_PIPE_BYTES = 4096
"""The pipe into a fed encoder holds about 0.1 s, so a piece's write time is close to when it is encoded."""
F_SETPIPE_SZ = 1031
"""Linux's fcntl command that sets a pipe's size."""
HLS_SEGMENT_S = 1
HLS_LIST_SIZE = 10
"""Segments the HLS playlist lists: a reader that lost it for a few seconds finds what it missed."""
WAIT_POLL_S = 0.05


def ffmpeg_input(audio: Path, start_s: float = 0.0, length_s: float | None = None) -> list[str]:
    """Read ``audio`` in real time (``-re``), from ``start_s``, for ``length_s``."""
    cut = ["-t", f"{length_s:g}"] if length_s is not None else []
    return ["-re", "-ss", f"{start_s:g}", *cut, "-i", str(audio)]


class LiveSource:
    """FFmpeg playing (part of) a file in real time as a live stream of ``kind`` on the loopback."""

    def __init__(self, kind: str, audio: Path, workdir: Path, port: int | None = None) -> None:
        if FFMPEG is None:
            raise ConfigError("live sources need the ffmpeg program (Debian: apt install ffmpeg)")
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
        """Start FFmpeg (the encoder) on the file, read in real time; for HLS also the HTTP server."""
        self._start(ffmpeg_input(self._audio, start_s, length_s), subprocess.DEVNULL)
        self._published()

    def feed(self, pcm: bytes) -> FeedClock:
        """Start FFmpeg on PCM (16 kHz mono s16le) that a thread writes into it in real time, as a capture
        card would, noting when each piece went in: the source time of every sample."""
        self._start(["-f", "s16le", "-ar", str(FEED_RATE), "-ac", "1", "-i", "pipe:0"], subprocess.PIPE)
        assert self._proc is not None and self._proc.stdin is not None
        with contextlib.suppress(OSError):  # a small pipe: what is written is soon in the encoder
            fcntl.fcntl(self._proc.stdin.fileno(), F_SETPIPE_SZ, FEED_PIPE_BYTES)
        clock = FeedClock(self._proc.stdin, pcm)
        clock.start()
        self._published()
        return clock

    def _start(self, source: list[str], stdin: int) -> None:
        assert FFMPEG is not None  # checked in the constructor
        common = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        if self.kind == "rtmp":
            out = [*ENCODE, "-f", "flv", "-listen", "1", self.url]
        elif self.kind == "srt":
            out = [*ENCODE, "-f", "mpegts", f"srt://127.0.0.1:{self.port}?mode=listener"]
        else:
            self.hls_dir.mkdir(parents=True, exist_ok=True)
            segments = ["-hls_time", str(HLS_SEGMENT_S), "-hls_list_size", str(HLS_LIST_SIZE)]
            out = [*ENCODE, "-f", "hls", *segments, str(self.hls_dir / "live.m3u8")]
        log = (self._workdir / f"ffmpeg-{self.kind}-{self.port}.log").open("ab")
        self._proc = subprocess.Popen([*common, *source, *out], stdin=stdin, stderr=log)
        log.close()

    def _published(self) -> None:
        """For HLS: once the first playlist exists, serve it."""
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


class FeedClock:
    """Writes PCM into an encoder in pieces of :data:`FEED_PIECE_S`, each when it is due in real time,
    and remembers when each piece had gone in."""

    def __init__(self, pipe: Any, pcm: bytes) -> None:
        self._pipe = pipe
        self._pcm = pcm
        self._piece = round(FEED_PIECE_S * FEED_RATE) * 2
        self.written: list[float] = []
        """``time.monotonic()`` when each piece had been written."""
        self._thread = threading.Thread(target=self._write, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _write(self) -> None:
        began: float | None = None
        try:
            for number, pos in enumerate(range(0, len(self._pcm), self._piece)):
                if began is not None:
                    time.sleep(max(0.0, began + number * FEED_PIECE_S - time.monotonic()))
                self._pipe.write(self._pcm[pos : pos + self._piece])
                self._pipe.flush()
                self.written.append(time.monotonic())
                began = began if began is not None else self.written[0] - FEED_PIECE_S
        except (BrokenPipeError, ValueError, OSError):  # the encoder went away
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._pipe.close()

    def at(self, sample: int) -> float | None:
        """When the piece holding ``sample`` (counted from the first fed) had gone into the encoder."""
        index = sample * 2 // self._piece
        return self.written[index] if 0 <= index < len(self.written) else None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def wait_for(ready: Callable[[], object], what: str, timeout_s: float = START_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise PipelineError(f"{what} did not come in {timeout_s:g} s")
        time.sleep(WAIT_POLL_S)


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
        raise PipelineError(f"wsp send exited {self.proc.returncode} without {prefix}: {self.err[-5:]}")

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


@contextlib.contextmanager
def pulse_server(workdir: Path) -> Iterator[dict[str, str]]:
    """A PulseAudio server of this test with a 2-channel null sink ``desk`` (a sound card's stand-in); yields
    the environment its clients need (the sink's monitor is their default input)."""
    if PULSEAUDIO is None:
        raise ConfigError("a stand-in sound card needs PulseAudio (apt install pulseaudio pulseaudio-utils)")
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
