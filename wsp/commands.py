"""What ``wsp`` runs for the services and the whole stack: settings, logging, then the service itself.

Each function takes the parsed arguments (:mod:`wsp.cli`) and returns the exit code; a user mistake raises
:class:`~common.errors.WspError`, which ``wsp`` prints as one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from common import eventloop
from common.errors import ConfigError
from common.logs import configure_logging, redact
from common.options import StreamingOptions
from common.settings import Settings, describe, load_settings

log = logging.getLogger("wsp")


def bundled_sample(name: str = "ja_concert.wav") -> Path:
    return Path(str(resources.files("common") / "samples" / name))


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    """``WSP_*`` settings, with the options given on the command line on top."""
    given = {"model": getattr(args, "model", None), **overrides}
    return load_settings(**{k: v for k, v in given.items() if v is not None})


def streaming_options(args: argparse.Namespace) -> StreamingOptions:
    """The streaming options ``--language``, ``--task``, ``--beam-size``, ``--set``... ask for."""
    fields: dict[str, object] = {
        "language": args.language,
        "task": args.task,
        "glossary": tuple(args.glossary or ()),
        "vad": not getattr(args, "no_vad", False),
    }
    if getattr(args, "beam_size", None) is not None:
        fields["beam_size"] = args.beam_size
    for item in getattr(args, "set", None) or ():
        name, sep, value = item.partition("=")
        if not sep or name not in StreamingOptions.model_fields or name in fields:
            raise ConfigError(f"--set wants NAME=VALUE with NAME a streaming option, got {item!r}")
        fields[name] = None if value.lower() == "none" else value
    try:
        return StreamingOptions(**fields)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from exc


def _configure(args: argparse.Namespace, settings: Settings) -> None:
    configure_logging(logging.DEBUG if args.verbose else settings.log_level, settings.log_format)


def cmd_ingest(args: argparse.Namespace) -> int:
    from common.serving import run_service
    from ingest.server import server_config

    settings = settings_from(args, host=args.host, ingest_port=args.port)
    _configure(args, settings)
    return run_service("ingest", server_config, settings)


def cmd_publisher(args: argparse.Namespace) -> int:
    from common.serving import run_service
    from publisher.server import server_config

    settings = settings_from(args)
    _configure(args, settings)
    return run_service("publisher", server_config, settings)


def cmd_worker(args: argparse.Namespace) -> int:
    from asr_worker.service.main import run_worker
    from common.redis_conn import require_url

    settings = settings_from(args, worker_id=args.id, worker_capacity=args.capacity)
    require_url(settings.redis_url)
    _configure(args, settings)
    eventloop.run(run_worker(settings))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from wsp.probe import check

    return check(args.service, args.url, args.timeout)


def cmd_up(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from wsp.network import exposure_notes, for_venue, lan_address
    from wsp.stack import Stack

    settings = settings_from(args)
    settings = for_venue(settings, args.local, None if args.local else lan_address())
    configure_logging(logging.DEBUG if args.verbose else settings.log_level, settings.log_format)

    async def run() -> None:
        stack = Stack(settings, persistent=True)
        print("starting: Redis, ingest, ASR worker (loading the model), publisher ...", file=sys.stderr)
        urls = await stack.start()
        print(f"ingest:    {urls.ingest}   (the microphone page, POST /v1/sessions, WS .../audio)")
        print(f"publisher: {urls.publisher}   (display links, WS /v1/sessions/SID/captions, .srt, .vtt)")
        redis_url = redact(urls.redis)
        print(f"redis:     {redis_url}   (more workers: WSP_REDIS_URL={redis_url} wsp worker)")
        if not settings.redis_url:
            print(f"data:      {settings.redis_data_dir}   (sessions survive a restart)")
        for note in exposure_notes(settings):
            print(f"note: {note}")
        print("Ctrl-C stops everything.", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        waiter = asyncio.create_task(stack.wait())
        try:
            await asyncio.wait([waiter, asyncio.create_task(stopping.wait())], return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()
            print("stopping ...", file=sys.stderr)
            await stack.stop()
        if waiter.done() and not waiter.cancelled() and waiter.exception():
            raise waiter.exception()  # type: ignore[misc]

    eventloop.run(run())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from wsp.demo import run_demo

    options = streaming_options(args)  # validates language and task early
    tracks = None
    if options.task == "translate" and options.language != "en":
        tracks = [{"name": options.language, "task": "transcribe"}, {"name": "en", "task": "translate"}]
    path = args.file or bundled_sample()
    settings = settings_from(args)
    if not args.verbose:  # the captions are the output; service chatter would drown them
        settings = settings.model_copy(update={"log_level": "WARNING"})
    summary = eventloop.run(run_demo(settings, path, options.language, tracks, args.chunk_ms))
    for track, figures in summary.items():
        shown = ", ".join(f"{k} {v}" for k, v in figures.items())
        print(f"{track}: {shown}", file=sys.stderr)
    return 0
