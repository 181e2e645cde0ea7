"""Redis memory is bounded: by each session's stream, by maxmemory (noeviction), and by ingest, which stops
taking audio above WSP_REDIS_MEMORY_HIGH so that captions still fit (real Redis, ingest under uvicorn).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from common.audio import SAMPLE_RATE
from common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BYTES_PER_AUDIO_S = 2 * SAMPLE_RATE


def test_the_defaults_keep_every_session_s_audio_under_the_alarm() -> None:
    """WSP_MAX_SESSIONS streams full to WSP_AUDIO_STREAM_MAX_S stay under the mark of WSP_REDIS_MAXMEMORY."""
    settings = Settings()
    audio = settings.max_sessions * settings.audio_stream_max_s * BYTES_PER_AUDIO_S
    assert audio < settings.redis_memory_high * settings.redis_maxmemory_bytes()


def test_compose_runs_redis_with_maxmemory_and_noeviction() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    command = compose["services"]["redis"]["command"]
    argv = list(command) if isinstance(command, list) else command.split()
    limit = argv[argv.index("--maxmemory") + 1]
    default = re.fullmatch(r"\$\{WSP_REDIS_MAXMEMORY:-([^}]+)\}", limit)
    assert default is not None, limit
    assert default.group(1) == Settings.model_fields["redis_maxmemory"].default
    assert argv[argv.index("--maxmemory-policy") + 1] == "noeviction"
