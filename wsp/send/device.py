"""A sound-card input through PortAudio (the ``sounddevice`` package): a USB interface on the caption laptop,
an aux feed from the mixing desk into a line input.

The card is opened at its own sample rate with as many channels as the chosen ones need; the chosen
channels (``--channel 2``, or ``--channel 1,2`` for a mix of them) are averaged to mono and libswresample
brings them to 16 kHz. A card that is unplugged stops delivering: :data:`STALL_S` later the source counts
as dropped, and the sender opens it again (by name, so a card that comes back at another index is found).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsp.send.resample import Resampler
from wsp.send.sources import SourceError, SourceUnavailable

log = logging.getLogger(__name__)

STALL_S = 3.0
"""A card that delivers nothing for this long has stopped (unplugged, or taken by another program)."""
BLOCK_S = 0.05
"""PortAudio hands over audio in blocks of this length: short, so the level meter and the sender react."""
QUEUE_BLOCKS = 400
"""Blocks held between PortAudio's thread and the reader (20 s): beyond it the oldest are lost."""
STEREO_PAIR = (1, 2)
"""The channels mixed when none are chosen, on a card with two or more: a desk's stereo feed."""
MISSING_LIBRARY_HINT = "install PortAudio (Debian: apt install libportaudio2)"


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    host_api: str
    input_channels: int
    default_rate: float
    default: bool


def _sounddevice() -> Any:
    """The ``sounddevice`` module; it loads the PortAudio library, which may be missing."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise SourceError(f"sound cards are unavailable: {exc}; {MISSING_LIBRARY_HINT}") from exc
    return sounddevice


def list_devices() -> list[DeviceInfo]:
    """Every input PortAudio sees (``wsp send --list-devices``)."""
    sd = _sounddevice()
    apis = [api["name"] for api in sd.query_hostapis()]
    try:
        default_input = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        default_input = -1
    return [
        DeviceInfo(
            index=int(d["index"]),
            name=str(d["name"]),
            host_api=apis[int(d["hostapi"])],
            input_channels=int(d["max_input_channels"]),
            default_rate=float(d["default_samplerate"]),
            default=int(d["index"]) == default_input,
        )
        for d in sd.query_devices()
        if int(d["max_input_channels"]) > 0
    ]


def parse_channels(text: str | None) -> tuple[int, ...] | None:
    """``"2"`` -> (2,), ``"1,2"`` or ``"1+2"`` -> (1, 2); channels count from 1, as on a desk."""
    if text is None:
        return None
    try:
        channels = tuple(int(part) for part in text.replace("+", ",").split(",") if part.strip())
    except ValueError:
        channels = ()
    if not channels or min(channels) < 1 or len(set(channels)) != len(channels):
        raise SourceError(f"--channel wants channel numbers from 1, like 2 or 1,2 (a mix), got {text!r}")
    return channels


class DeviceSource:
    """The input ``device`` (an index from ``--list-devices``, or part of a name), ``channels`` mixed."""

    live = True

    def __init__(self, device: str, channels: Sequence[int] | None = None) -> None:
        self._device = device
        self._channels = tuple(channels) if channels else None
        self.description = f"sound card {device}"
        self._stream: Any = None
        self._blocks: queue.Queue[np.ndarray] = queue.Queue(QUEUE_BLOCKS)
        self._rate = 0
        self._picked: tuple[int, ...] = ()
        self._stopped = threading.Event()
        self.overflows = 0
        """Times the card had audio the program did not take in time (lost samples)."""

    def _resolve(self, sd: Any) -> dict[str, Any]:
        wanted: int | str = int(self._device) if self._device.strip().isdigit() else self._device
        try:
            info: dict[str, Any] = sd.query_devices(wanted, "input")
        except ValueError as exc:  # no such device, no input channels, or a name that fits several
            raise SourceError(
                f"unknown input device {self._device!r} ({exc}); see wsp send --list-devices"
            ) from exc
        return info

    def open(self) -> None:
        sd = _sounddevice()
        self._stopped.clear()
        try:
            sd._terminate()  # PortAudio lists devices once per initialisation: look again for a card
            sd._initialize()  # that was plugged in (or back) since
        except sd.PortAudioError as exc:
            raise SourceUnavailable(f"PortAudio: {exc}") from exc
        info = self._resolve(sd)
        available = int(info["max_input_channels"])
        picked = self._channels or (STEREO_PAIR if available >= len(STEREO_PAIR) else (1,))
        if max(picked) > available:
            raise SourceError(
                f"{info['name']} has {available} input channels; --channel {max(picked)} is not one"
            )
        self.description = (
            f"{info['name']} (channel{'s' if len(picked) > 1 else ''} {'+'.join(map(str, picked))})"
        )
        self._rate = round(float(info["default_samplerate"]))
        self._picked = tuple(c - 1 for c in picked)
        self._blocks = queue.Queue(QUEUE_BLOCKS)
        try:
            self._stream = sd.InputStream(
                device=int(info["index"]),
                channels=max(picked),
                samplerate=self._rate,
                dtype="float32",
                blocksize=round(BLOCK_S * self._rate),
                callback=self._take,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            self.close()
            raise SourceUnavailable(f"cannot open {self.description}: {exc}") from exc
        log.info("opened %s at %d Hz", self.description, self._rate)

    def _take(self, block: np.ndarray, frames: int, time: Any, status: Any) -> None:
        """PortAudio's thread: keep the chosen channels' mix, never block."""
        if status.input_overflow:
            self.overflows += 1
        mono = block[:, self._picked].mean(axis=1, dtype=np.float32)
        try:
            self._blocks.put_nowait(mono)
        except queue.Full:
            self.overflows += 1

    def read(self) -> Iterator[bytes]:
        resampler = Resampler()
        while not self._stopped.is_set():
            try:
                block = self._blocks.get(timeout=STALL_S)
            except queue.Empty:
                if self._stopped.is_set():
                    return
                raise SourceUnavailable(f"{self.description} delivered no audio for {STALL_S:g} s") from None
            pcm = resampler.convert_array(block, self._rate)
            if pcm:
                yield pcm

    def stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        self._stopped.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception as exc:  # a card that vanished fails to stop; it is gone all the same
                log.debug("closing %s: %s", self.description, exc)
