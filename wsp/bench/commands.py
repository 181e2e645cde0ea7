"""What ``wsp simulate`` and ``wsp bench ...`` run: figures printed, nothing served.

Each function takes the parsed arguments (:mod:`wsp.cli`) and returns the exit code; a user mistake raises
:class:`~common.errors.WspError`, which ``wsp`` prints as one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import ConfigError
from common.options import StreamingOptions
from wsp.bench.scoring import Sentence
from wsp.commands import bundled_sample, settings_from, streaming_options

if TYPE_CHECKING:
    import numpy as np

    from asr_worker.transcribers.whisper import WhisperTranscriber
    from wsp.bench.simulation import TimedCommit


def _load_inputs(args: argparse.Namespace) -> tuple[StreamingOptions, np.ndarray, WhisperTranscriber]:
    from asr_worker.transcribers.whisper import WhisperTranscriber
    from common.audio import load_audio

    if args.chunk_ms <= 0:
        raise ConfigError("--chunk-ms must be positive")
    options = streaming_options(args)
    audio = load_audio(args.file or bundled_sample(), args.start, args.end)
    transcriber = WhisperTranscriber.load(settings_from(args))
    return options, audio, transcriber


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.url:
        from wsp.client import run_remote

        return run_remote(args, args.file or bundled_sample())
    from wsp.bench.stream import stream

    options, audio, transcriber = _load_inputs(args)
    print(f"streaming {args.file or bundled_sample()} ({audio.size / 16000:.1f} s) ...", file=sys.stderr)

    def show(commit: TimedCommit, text: str) -> None:
        print(f"[{commit.emitted_s:7.2f}s] ({commit.start_s:6.2f}-{commit.end_s:6.2f}) {text}", flush=True)

    run = stream(
        transcriber, audio, options, args.chunk_ms / 1000, not args.comp_unaware, show, args.step_cost
    )
    result = run.result
    print(
        f"done: {result.audio_s:.1f} s of audio, {len(result.commits)} commits, "
        f"compute {result.compute_s:.1f} s (rtf {result.compute_s / result.audio_s:.2f})",
        file=sys.stderr,
    )
    return 0


def cmd_bench_stream(args: argparse.Namespace) -> int:
    from wsp.bench.stream import report, stream

    reference = None
    if args.ref is not None:
        try:
            reference = args.ref.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read reference {args.ref}: {exc.strerror}") from exc
    sentences = _sentences(args)
    options, audio, transcriber = _load_inputs(args)
    run = stream(
        transcriber, audio, options, args.chunk_ms / 1000, not args.comp_unaware, None, args.step_cost
    )
    figures = report(transcriber, audio, run, reference, sentences=sentences)
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        for key, value in figures.items():
            if key not in ("commits", "options"):
                print(f"{key}: {value}")
    return 0


def _sentences(args: argparse.Namespace) -> tuple[Sentence, ...]:
    """The true sentences of the file (``--segments``, or ``NAME.segments.json`` beside it), in the time
    of the audio streamed (``--start`` moves them)."""
    from wsp.bench.suite import load_sentences

    path = args.segments
    if path is None and args.file is not None:
        path = Path(args.file).with_suffix(".segments.json")
    if path is None:
        return ()
    start = args.start or 0.0
    end = args.end if args.end is not None else float("inf")
    return tuple(
        Sentence(s.start - start, s.end - start, s.text)
        for s in load_sentences(Path(path))
        if s.start >= start and s.end <= end
    )


DEFAULT_SUITE = Path("../shared/eval/ja")
"""The Japanese evaluation set, where a checkout has it beside it."""


def cmd_bench_suite(args: argparse.Namespace) -> int:
    from asr_worker.transcribers.whisper import WhisperTranscriber
    from wsp.bench.suite import OfflineCache, aggregate, find_clips, run_clip, table

    folders = args.folders or ([DEFAULT_SUITE] if DEFAULT_SUITE.is_dir() else [])
    if not folders:
        raise ConfigError(f"give the folders of the clips (the default {DEFAULT_SUITE} is not here)")
    if args.chunk_ms <= 0:
        raise ConfigError("--chunk-ms must be positive")
    clips = find_clips(folders, args.language)
    settings = settings_from(args)
    transcriber = WhisperTranscriber.load(settings)
    device = settings.resolved_device()
    model_key = f"{settings.model}/{device}/{settings.resolved_compute_type(device)}"
    cache = OfflineCache(None if args.no_cache else settings.cache_dir / "bench" / "offline", model_key)
    rows = []
    for clip in clips:
        args.language = clip.language
        options = streaming_options(args)
        print(f"{clip.name} ({clip.language}) ...", file=sys.stderr, flush=True)
        rows.append(
            run_clip(
                transcriber, clip, options, args.chunk_ms / 1000, not args.comp_unaware, cache, args.step_cost
            )
        )
    total = aggregate(rows)
    if args.json:
        slim = [
            {k: v for k, v in row.items() if k not in ("commits", "options", "offline_text")} for row in rows
        ]
        print(
            json.dumps({"clips": slim, "aggregate": total, "options": rows[0]["options"]}, ensure_ascii=False)
        )
    else:
        print(table(rows, total))
    return 0


def cmd_bench_nonspeech(args: argparse.Namespace) -> int:
    from asr_worker.transcribers.whisper import WhisperTranscriber
    from wsp.bench.stream import nonspeech_report

    if args.seconds <= 0 or args.chunk_ms <= 0 or args.seeds < 1:
        raise ConfigError("--seconds, --chunk-ms and --seeds must be positive")
    args.glossary = None
    options = streaming_options(args)
    transcriber = WhisperTranscriber.load(settings_from(args))
    figures = nonspeech_report(
        transcriber, options, args.seconds, args.chunk_ms / 1000, args.comp_aware, args.seeds
    )
    print(json.dumps(figures, ensure_ascii=False))
    return 0


def cmd_bench_failover(args: argparse.Namespace) -> int:
    from wsp.bench.failover import run_bench

    if args.runs < 1:
        raise ConfigError("--runs must be at least 1")
    if not 0.2 < args.lease_ttl <= 120:
        raise ConfigError("--lease-ttl must be more than 0.2 and at most 120 seconds")
    print(json.dumps(run_bench(args.runs, args.lease_ttl)))
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from wsp.bench.load import run_bench
    from wsp.bench.load_figures import LoadPlan

    if args.sessions < 1 or args.displays < 1 or args.workers < 1 or args.display_procs < 1:
        raise ConfigError("--sessions, --displays, --workers and --display-procs must be at least 1")
    if not 5 <= args.seconds <= 3600:
        raise ConfigError("--seconds must be between 5 and 3600")
    if args.sessions > 256 * args.workers:
        raise ConfigError("a worker runs at most 256 sessions: add --workers")
    plan = LoadPlan(
        args.sessions, args.displays, args.seconds, args.workers, args.display_procs, workdir=args.workdir
    )
    print(json.dumps(run_bench(plan)))
    return 0


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    from wsp.bench.fuzz import run_bench

    if args.cases < 1 or args.concurrency < 1:
        raise ConfigError("--cases and --concurrency must be at least 1")
    figures = run_bench(args.cases, args.seed, args.concurrency)
    print(json.dumps(figures, ensure_ascii=False))
    return 0 if figures["crashes"] == 0 else 1


def cmd_bench_venue(args: argparse.Namespace) -> int:
    from common.settings import parse_bytes
    from wsp.bench.venue import VenuePlan, run_bench

    if args.abandoned < 0 or args.runs < 1 or args.sessions < 1:
        raise ConfigError("--abandoned must be at least 0, --runs and --sessions at least 1")
    if not 1 <= args.seconds <= 3600:
        raise ConfigError("--seconds must be between 1 and 3600")
    try:
        parse_bytes(args.maxmemory)
    except ValueError as exc:
        raise ConfigError(f"--maxmemory: {exc}") from exc
    plan = VenuePlan(args.abandoned, args.runs, args.sessions, args.seconds, args.maxmemory, args.workdir)
    print(json.dumps(run_bench(plan)))
    return 0


def cmd_bench_send(args: argparse.Namespace) -> int:
    from wsp.bench.send import run_send_bench, table

    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    figures = run_send_bench(args.file or bundled_sample(), kinds, args.seconds, args.workdir)
    print(json.dumps(figures, indent=2) if args.json else table(figures))
    return 0
