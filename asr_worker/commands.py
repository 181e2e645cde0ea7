"""`wsp` subcommands of the asr_worker package (registered by common.cli)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from common import eventloop

log = logging.getLogger("wsp.worker")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `wsp` parser."""
    worker = sub.add_parser("worker", help="run an ASR worker against WSP_REDIS_URL (Ctrl-C stops it)")
    worker.add_argument("--id", help="worker id (default: WSP_WORKER_ID, else host-pid-random)")
    worker.add_argument("--capacity", type=int, help="sessions run at once (default: WSP_WORKER_CAPACITY)")
    worker.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:

    from asr_worker.engines import make_transcriber, uses_vad
    from asr_worker.monitor import worker_monitor
    from asr_worker.worker import Worker
    from common.logs import configure_logging
    from common.redis_conn import require_url
    from common.settings import load_settings

    overrides = {"worker_id": args.id, "worker_capacity": args.capacity}
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    require_url(settings.redis_url)
    configure_logging(logging.DEBUG if args.verbose else settings.log_level, settings.log_format)
    worker = Worker(settings, make_transcriber, vad=uses_vad(settings))
    log.info("worker %s: connecting to %s", worker.id, settings.redis_url)

    async def main() -> None:
        worker.install_signal_handlers()
        async with worker_monitor(worker, settings.host, settings.worker_metrics_port):
            await worker.run()

    eventloop.run(main())
    return 0


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add this package's `wsp bench` subcommands."""
    from common.settings import Settings

    failover = bench_sub.add_parser(
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
    failover.set_defaults(func=cmd_bench_failover)
    _register_pipeline_bench(bench_sub)


def cmd_bench_failover(args: argparse.Namespace) -> int:
    import json

    from asr_worker.failover_bench import run_bench
    from common.errors import ConfigError

    if args.runs < 1:
        raise ConfigError("--runs must be at least 1")
    if not 0.2 < args.lease_ttl <= 120:
        raise ConfigError("--lease-ttl must be more than 0.2 and at most 120 seconds")
    print(json.dumps(run_bench(args.runs, args.lease_ttl)))
    return 0


def _register_pipeline_bench(bench_sub: argparse._SubParsersAction) -> None:
    pipeline = bench_sub.add_parser(
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
    pipeline.set_defaults(func=cmd_bench_pipeline)


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    import json

    from asr_worker.load_bench import LoadPlan, run_bench
    from common.errors import ConfigError

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
