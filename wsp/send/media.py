"""Any URL or file FFmpeg's libraries read, through PyAV: ``rtmp://``, ``srt://``, ``rtsp://``, HLS
(``http(s)://….m3u8``), Icecast and other HTTP streams, and files.

PyAV demuxes and decodes; libswresample (:class:`~wsp.send.sources.Resampler`) turns whatever comes out
into 16 kHz mono. A source is *live* when it has no known length (a stream): it is sent as it comes. One with
a length (a file, a recording on a server) is paced by the sender.

The FFmpeg inside PyAV's wheels is built without libsrt. For a protocol it lacks, the system's ``ffmpeg``
program (Debian's has SRT) receives the stream and copies its audio packets unchanged into a pipe, as
MPEG-TS; PyAV decodes from that pipe as from any other input.

An HLS reader that reconnects starts at the oldest segment the playlist still lists, so that an outage
shorter than the playlist loses nothing; it hears again what it already delivered, and audio whose
timestamps lie before what was delivered (within :data:`HLS_REPLAY_WINDOW_S`) is dropped: nothing is sent
twice.
"""

from __future__ import annotations

import collections
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import av
import av.container

from wsp.send.resample import Resampler
from wsp.send.sources import NoAudioTrack, SourceError, SourceUnavailable

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0
"""Longest wait for a stream to open (connect, and the first packets that tell what it carries)."""
READ_TIMEOUT_S = 10.0
"""A stream that delivers nothing for this long has dropped."""
PROBE_OPTIONS = {"analyzeduration": "1000000", "probesize": "65536"}
"""Look at 1 s of a stream (or 64 kB) to learn its codecs, not FFmpeg's default 5 s: less delay."""
HLS_REPLAY_WINDOW_S = 60.0
"""How far back a reconnected HLS reader can start: a live playlist lists its last few segments (six of
six seconds is common, 36 s). Audio older than what was delivered, by less than this, is a replay; further
back, the encoder started a new timeline (a restarted encoder counts from zero again)."""
HLS_RESUME_OPTIONS = {"live_start_index": "0"}
"""A reconnecting HLS reader starts at the oldest segment listed (FFmpeg's default is three before the end,
which loses what came during an outage longer than three segments)."""
RELAY_PROGRAM = "ffmpeg"
RELAY_LOW_DELAY = ("-flush_packets", "1", "-muxdelay", "0")
"""Each packet goes into the pipe at once (not when an I/O buffer of seconds of audio is full)."""
RELAY_STDERR_LINES = 20
"""Lines of the relay's error output kept for the message when it fails."""
RELAY_STOP_S = 3.0
FFMPEG_CONTEXT = re.compile(r"^\[\w+ @ 0x[0-9a-f]+\]\s*")
"""The ``[srt @ 0x55ad3cc01640]`` in front of an ffmpeg message: of no use to a technician."""
SECRET_QUERY_WORDS = ("token", "key", "pass", "secret", "auth")
"""Query parameters whose values are not shown in the terminal (stream keys, passphrases)."""


