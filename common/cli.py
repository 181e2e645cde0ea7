"""The ``wsp`` command: parse, configure logging, build settings, run. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from common import eventloop
from common.errors import ConfigError, WspError
from common.logs import configure_logging
from common.options import StreamingOptions
from common.settings import Settings, describe, load_settings

if TYPE_CHECKING:
    import numpy as np

    from asr_worker.simulation import TimedCommit
    from asr_worker.whisper_engine import WhisperTranscriber

log = logging.getLogger("wsp")


def bundled_sample(name: str = "ja_concert.wav") -> Path:
    return Path(str(resources.files("common") / "samples" / name))


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in {"model": getattr(args, "model", None)}.items() if v}
    return load_settings(**overrides)


def _options(args: argparse.Namespace) -> StreamingOptions:
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


def _add_stream_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, nargs="?", help="audio file (any format soundfile reads)")
    parser.add_argument("--language", default="ja", help="spoken language, a Whisper code (default ja)")
    parser.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    parser.add_argument("--model", help="model name, CTranslate2 directory or 'bundled' (default: WSP_MODEL)")
    parser.add_argument("--chunk-ms", type=int, default=500, help="audio arrives in chunks of this size")
    parser.add_argument("--start", type=float, default=0.0, help="start this many seconds into the file")
    parser.add_argument("--end", type=float, default=None, help="stop at this second of the file")
    parser.add_argument("--glossary", action="append", help="a name or term to bias recognition (repeatable)")
    parser.add_argument("--beam-size", type=int, help="beam width of each step (default 1: greedy)")
    parser.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="any streaming option, e.g. --set trim_s=6"
    )
    parser.add_argument(
        "--comp-unaware",
        action="store_true",
        help="ignore computation time (deterministic, faster than real time)",
    )


def _load_inputs(args: argparse.Namespace) -> tuple[StreamingOptions, np.ndarray, WhisperTranscriber]:
    from asr_worker.whisper_engine import WhisperTranscriber
    from common.audio import load_audio

    if args.chunk_ms <= 0:
        raise ConfigError("--chunk-ms must be positive")
    options = _options(args)
    audio = load_audio(args.file or bundled_sample(), args.start, args.end)
    transcriber = WhisperTranscriber.load(_settings(args))
    return options, audio, transcriber


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.url:
        from ingest.simulator import run_remote

        return run_remote(args, args.file or bundled_sample())
    from asr_worker.bench import stream

    options, audio, transcriber = _load_inputs(args)
    print(f"streaming {args.file or bundled_sample()} ({audio.size / 16000:.1f} s) ...", file=sys.stderr)

    def show(commit: TimedCommit, text: str) -> None:
        print(f"[{commit.emitted_s:7.2f}s] ({commit.start_s:6.2f}-{commit.end_s:6.2f}) {text}", flush=True)

    run = stream(transcriber, audio, options, args.chunk_ms / 1000, not args.comp_unaware, show)
    result = run.result
    print(
        f"done: {result.audio_s:.1f} s of audio, {len(result.commits)} commits, "
        f"compute {result.compute_s:.1f} s (rtf {result.compute_s / result.audio_s:.2f})",
        file=sys.stderr,
    )
    return 0


def cmd_bench_stream(args: argparse.Namespace) -> int:
    from asr_worker.bench import report, stream

    reference = None
    if args.ref is not None:
        try:
            reference = args.ref.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read reference {args.ref}: {exc.strerror}") from exc
    options, audio, transcriber = _load_inputs(args)
    run = stream(transcriber, audio, options, args.chunk_ms / 1000, not args.comp_unaware)
    figures = report(transcriber, audio, run, reference)
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        for key, value in figures.items():
            if key not in ("commits", "options"):
                print(f"{key}: {value}")
    return 0


def cmd_bench_nonspeech(args: argparse.Namespace) -> int:
    from asr_worker.bench import nonspeech_report
    from asr_worker.whisper_engine import WhisperTranscriber

    if args.seconds <= 0 or args.chunk_ms <= 0:
        raise ConfigError("--seconds and --chunk-ms must be positive")
    args.glossary = None
    options = _options(args)
    transcriber = WhisperTranscriber.load(_settings(args))
    figures = nonspeech_report(transcriber, options, args.seconds, args.chunk_ms / 1000, args.comp_aware)
    print(json.dumps(figures, ensure_ascii=False))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from common.stack import Stack

    settings = _settings(args)
    configure_logging(logging.DEBUG if args.verbose else settings.log_level, settings.log_format)

    async def run() -> None:
        stack = Stack(settings)
        print("starting: Redis, ingest, ASR worker (loading the model), publisher ...", file=sys.stderr)
        urls = await stack.start()
        print(f"ingest:    {urls.ingest}   (POST /v1/sessions, WS /v1/sessions/SID/audio)")
        print(f"publisher: {urls.publisher}   (WS /v1/sessions/SID/captions, .srt, .vtt)")
        print(f"redis:     {urls.redis}   (more workers: WSP_REDIS_URL={urls.redis} wsp worker)")
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
    from common.demo import run_demo

    options = _options(args)  # validates language and task early
    tracks = None
    if options.task == "translate" and options.language != "en":
        tracks = [{"name": options.language, "task": "transcribe"}, {"name": "en", "task": "translate"}]
    path = args.file or bundled_sample()
    settings = _settings(args)
    if not args.verbose:  # the captions are the output; service chatter would drown them
        settings = settings.model_copy(update={"log_level": "WARNING"})
    summary = eventloop.run(run_demo(settings, path, options.language, tracks, args.chunk_ms))
    for track, figures in summary.items():
        shown = ", ".join(f"{k} {v}" for k, v in figures.items())
        print(f"{track}: {shown}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsp", description="Whisper Streaming Pipeline: live captions for venues."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="stream a file through the recognizer in real time, print commits")
    _add_stream_args(sim)
    sim.add_argument("--url", help="push the file to a running ingest service (http://HOST:PORT) instead")
    sim.add_argument("--session", help="with --url: continue this session instead of creating one")
    sim.add_argument("--token", help="with --session: that session's audio token")
    sim.set_defaults(func=cmd_simulate)

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    bstream = bench_sub.add_parser("stream", help="latency and accuracy of streaming one file")
    _add_stream_args(bstream)
    bstream.add_argument("--ref", type=Path, help="reference transcript (UTF-8 text)")
    bstream.add_argument("--json", action="store_true", help="print one JSON object")
    bstream.set_defaults(func=cmd_bench_stream)

    up = sub.add_parser(
        "up", help="run everything: Redis (embedded unless WSP_REDIS_URL), ingest, worker, publisher"
    )
    up.add_argument("--model", help="model name, CTranslate2 directory or 'bundled' (default: WSP_MODEL)")
    up.set_defaults(func=cmd_up)

    demo = sub.add_parser("demo", help="`wsp up` + stream the bundled sample, print its captions, exit")
    demo.add_argument("file", type=Path, nargs="?", help="audio file (default: the bundled Japanese sample)")
    demo.add_argument("--language", default="ja", help="spoken language (default ja)")
    demo.add_argument(
        "--task",
        choices=["transcribe", "translate"],
        default="transcribe",
        help="translate adds an English track beside the transcription",
    )
    demo.add_argument("--model", help="model name, CTranslate2 directory or 'bundled' (default: WSP_MODEL)")
    demo.add_argument("--chunk-ms", type=int, default=500, help="audio frame size sent to ingest")
    demo.set_defaults(func=cmd_demo, glossary=None)

    noise = bench_sub.add_parser("nonspeech", help="what is committed on silence, white noise and tones")
    noise.add_argument("--seconds", type=float, default=60.0, help="length of each signal (default 60)")
    noise.add_argument("--language", default="ja")
    noise.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    noise.add_argument("--model", help="model name, CTranslate2 directory or 'bundled'")
    noise.add_argument("--chunk-ms", type=int, default=500)
    noise.add_argument(
        "--comp-aware", action="store_true", help="real-time pace (default: as fast as possible)"
    )
    noise.add_argument(
        "--no-vad", action="store_true", help="let every step reach the model (tests the guards)"
    )
    noise.set_defaults(func=cmd_bench_nonspeech)

    from asr_worker import commands as worker_commands
    from common import probe
    from ingest import commands as ingest_commands
    from publisher import commands as publisher_commands

    for package in (ingest_commands, worker_commands, publisher_commands, probe):
        package.register(sub)
        register_bench = getattr(package, "register_bench", None)
        if register_bench is not None:  # a package's own `wsp bench ...` subcommands
            register_bench(bench_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args))
    except WspError as exc:
        print(f"wsp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wsp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
