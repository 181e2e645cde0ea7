"""`wsp up` looks after its embedded Redis (started again when it dies, never left behind when `wsp up`
is killed), runs it with maxmemory, and turns every start-up mistake into one `wsp: error:` line and exit
2 (real processes, scripted engine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from tests.served import free_port
from tests.system.helpers import ROOT, kill_up, read_banner, start_up
from tests.waiting import wait_until


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "script.json"
    write_script(script, ScriptedTranscriber.from_text("one two three."))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
    return clean | {
        "WSP_ENGINE": "scripted",
        "WSP_SCRIPT_FILE": str(script),
        "WSP_INGEST_PORT": str(free_port()),
        "WSP_PUBLISHER_PORT": str(free_port()),
        "WSP_WORKER_METRICS_PORT": "0",
        "WSP_LEASE_TTL_S": "1.5",
        "WSP_REDIS_MAXMEMORY": "64mb",
    }


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


def answering(check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, read as False while what it asks does not answer (Redis or a service restarting)."""

    def attempt() -> bool:
        try:
            return check()
        except (redis.RedisError, httpx.HTTPError, OSError):
            return False

    return attempt


@pytest.fixture
def up(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = start_up(env)
    try:
        banner = read_banner(proc)
        assert "redis://" in banner, banner
        yield proc, "redis://" + banner.split("redis://")[1].split()[0]
    finally:
        kill_up(proc)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_up_starts_its_redis_again_when_it_dies_and_never_leaves_it_behind(
    up: tuple[subprocess.Popen[str], str], env: dict[str, str]
) -> None:
    proc, url = up
    db = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert db.config_get("maxmemory") == {"maxmemory": str(64 * 2**20)}
        assert db.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        first = int(db.info("server")["process_id"])
        os.kill(first, signal.SIGKILL)
        wait_until(answering(lambda: int(db.info("server")["process_id"]) != first), 10, "redis to come back")
        second = int(db.info("server")["process_id"])
        assert proc.poll() is None  # `wsp up` goes on
        ingest = f"http://127.0.0.1:{env['WSP_INGEST_PORT']}"
        created = answering(lambda: httpx.post(f"{ingest}/v1/sessions", json={}).status_code == 201)
        wait_until(created, 15, "ingest to create a session again")
        os.kill(proc.pid, signal.SIGKILL)  # `wsp up` itself dies, without a chance to clean up
        proc.wait()
        wait_until(lambda: not alive(second), 10, "redis-server to end with `wsp up`")
    finally:
        db.close()


def taken_port() -> tuple[socket.socket, int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, int(holder.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("ingest_port_taken", "WSP_INGEST_PORT"),
        ("publisher_port_taken", "WSP_PUBLISHER_PORT"),
        ("redis_url_scheme", "WSP_REDIS_URL must start with"),
        ("redis_url_unreachable", "cannot reach Redis"),
        ("redis_url_port", "not a usable Redis URL"),
        ("redis_maxmemory", "WSP_REDIS_MAXMEMORY"),
    ],
)
def test_every_start_up_mistake_is_one_line_and_exit_2(env: dict[str, str], case: str, expected: str) -> None:
    holder, port = taken_port()
    try:
        mistake = {
            "ingest_port_taken": {"WSP_INGEST_PORT": str(port)},
            "publisher_port_taken": {"WSP_PUBLISHER_PORT": str(port)},
            "redis_url_scheme": {"WSP_REDIS_URL": "http://127.0.0.1:6379"},
            "redis_url_unreachable": {"WSP_REDIS_URL": f"redis://127.0.0.1:{port}/0"},
            "redis_url_port": {"WSP_REDIS_URL": "redis://127.0.0.1:notaport/0"},
            "redis_maxmemory": {"WSP_REDIS_MAXMEMORY": "lots"},
        }[case]
        if case == "redis_url_unreachable":
            holder.close()  # nothing listens there any more
        done = subprocess.run(
            [sys.executable, "-m", "wsp.cli", "up"],
            cwd=ROOT,
            env=env | mistake,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    errors = [line for line in done.stderr.splitlines() if line.startswith("wsp: error:")]
    assert done.returncode == 2, done.stderr
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert "Traceback" not in done.stderr
