"""The ``wsp`` command: every subcommand is declared here; :mod:`wsp.commands` and
:mod:`wsp.bench.commands` run them. Parse, configure logging, run; a user mistake is one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import WspError
from common.logs import configure_logging
from common.settings import Settings
from wsp import commands
from wsp.bench import commands as bench
from wsp.probe import DEFAULT_TIMEOUT_S, SERVICES
from wsp.send import commands as send
from wsp.send.sender import FRAME_S, SOURCE_OPEN_ATTEMPTS

MODEL_HELP = "model name, CTranslate2 directory or 'bundled' (default: WSP_MODEL)"

SECRET_VALUED = ("--token", "--session")
"""Options whose value is a session id or token: URL-safe base64, so one in 64 begins with '-'."""


def _add_stream_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, nargs="?", help="audio file (any format soundfile reads)")
    parser.add_argument("--language", default="ja", help="spoken language, a Whisper code (default ja)")
    parser.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    parser.add_argument("--start", type=float, default=0.0, help="start this many seconds into the file")
    parser.add_argument("--end", type=float, default=None, help="stop at this second of the file")
    _add_decoding_args(parser)


def _step_cost(value: str) -> tuple[float, float]:
    fixed, sep, per_s = value.partition(",")
    try:
        cost = (float(fixed), float(per_s))
    except ValueError:
        cost = (-1.0, -1.0)
    if not sep or min(cost) < 0 or max(cost) <= 0:
        raise argparse.ArgumentTypeError(f"FIXED,PER_S: two seconds figures, not both zero, got {value!r}")
    return cost


def _add_decoding_args(parser: argparse.ArgumentParser) -> None:
    """How the streaming core runs in the simulators and benchmarks."""
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--chunk-ms", type=int, default=500, help="audio arrives in chunks of this size")
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
    parser.add_argument(
        "--step-cost",
        type=_step_cost,
        metavar="FIXED,PER_S",
        help="time a computation-aware run by a model of what a decode costs (seconds, plus seconds per "
        "second of audio the encoder sees) instead of the wall clock: figures that do not move with the "
        "machine's other load, e.g. 0.1,0.07",
    )


def _add_task(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--task", choices=["transcribe", "translate"], default="transcribe", help=what)


def _add_services(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        "up", help="run everything: Redis (embedded unless WSP_REDIS_URL), ingest, worker, publisher"
    )
    up.add_argument("--model", help=MODEL_HELP)
    up.add_argument(
        "--local",
        action="store_true",
        help="keep the publisher on WSP_HOST too (display links open on this machine only); by default "
        "it listens on every interface and links use this machine's address on the local network",
    )
    up.set_defaults(func=commands.cmd_up)

    demo = sub.add_parser("demo", help="`wsp up` + stream the bundled sample, print its captions, exit")
    demo.add_argument("file", type=Path, nargs="?", help="audio file (default: the bundled Japanese sample)")
    demo.add_argument("--language", default="ja", help="spoken language (default ja)")
    _add_task(demo, "translate adds an English track beside the transcription")
    demo.add_argument("--model", help=MODEL_HELP)
    demo.add_argument("--chunk-ms", type=int, default=500, help="audio frame size sent to ingest")
    demo.set_defaults(func=commands.cmd_demo, glossary=None)

    ingest = sub.add_parser("ingest", help="run the ingest service (sessions and audio WebSocket)")
    ingest.add_argument("--host", help="listen address (default: WSP_HOST)")
    ingest.add_argument("--port", type=int, help="listen port (default: WSP_INGEST_PORT)")
    ingest.set_defaults(func=commands.cmd_ingest)

    worker = sub.add_parser("worker", help="run an ASR worker against WSP_REDIS_URL (Ctrl-C stops it)")
    worker.add_argument("--id", help="worker id (default: WSP_WORKER_ID, else host-pid-random)")
    worker.add_argument("--capacity", type=int, help="sessions run at once (default: WSP_WORKER_CAPACITY)")
    worker.set_defaults(func=commands.cmd_worker)

    publisher = sub.add_parser(
        "publisher",
        help="serve caption displays: live captions over WebSocket, history replay, SRT/WebVTT export",
    )
    publisher.set_defaults(func=commands.cmd_publisher)

    check = sub.add_parser(
        "check",
        help="health probe (compose healthcheck): exit 0 when the service is ready, 1 and one line if not",
    )
    check.add_argument("service", choices=SERVICES)
    check.add_argument(
        "--url",
        help="probe this URL (default: http://127.0.0.1:PORT/readyz of ingest or the publisher, "
        "/healthz on WSP_WORKER_METRICS_PORT for a worker)",
    )
    check.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for an answer"
    )
    check.set_defaults(func=commands.cmd_check)


def _add_sender(sub: argparse._SubParsersAction) -> None:
    sender = sub.add_parser(
        "send",
        help="send a venue's audio into a session: a sound card, or any stream or file FFmpeg reads "
        "(srt://, rtmp://, rtsp://, HLS, Icecast)",
        description="Send a venue's audio into a session, live, with a level meter. Without --session it "
        "creates one and prints its display links. Ctrl-C ends the session; twice, it leaves it open.",
    )
    sender.add_argument(
        "source",
        nargs="?",
        help="stream URL (srt://, rtmp://, rtsp://, http(s)://....m3u8, Icecast) or file "
        "(default: WSP_SOURCE)",
    )
    sender.add_argument("--device", help="a sound-card input instead: its index or part of its name")
    sender.add_argument("--channel", help="with --device: the input channel, from 1, or a mix like 1,2")
    sender.add_argument("--list-devices", action="store_true", help="list the sound-card inputs and exit")
    sender.add_argument("--url", help="the ingest service, http://HOST:PORT (default: WSP_INGEST_URL)")
    sender.add_argument("--session", help="continue this session (default: WSP_SESSION; else create one)")
    sender.add_argument("--token", help="with --session: its audio token (default: WSP_AUDIO_TOKEN)")
    sender.add_argument("--language", default="ja", help="a new session's spoken language (default ja)")
    _add_task(sender, "translate: a new session gets an English track beside the transcript")
    sender.add_argument("--glossary", action="append", help="a new session's name or term (repeatable)")
    sender.add_argument("--title", help="a new session's title (default: the source)")
    sender.add_argument(
        "--as-fast-as-possible",
        action="store_true",
        help="send a recording faster than real time, where the ingest service accepts it",
    )
    sender.add_argument(
        "--frame-ms",
        type=int,
        default=round(FRAME_S * 1000),
        help="audio per frame sent to ingest (default %(default)s)",
    )
    sender.add_argument(
        "--source-tries",
        type=int,
        default=SOURCE_OPEN_ATTEMPTS,
        help="tries to open the source before giving up (default %(default)s); once it has sent audio, "
        "a source that drops is retried for ever",
    )
    sender.add_argument("--stats", type=Path, help="write the run's figures (delay, CPU) to this JSON file")
    sender.set_defaults(func=send.cmd_send)


def _add_benchmarks(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("simulate", help="stream a file through the recognizer in real time, print commits")
    _add_stream_args(sim)
    sim.add_argument("--url", help="push the file to a running ingest service (http://HOST:PORT) instead")
    sim.add_argument("--session", help="with --url: continue this session instead of creating one")
    sim.add_argument("--token", help="with --session: that session's audio token")
    sim.set_defaults(func=bench.cmd_simulate)

    benchmarks = sub.add_parser("bench", help="benchmarks that print figures")
    kinds = benchmarks.add_subparsers(dest="bench", required=True)
    stream = kinds.add_parser("stream", help="latency and accuracy of streaming one file")
    _add_stream_args(stream)
    stream.add_argument("--ref", type=Path, help="reference transcript or translation (UTF-8 text)")
    stream.add_argument(
        "--segments",
        type=Path,
        help="true sentences of the file, for sentence latency (default: NAME.segments.json beside it)",
    )
    stream.add_argument("--json", action="store_true", help="print one JSON object")
    stream.set_defaults(func=bench.cmd_bench_stream)

    suite = kinds.add_parser(
        "suite", help="every clip with a reference in some folders: accuracy, sentence latency, stalls"
    )
    suite.add_argument(
        "folders", type=Path, nargs="*", help="folders of NAME.wav + NAME.txt (default ../shared/eval/ja)"
    )
    _add_decoding_args(suite)
    suite.add_argument("--language", default="ja", help="language of clips whose name does not say it")
    suite.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    suite.add_argument("--no-cache", action="store_true", help="decode every whole-file pass again")
    suite.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    suite.set_defaults(func=bench.cmd_bench_suite)

    noise = kinds.add_parser(
        "nonspeech", help="what is committed on silence, hiss, room noise, a crowd, hum and music"
    )
    noise.add_argument("--seconds", type=float, default=60.0, help="length of each signal (default 60)")
    noise.add_argument("--seeds", type=int, default=1, help="signals of each random kind (default 1)")
    noise.add_argument("--language", default="ja")
    noise.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    noise.add_argument("--model", help=MODEL_HELP)
    noise.add_argument("--chunk-ms", type=int, default=500)
    noise.add_argument(
        "--comp-aware", action="store_true", help="real-time pace (default: as fast as possible)"
    )
    noise.add_argument(
        "--no-vad", action="store_true", help="let every step reach the model (tests the guards)"
    )
    noise.set_defaults(func=bench.cmd_bench_nonspeech)

    failover = kinds.add_parser(
        "failover",
        help="kill the worker that owns a live session (real processes, scripted engine): "
        "how soon captions resume, and whether a word is lost or repeated",
    )
    failover.add_argument("--runs", type=int, default=3, help="failovers to measure (default 3)")
    failover.add_argument(
        "--lease-ttl",
        type=float,
        default=Settings.model_fields["lease_ttl_s"].default,
        help="WSP_LEASE_TTL_S of the workers (default: the deployment default, %(default)s s)",
    )
    failover.set_defaults(func=bench.cmd_bench_failover)

    pipeline = kinds.add_parser(
        "pipeline",
        help="load: sessions x displays through real ingest, workers (scripted engine) and publisher; "
        "latency the pipeline adds, captions lost, Redis memory, CPU per session",
    )
    pipeline.add_argument("--sessions", type=int, default=100, help="concurrent sessions (default 100)")
    pipeline.add_argument("--displays", type=int, default=10, help="displays per session (default 10)")
    pipeline.add_argument("--seconds", type=float, default=60.0, help="audio per session (default 60)")
    pipeline.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    pipeline.add_argument(
        "--display-procs", type=int, default=2, help="client processes holding the displays (default 2)"
    )
    pipeline.add_argument("--workdir", type=Path, help="keep the processes' logs in this directory")
    pipeline.set_defaults(func=bench.cmd_bench_pipeline)

    venue = kinds.add_parser(
        "venue",
        help="hardening figures on real processes: a real session's first caption with abandoned sessions "
        "present, Redis memory under a flood of fast audio, secrets found in the logs",
    )
    venue.add_argument("--abandoned", type=int, default=10, help="abandoned sessions present (default 10)")
    venue.add_argument("--runs", type=int, default=3, help="first captions measured each way (default 3)")
    venue.add_argument("--sessions", type=int, default=100, help="flooding sessions (default 100)")
    venue.add_argument("--seconds", type=float, default=60.0, help="how long they flood (default 60)")
    venue.add_argument(
        "--maxmemory",
        default=Settings.model_fields["redis_maxmemory"].default,
        help="maxmemory of the Redis under the flood (default: WSP_REDIS_MAXMEMORY's, %(default)s)",
    )
    venue.add_argument("--workdir", type=Path, help="keep the processes' logs in this directory")
    venue.set_defaults(func=bench.cmd_bench_venue)

    send = kinds.add_parser(
        "send",
        help="wsp send per kind of source (file, RTMP, SRT, HLS through FFmpeg on this machine, a PulseAudio "
        "null sink as the card): delay from source to ingest acknowledgement, CPU per sender",
    )
    send.add_argument("file", type=Path, nargs="?", help="audio to play (default: the bundled sample)")
    send.add_argument(
        "--kinds", default="file,rtmp,srt,hls,device", help="comma-separated (default %(default)s)"
    )
    send.add_argument("--seconds", type=float, default=60.0, help="audio per kind (default 60)")
    send.add_argument("--workdir", type=Path, help="keep the processes' logs and stats in this directory")
    send.add_argument("--json", action="store_true", help="print one JSON object")
    send.set_defaults(func=bench.cmd_bench_send)

    fuzz = kinds.add_parser(
        "fuzz",
        help="send generated malformed, out-of-order and unauthorised input to a real ingest service; "
        "count crashes and unclear answers",
    )
    fuzz.add_argument("--cases", type=int, default=1000, help="cases to send (default 1000)")
    fuzz.add_argument("--seed", type=int, default=1, help="random seed: the same seed sends the same cases")
    fuzz.add_argument("--concurrency", type=int, default=8, help="cases in flight at once (default 8)")
    fuzz.set_defaults(func=bench.cmd_bench_fuzz)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsp", description="Whisper Streaming Pipeline: live captions for venues."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_services(sub)
    _add_sender(sub)
    _add_benchmarks(sub)
    return parser


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and its subcommands."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= _option_strings(subparser)
    return found


def glue_dashed_values(argv: Sequence[str], options: set[str]) -> list[str]:
    """``--token -abc`` as ``--token=-abc``: argparse would take ``-abc`` for an option and refuse the
    command. A value that is itself one of ``options`` (a forgotten value) is left alone."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        following = args[i + 1] if i + 1 < len(args) else ""
        dashed = following.startswith("-") and len(following) > 1
        if arg in SECRET_VALUED and dashed and following.partition("=")[0] not in options:
            out.append(f"{arg}={following}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(glue_dashed_values(given, _option_strings(parser)))
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
