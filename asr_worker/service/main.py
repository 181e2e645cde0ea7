"""``wsp worker``: one worker process with its metrics and health port, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging

from asr_worker.service.monitor import worker_monitor
from asr_worker.service.worker import Worker
from asr_worker.transcribers.factory import make_transcriber, uses_vad
from common.settings import Settings

log = logging.getLogger(__name__)


async def run_worker(settings: Settings) -> None:
    """Run a worker against ``settings.redis_url``; a signal drains it (see :class:`Worker`)."""
    worker = Worker(settings, make_transcriber, vad=uses_vad(settings))
    log.info("worker %s: connecting to %s", worker.id, settings.redis_url)
    worker.install_signal_handlers()
    async with worker_monitor(worker, settings.host, settings.worker_metrics_port):
        await worker.run()
