"""Fixtures of the system tier: `wsp up` and friends as real processes on the scripted engine, and those of
the `wsp send` tests (shared with the model tier)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from tests.send_helpers import excerpt, original, stage
from tests.served import free_port

__all__ = ["excerpt", "original", "scripted_env", "scripted_words", "stage"]

SCRIPTED_WORDS = "皆さん こんばんは。 本日は 秋の 演奏会に ようこそ。"


@pytest.fixture
def scripted_words() -> str:
    """What the scripted engine of :func:`scripted_env` hears, one word per space-separated piece."""
    return SCRIPTED_WORDS


@pytest.fixture
def scripted_env(tmp_path: Path, scripted_words: str) -> dict[str, str]:
    """The environment of a `wsp up` on the scripted engine, on free ports, its Redis data in tmp_path."""
    script = tmp_path / "script.json"
    write_script(script, ScriptedTranscriber.from_text(scripted_words))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
    env.update(
        WSP_ENGINE="scripted",
        WSP_SCRIPT_FILE=str(script),
        WSP_INGEST_PORT=str(free_port()),
        WSP_PUBLISHER_PORT=str(free_port()),
        WSP_LEASE_TTL_S="1.5",
        WSP_REDIS_DATA_DIR=str(tmp_path / "redis"),
    )
    return env
