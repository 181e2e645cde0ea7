"""`wsp` subcommands of the ingest package (registered by common.cli)."""

from __future__ import annotations

import argparse
from typing import Any

from common.errors import ConfigError
from common.serving import run_service, uvicorn_config
from common.settings import Settings

WS_MAX_SIZE_FLOOR = 1 << 20
"""The WebSocket layer accepts messages up to this size (or 4x the frame limit), so a frame that is
merely too large gets a clear 4413 error from the protocol instead of a bare 1009 close."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `wsp` parser."""
    ingest = sub.add_parser("ingest", help="run the ingest service (sessions and audio WebSocket)")
    ingest.add_argument("--host", help="listen address (default: WSP_HOST)")
    ingest.add_argument("--port", type=int, help="listen port (default: WSP_INGEST_PORT)")
    ingest.set_defaults(func=cmd_ingest)


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add this package's `wsp bench` subcommands."""
    fuzz = bench_sub.add_parser(
        "fuzz",
        help="send generated malformed, out-of-order and unauthorised input to a real ingest service; "
        "count crashes and unclear answers",
    )
    fuzz.add_argument("--cases", type=int, default=1000, help="cases to send (default 1000)")
    fuzz.add_argument("--seed", type=int, default=1, help="random seed: the same seed sends the same cases")
    fuzz.add_argument("--concurrency", type=int, default=8, help="cases in flight at once (default 8)")
    fuzz.set_defaults(func=cmd_bench_fuzz)


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    import json

    from ingest.fuzz_run import run_bench

    if args.cases < 1 or args.concurrency < 1:
        raise ConfigError("--cases and --concurrency must be at least 1")
    figures = run_bench(args.cases, args.seed, args.concurrency)
    print(json.dumps(figures, ensure_ascii=False))
    return 0 if figures["crashes"] == 0 else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    return run_service("ingest", server_config, args, host=args.host, ingest_port=args.port)


def server_config(settings: Settings, redis: Any) -> Any:
    """The uvicorn configuration of the ingest service (also used by ``wsp up``)."""
    from ingest.app import create_app

    return uvicorn_config(
        create_app(settings, redis),
        settings,
        settings.ingest_port,
        ws_max_size=max(WS_MAX_SIZE_FLOOR, 4 * settings.max_frame_bytes),
    )
