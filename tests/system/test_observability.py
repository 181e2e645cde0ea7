"""Metrics, health endpoints, the `wsp check` probe and JSON logs, against a real Redis server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import ingest.app
import publisher.app
from common.redis_conn import EmbeddedRedis
from common.settings import Settings
from tests.served import Served, free_port
from tests.waiting import wait_until
from wsp.cli import main

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    wait_until(condition, timeout, what)


def test_readyz_says_503_when_redis_is_down_and_the_probe_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = EmbeddedRedis()
    settings = Settings(redis_url=server.url)
    services = {
        "ingest": Served(lambda client: ingest.app.create_app(settings, client), server.url),
        "publisher": Served(lambda client: publisher.app.create_app(settings, client), server.url),
    }
    try:
        for name, served in services.items():
            assert httpx.get(served.base + "/readyz", timeout=10).status_code == 200
            assert main(["check", name, "--url", served.base + "/readyz"]) == 0
        capsys.readouterr()
        server.close()
        for name, served in services.items():
            ready = httpx.get(served.base + "/readyz", timeout=10)
            assert ready.status_code == 503, name
            assert "Redis" in ready.json()["message"]
            assert httpx.get(served.base + "/healthz", timeout=10).status_code == 200  # alive all the same
            assert main(["check", name, "--url", served.base + "/readyz"]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "503" in err and "Redis" in err, err
    finally:
        for served in services.values():
            served.stop()
        server.close()


def test_probe_of_a_service_that_is_not_there_exits_1_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
    env["WSP_INGEST_PORT"] = str(free_port())

    def check(service: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "wsp.cli", "check", service]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    done = check("ingest")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "unreachable" in done.stderr
    env["WSP_LEASE_TTL_S"] = "nonsense"  # a bad setting is unhealthy too (Docker reserves exit code 2)
    done = check("publisher")
    assert done.returncode == 1 and "WSP_LEASE_TTL_S" in done.stderr


def test_a_service_started_with_json_logs_names_the_session(redis_url: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
    env.update(WSP_REDIS_URL=redis_url, WSP_INGEST_PORT=str(port), WSP_LOG_FORMAT="json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsp.cli", "ingest"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, "wsp ingest", timeout=60)
        sid = httpx.post(base + "/v1/sessions", json={"language": "ja"}, timeout=10).json()["id"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len(err.splitlines()), err[-2000:]  # every line is JSON
    about = [line for line in lines if line.get("session") == sid]
    assert about and about[0]["logger"] == "ingest.store" and sid in about[0]["message"]
