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


HEAVY_TIERS = frozenset({"model", "browser"})
"""Tiers that keep the CPU busy (the model decoding, Chromium rendering): under ``pytest -n 2`` (``make
test``) they run one after another in one lane, and the other tiers, which mostly wait on real time (audio
paced as speech, processes starting, leases expiring), run beside them in the other lane."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = item.path.resolve().relative_to(HERE)
        tier = relative.parts[0]
        for name in TIER_MARKERS.get(tier, ()):
            item.add_marker(name)
        # one lane for the heavy tiers; elsewhere a file stays together (its module fixtures start once)
        lane = "heavy" if tier in HEAVY_TIERS else relative.as_posix()
        item.add_marker(pytest.mark.xdist_group(lane))


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
