"""What a source of audio is to the sender: something that opens, yields 16 kHz mono PCM, and may drop.

A source's :meth:`Source.read` blocks (it runs in a thread of its own). A source that cannot be opened or
drops raises :class:`SourceUnavailable`, which the sender answers by trying again; one that can never
work (no audio track, no such device, a missing file) raises :class:`SourceError`, which ends the command.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from common.errors import WspError


class SourceError(WspError):
    """The source cannot deliver audio, and trying again will not change that."""


class NoAudioTrack(SourceError):
    """The stream or file opened, but it carries no audio."""


class SourceUnavailable(WspError):
    """The source cannot be reached right now, or it dropped: worth another try."""


class Source(Protocol):
    description: str
    """What the source is, for the terminal (a URL without its secrets, a device name)."""

    @property
    def live(self) -> bool:
        """True for a source that runs at its own pace (a stream, a sound card), known once open."""
        ...

    def open(self) -> None:
        """Connect; raises :class:`SourceUnavailable` or :class:`SourceError`."""

    def read(self) -> Iterator[bytes]:
        """PCM s16le, 16 kHz, mono, as it comes; returns at the end of a recording."""
        ...

    def stop(self) -> None:
        """From another thread: make a blocked :meth:`open` or :meth:`read` return soon."""

    def close(self) -> None:
        """Release the source (from the thread that reads it)."""
