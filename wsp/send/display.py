"""What ``wsp send`` shows on the terminal while it runs (rich): a level meter, the clock of audio sent and
acknowledged, the state of the source and of the ingest connection, and the level alarms.

On a terminal the panel redraws in place a few times a second and warnings scroll above it. Elsewhere (a
container's log, a pipe) the same facts come as one line every :data:`STATUS_EVERY_S` and each warning on
a line of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from common.audio import SAMPLE_RATE
from wsp.send.meter import FLOOR_DBFS, SILENCE_DBFS, MeterReading
from wsp.send.sender import Sender, SourceState
from wsp.uplink import UplinkState

REFRESH_PER_S = 4
"""Redraws of the panel per second: the meter follows speech, the terminal is not flooded."""
STATUS_EVERY_S = 10.0
"""Without a terminal, one status line this often."""
METER_WIDTH = 40
METER_RANGE_DBFS = -60.0
"""The meter's left end; the right end is full scale."""
HOT_DBFS = -6.0
"""Levels above this show in yellow: close to clipping."""


def clock(seconds: float) -> str:
    whole = int(max(0.0, seconds))
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _meter_bar(reading: MeterReading | None) -> Text:
    bar = Text()
    if reading is None:
        return bar.append("·" * METER_WIDTH, style="dim")
    level = max(0.0, min(1.0, 1 - reading.rms_dbfs / METER_RANGE_DBFS))
    peak = max(0.0, min(1.0, 1 - reading.peak_dbfs / METER_RANGE_DBFS))
    filled, peak_at = round(level * METER_WIDTH), min(METER_WIDTH - 1, round(peak * METER_WIDTH))
    for cell in range(METER_WIDTH):
        at_db = METER_RANGE_DBFS * (1 - (cell + 1) / METER_WIDTH)
        style = "red" if reading.clipping and cell >= peak_at else "yellow" if at_db > HOT_DBFS else "green"
        if cell < filled:
            bar.append("█", style=style)
        elif cell == peak_at and reading.peak_dbfs > FLOOR_DBFS:
            bar.append("│", style=style)
        else:
            bar.append("·", style="dim")
    return bar


def _level_words(reading: MeterReading | None) -> str:
    if reading is None:
        return "no audio yet"
    words = f"{reading.rms_dbfs:5.1f} dBFS, peak {reading.peak_dbfs:5.1f}"
    if reading.clipping:
        words += "  CLIPPING"
    elif reading.rms_dbfs < SILENCE_DBFS:
        words += f"  silent {reading.silent_s:.0f} s"
    return words


def _source_words(sender: Sender) -> str:
    status = sender.status
    state = status.source_state
    if state is SourceState.RUNNING:
        pace = "fast" if status.paced is False else "real time"
        kind = "live" if status.live else f"recording, {pace}"
        return f"{kind}" + (f", {status.source_drops} drops" if status.source_drops else "")
    if state is SourceState.RETRYING:
        return f"lost, retrying: {status.source_note}"
    return state.value


def _ingest_words(sender: Sender) -> str:
    uplink = sender.uplink
    if uplink.state is UplinkState.RECONNECTING:
        return f"reconnecting ({uplink.last_error})"
    words = uplink.state.value
    if uplink.reconnects:
        words += f", {uplink.reconnects} reconnects"
    if uplink.dropped:
        words += f", {uplink.dropped / SAMPLE_RATE:.1f} s lost while away"
    return words


def render(sender: Sender) -> Group:
    """The panel: source, ingest, meter, clocks, the last warnings, and what Ctrl-C does now."""
    status, uplink = sender.status, sender.uplink
    backlog = uplink.backlog_samples / SAMPLE_RATE
    lines = [
        Text.assemble(("source  ", "bold"), status.source, "  ", (_source_words(sender), "cyan")),
        Text.assemble(("ingest  ", "bold"), _ingest_words(sender)),
        Text.assemble(("level   ", "bold"), _meter_bar(status.meter), " ", _level_words(status.meter)),
        Text.assemble(
            ("sent    ", "bold"),
            clock(uplink.pushed / SAMPLE_RATE),
            f"   acknowledged {clock(uplink.acked / SAMPLE_RATE)}",
            f"   waiting {backlog:.1f} s" if backlog >= 1 else "",
        ),
    ]
    lines += [Text(f"! {text}", style="yellow") for text in status.warnings]
    if sender.stopping:
        hint = "ending the session ... Ctrl-C again leaves it open for another sender"
    else:
        hint = "Ctrl-C ends the session; pressed twice, it leaves the session open"
    lines.append(Text(hint, style="dim"))
    return Group(*lines)


def status_line(sender: Sender) -> str:
    """The panel as one line, for logs."""
    uplink = sender.uplink
    return (
        f"sent {clock(uplink.pushed / SAMPLE_RATE)}, acknowledged {clock(uplink.acked / SAMPLE_RATE)}; "
        f"level {_level_words(sender.status.meter)}; source {_source_words(sender)}; "
        f"ingest {_ingest_words(sender)}"
    )


class Display:
    """``async with display.showing(sender):`` while the sender runs; :meth:`say` prints a line above."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)

    def say(self, text: str, style: str = "") -> None:
        self.console.print(text, style=style or None, markup=False, highlight=False)

    @contextlib.asynccontextmanager
    async def showing(self, sender: Sender) -> AsyncIterator[None]:
        if self.console.is_terminal:
            with Live(
                get_renderable=lambda: render(sender),
                console=self.console,
                refresh_per_second=REFRESH_PER_S,
                transient=False,
            ):
                yield
            return
        ticker = asyncio.create_task(self._tick(sender))
        try:
            yield
        finally:
            ticker.cancel()
            self.say(status_line(sender))

    async def _tick(self, sender: Sender) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            self.say(status_line(sender))