def redact(url: str) -> str:
    """``url`` with a password and secret-looking query values hidden, for the terminal and logs."""
    parts = urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:  # a path (or a Windows drive letter)
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    query = "&".join(
        f"{name}=***" if value and any(w in name.lower() for w in SECRET_QUERY_WORDS) else item
        for item in parts.query.split("&")
        if item
        for name, _, value in [item.partition("=")]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def is_url(source: str) -> bool:
    scheme = urlsplit(source).scheme
    return len(scheme) > 1 and "://" in source


def _reason(exc: Exception) -> str:
    """What went wrong, without the URL (the terminal shows the source beside it)."""
    return str(getattr(exc, "strerror", None) or exc)


class _Relay:
    """The system's ``ffmpeg`` receiving a stream and copying its audio into a pipe, as MPEG-TS."""

    def __init__(self, url: str) -> None:
        program = shutil.which(RELAY_PROGRAM)
        if program is None:
            scheme = urlsplit(url).scheme
            raise SourceError(
                f"PyAV's FFmpeg cannot read {scheme}:// and no ffmpeg program was found to receive it; "
                "install ffmpeg (Debian: apt install ffmpeg)"
            )
        probe = [word for name, value in PROBE_OPTIONS.items() for word in (f"-{name}", value)]
        command = [program, "-nostdin", "-hide_banner", "-loglevel", "error", *probe, "-i", url]
        command += ["-vn", "-sn", "-dn", "-c:a", "copy", *RELAY_LOW_DELAY, "-f", "mpegts", "pipe:1"]
        self._proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._errors: collections.deque[str] = collections.deque(maxlen=RELAY_STDERR_LINES)
        self._drain = threading.Thread(target=self._read_errors, daemon=True)
        self._drain.start()

    @property
    def input(self) -> str:
        assert self._proc.stdout is not None
        return f"pipe:{self._proc.stdout.fileno()}"

    def _read_errors(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._errors.append(line.decode(errors="replace").strip())

    def failure(self) -> Exception:
        """Why the relay stopped, as the exception the sender understands."""
        try:
            self._proc.wait(timeout=RELAY_STOP_S)
        except subprocess.TimeoutExpired:
            return SourceUnavailable("the stream stopped delivering audio")
        self._drain.join(RELAY_STOP_S)
        said = "; ".join(FFMPEG_CONTEXT.sub("", line) for line in self._errors if line)
        text = said or f"ffmpeg exited with {self._proc.returncode}"
        if "does not contain any stream" in text:
            return NoAudioTrack("the stream has no audio track")
        return SourceUnavailable(text)

    def stop(self) -> None:
        """End the relay process (safe from any thread): its pipe closes and a blocked read returns."""
        if self._proc.poll() is None:
            self._proc.terminate()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=RELAY_STOP_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()


class MediaSource:
    """A stream URL or a file, decoded by PyAV. Reopening continues after what was already delivered."""

    def __init__(self, source: str) -> None:
        self._source = source
        self.description = redact(source)
        self._container: av.container.InputContainer | None = None
        self._relay: _Relay | None = None
        self._live = True
        self._replays = False
        self._delivered_until: float | None = None
        """End of the audio delivered so far, in the stream's own timestamps (seconds)."""
        self._stopped = threading.Event()

    @property
    def live(self) -> bool:
        return self._live

    def open(self) -> None:
        self._stopped.clear()
        if not is_url(self._source) and not Path(self._source).exists():
            raise SourceError(f"no such file: {self._source}")
        try:
            self._container = self._open_input()
        except av.ProtocolNotFoundError:
            self._relay = _Relay(self._source)
            try:
                self._container = self._open(self._relay.input, "mpegts")
            except (av.FFmpegError, OSError) as exc:
                failure = self._relay.failure()
                self.close()
                raise failure from exc
        if not self._container.streams.audio:
            self.close()
            raise NoAudioTrack(f"{self.description} has no audio track")
        duration = self._container.duration
        self._live = not duration
        self._replays = self._container.format.name == "hls"
        stream = self._container.streams.audio[0]
        log.info(
            "opened %s: %s, %s Hz, %s channels, %s",
            self.description,
            stream.codec_context.name,
            stream.rate,
            stream.channels,
            "live" if not duration else f"{duration / av.time_base:.1f} s",
        )

    def _open_input(self) -> av.container.InputContainer:
        try:
            return self._open(self._source, None)
        except av.ProtocolNotFoundError:
            raise
        except (av.InvalidDataError, av.DecoderNotFoundError) as exc:
            if not is_url(self._source):
                raise SourceError(f"cannot read {self._source}: {exc}") from exc
            raise SourceUnavailable(_reason(exc)) from exc
        except (av.FFmpegError, OSError) as exc:
            raise SourceUnavailable(_reason(exc)) from exc

    def _open(self, url: str, format_name: str | None) -> av.container.InputContainer:
        options = dict(PROBE_OPTIONS) if is_url(self._source) else {}
        if self._delivered_until is not None and is_url(self._source):
            options |= HLS_RESUME_OPTIONS  # read by the HLS demuxer only
        return av.open(
            url, "r", format=format_name, options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S)
        )

    def read(self) -> Iterator[bytes]:
        container = self._container
        if container is None:
            raise SourceUnavailable("the source is not open")
        stream = container.streams.audio[0]
        resampler = Resampler()
        yielded = False
        try:
            for packet in container.demux(stream):
                if self._stopped.is_set():
                    return
                try:
                    frames = packet.decode()
                except av.InvalidDataError as exc:  # one damaged packet of a network stream
                    log.debug("%s: a packet could not be decoded: %s", self.description, exc)
                    continue
                for frame in frames:
                    if self._is_replay(frame):
                        continue
                    pcm = resampler.convert(frame)
                    if pcm:
                        yielded = True
                        yield pcm
        except (av.FFmpegError, OSError) as exc:
            if self._stopped.is_set():
                return
            if self._relay is not None:
                raise self._relay.failure() from exc
            raise SourceUnavailable(_reason(exc)) from exc
        tail = resampler.convert(None)
        if tail:
            yield tail
        if self._relay is not None and not yielded and not self._stopped.is_set():
            raise self._relay.failure()  # it stopped before any audio: say why

    def _is_replay(self, frame: av.AudioFrame) -> bool:
        """Whether ``frame`` was delivered before (a reconnected HLS reader); remembers where audio ends."""
        if frame.time is None:
            return False
        start = float(frame.time)
        end = start + frame.samples / frame.sample_rate
        until = self._delivered_until
        replayed = until is not None and start < until and until - start <= HLS_REPLAY_WINDOW_S
        if self._replays and replayed and until is not None and end <= until + (end - start) / 2:
            return True
        self._delivered_until = end
        return False

    def stop(self) -> None:
        """A read waiting on a relay returns at once; one waiting on the network within its timeout."""
        self._stopped.set()
        relay = self._relay
        if relay is not None:
            relay.stop()

    def close(self) -> None:
        self._stopped.set()
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except (av.FFmpegError, OSError) as exc:
                log.debug("closing %s: %s", self.description, exc)
