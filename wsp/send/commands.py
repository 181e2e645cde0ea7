"""``wsp send SOURCE --url INGEST_URL [--session SID --token AUDIO_TOKEN]`` and ``wsp send --list-devices``.

Creates the session when none is given (and prints its display links), then sends the source until it
ends or Ctrl-C. Every user mistake (an unknown device, a source that cannot be opened after its retries, a
stream without audio, a refused token) is one line and exit 2, through :class:`~common.errors.WspError`.
Nothing here imports PyAV or PortAudio until the command runs: ``wsp`` stays usable without them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from common import eventloop
from common.errors import ConfigError
from common.logs import configure_logging
from common.settings import Settings, load_settings

if TYPE_CHECKING:
    from wsp.client import SessionInfo
    from wsp.send.display import Display
    from wsp.send.sender import SendResult
    from wsp.send.sources import Source

EXIT_LEFT_OPEN = 130
"""Exit status when Ctrl-C left the session open, or came before there was one (the shell's code for an
interrupted program)."""
MAX_FRAME_MS = 1000
MIN_FRAME_MS = 10
"""Frames between 10 ms and 1 s: the ingest protocol's ~0.1-1 s frames, well under its largest frame."""


def cmd_send(args: argparse.Namespace) -> int:
    if args.list_devices:
        return _list_devices()
    settings = load_settings()
    source = _source(args, settings)
    target = _target(args, settings)
    if args.source_tries < 1:
        raise ConfigError("--source-tries must be at least 1")
    if not MIN_FRAME_MS <= args.frame_ms <= MAX_FRAME_MS:
        raise ConfigError(f"--frame-ms must be between {MIN_FRAME_MS} and {MAX_FRAME_MS}")

    from wsp.send.display import Display

    display = Display()
    quiet = logging.ERROR if display.console.is_terminal else logging.WARNING  # the panel says the rest
    configure_logging(logging.DEBUG if args.verbose else quiet, settings.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one request per session: not worth a line
    result = eventloop.run(_run(args, settings, source, target, display))
    return _report(result, args.stats, display)


def _list_devices() -> int:
    from wsp.send.device import list_devices

    devices = list_devices()
    if not devices:
        print("no input devices (PortAudio sees none: is a card connected, is the audio server running?)")
    for device in devices:
        mark = "*" if device.default else " "
        print(
            f"{mark} {device.index:3d}  {device.name}  ({device.host_api}, {device.input_channels} in, "
            f"{device.default_rate:g} Hz)"
        )
    return 0


def _source(args: argparse.Namespace, settings: Settings) -> Source:
    from wsp.send.device import DeviceSource, parse_channels
    from wsp.send.media import MediaSource

    spec = args.source or settings.source
    if args.device is not None:
        if args.source:
            raise ConfigError("give a stream or file, or --device, not both")
        return DeviceSource(args.device, parse_channels(args.channel))
    if args.channel is not None:
        raise ConfigError("--channel picks channels of a sound card: use it with --device")
    if not spec:
        raise ConfigError("nothing to send: give a stream URL or a file, --device NAME, or WSP_SOURCE")
    return MediaSource(spec)


@dataclass(frozen=True)
class Target:
    """Where the audio goes: the ingest service, and the session to continue (None: a new one)."""

    base: str
    session: str | None
    token: str | None


def _target(args: argparse.Namespace, settings: Settings) -> Target:
    from wsp.client import http_base

    url = args.url or settings.ingest_url
    if not url:
        raise ConfigError(
            "--url is needed: the ingest service, e.g. --url http://HOST:8000 (or WSP_INGEST_URL)"
        )
    session = args.session or settings.session
    token = args.token or (settings.audio_token.get_secret_value() if settings.audio_token else None)
    if session and not token:
        raise ConfigError("--session needs --token: the audio token the session was created with")
    return Target(http_base(url), session, token)


async def _run(
    args: argparse.Namespace,
    settings: Settings,
    source: Source,
    target: Target,
    display: Display,
) -> SendResult | None:
    """Open the source, then the session, then send; None when Ctrl-C came before there was a session."""
    from wsp.send.sender import Sender, SendOptions

    options = SendOptions(
        frame_s=args.frame_ms / 1000, fast=args.as_fast_as_possible, open_attempts=args.source_tries
    )
    warn = lambda text: display.say(f"warning: {text}", "yellow")  # noqa: E731
    sender = Sender(source, options, on_warning=warn)
    presses = 0
    continue_hint = ""

    def interrupted() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            if continue_hint:
                display.say("ending the session: sending what is left ... (Ctrl-C again leaves it open)")
            sender.stop()
        else:
            sender.abandon()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted)
    loop.add_signal_handler(signal.SIGTERM, sender.abandon)  # a stopped container: others may go on
    try:
        try:
            await sender.open_source()
            if sender.stopping:
                await sender.close()
                return None
            info, continue_hint = await _announce(args, settings, source, target)
        except BaseException:  # a refused session: the source thread must not outlive the loop
            await sender.close()
            raise
        sender.connect(info.audio_url)
        async with display.showing(sender):
            result = await sender.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    if not result.ended:
        display.say(f"left the session open; to continue it: {continue_hint}")
    return result


async def _announce(
    args: argparse.Namespace, settings: Settings, source: Source, target: Target
) -> tuple[SessionInfo, str]:
    """Create the session (or look it up) and print its links; the session and the `continue:` command."""
    from wsp.client import open_session, tracks_for

    base, session, token = target.base, target.session, target.token
    info = await open_session(
        base,
        session,
        language=args.language,
        tracks=tracks_for(args.language, args.task),
        glossary=args.glossary or (),
        title=args.title or source.description,
        token=token,
        api_key=settings.api_key_value(),
    )
    audio_token = token or parse_qs(urlsplit(info.audio_url).query).get("token", [""])[0]
    print(f"session: {info.id}", flush=True)
    if info.display_url:
        print(f"display: {info.display_url}", flush=True)
    if info.captions_url:
        print(f"captions: {info.captions_url}", flush=True)
    continue_hint = f"wsp send SOURCE --url {base} --session {info.id} --token {audio_token}"
    if not session:
        print(f"continue: {continue_hint}", flush=True)
    return info, continue_hint


def _report(result: SendResult | None, stats: Path | None, display: Display) -> int:
    if result is None:
        display.say("stopped before anything was sent")
        return EXIT_LEFT_OPEN
    figures = result.figures()
    display.say(
        ("ended" if result.ended else "left open")
        + f": {figures['audio_s']:.1f} s of audio acknowledged; source to ingest acknowledgement "
        f"p50 {figures['delay_p50_s']:.3f} s, p90 {figures['delay_p90_s']:.3f} s; "
        f"CPU {figures['cpu_percent']:.1f} % of one core"
    )
    if stats is not None:
        stats.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    sys.stdout.flush()
    return 0 if result.ended else EXIT_LEFT_OPEN
