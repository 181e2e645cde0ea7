"""What every tier shares: the markers each folder sets, and a real Redis server for the tiers that need one.

The folder a test lives in is its tier, and the tier its marker (``pytest -m unit``, ``-m integration``...):

- ``unit/``: pure, no server, no model;
- ``integration/``: a real Redis server (the embedded one, or ``WSP_REDIS_URL``) and services in this process;
- ``system/``: real processes (``wsp up``, workers, ``wsp send``, the fuzzer), supervision, sending;
- ``browser/``: real Chromium driven by playwright-core;
- ``model/``: the real bundled Whisper model on real audio.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.redis_conn import EmbeddedRedis

HERE = Path(__file__).resolve().parent
TIER_MARKERS = {
    "unit": ("unit",),
    "integration": ("integration", "redis"),
    "system": ("system", "redis"),
    "browser": ("browser", "redis"),
    "model": ("model",),
}
"""The markers of each tier's folder: the tiers that start a real Redis server also carry ``redis``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = item.path.resolve().relative_to(HERE)
        for name in TIER_MARKERS.get(relative.parts[0], ()):
            item.add_marker(name)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """``WSP_REDIS_URL`` when set, else an embedded redis-server started for the module."""
    url = os.environ.get("WSP_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="module")
def db(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client of that server."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``WSP_*`` variable of the caller's environment, and a cache of the test's own: settings at their
    defaults (use with ``pytestmark = pytest.mark.usefixtures("clean_env")``)."""
    for name in list(os.environ):
        if name.upper().startswith("WSP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
