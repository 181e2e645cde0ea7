"""`wsp` subcommands of the asr_worker package (registered by common.cli)."""

from __future__ import annotations

import argparse
import asyncio
import logging

log = logging.getLogger("wsp.worker")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `wsp` parser."""
    worker = sub.add_parser("worker", help="run an ASR worker against WSP_REDIS_URL (Ctrl-C stops it)")
    worker.add_argument("--id", help="worker id (default: WSP_WORKER_ID, else host-pid-random)")
    worker.add_argument("--capacity", type=int, help="sessions run at once (default: WSP_WORKER_CAPACITY)")
    worker.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from asr_worker.engines import make_transcriber, uses_vad
    from asr_worker.worker import Worker
    from common.errors import ConfigError
    from common.redis_conn import require_url
    from common.settings import Settings

    overrides = {"worker_id": args.id, "worker_capacity": args.capacity}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = [f"WSP_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors() if e["loc"]]
        raise ConfigError("; ".join(problems) or str(exc)) from exc
    require_url(settings.redis_url)
    if not args.verbose:
        logging.getLogger().setLevel(settings.log_level)
    worker = Worker(settings, make_transcriber, vad=uses_vad(settings))
    log.info("worker %s: connecting to %s", worker.id, settings.redis_url)

    async def main() -> None:
        worker.install_signal_handlers()
        await worker.run()

    asyncio.run(main())
    return 0
