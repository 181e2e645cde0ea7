"""The venue stack under Docker Compose, driven from outside as an operator would: build, up, health,
scale, kill, down, and the Redis inside read through ``docker exec``.

Works with Compose v2 (``docker compose``) and with the older ``docker-compose`` 1.29 (Debian 12's); which
one runs is chosen once, by :func:`compose_command`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

COMPOSE_FILES = ("compose.yaml", "compose.cpu.yaml")
"""The stack of a host without a GPU: compose.yaml with the CPU override."""
CPU_WORKER = "asr-worker-cpu"
REDIS = "redis"
HEALTH_POLL_S = 1.0
LOG_LINES = 40
"""Lines of a failed container's log shown with the error."""


class StackError(Exception):
    """The stack did not do what a venue needs (a build failed, a service never became healthy, ...)."""


class NoDocker(StackError):
    """This host cannot run the stack: no Docker engine answers, or no Compose is installed."""


def compose_command() -> list[str]:
    """``docker compose`` where the v2 plugin is installed, else ``docker-compose``."""
    if shutil.which("docker") is None:
        raise NoDocker("no docker command (Debian: apt-get install docker.io docker-compose)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise NoDocker("no Docker engine answers `docker info` (start dockerd, or check DOCKER_HOST)")
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise NoDocker("neither `docker compose` nor `docker-compose` is installed")


def run(argv: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run a command to its end; its output, or :class:`StackError` with the output's tail."""
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-LOG_LINES:])
        raise StackError(f"`{' '.join(argv)}` exited {done.returncode}:\n{tail}")
    return done.stdout


@dataclass(frozen=True)
class Container:
    id: str
    service: str
    state: str
    health: str


@dataclass
class ComposeStack:
    """One compose project made of :data:`COMPOSE_FILES` in ``directory``, with ``env`` as its .env."""

    directory: Path
    project: str
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=compose_command)

    def compose(self, *args: str) -> str:
        files = [arg for name in COMPOSE_FILES for arg in ("-f", name)]
        return run([*self.command, "-p", self.project, *files, *args], cwd=self.directory, env=self.env)

    def build(self, no_cache: bool = False) -> None:
        self.compose("build", *(["--no-cache"] if no_cache else []))

    def up(self, workers: int = 1) -> None:
        self.compose("up", "-d", "--no-recreate", "--scale", f"{CPU_WORKER}={workers}")

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans")

    def containers(self) -> list[Container]:
        ids = run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"]
        ).split()
        if not ids:
            return []
        found = []
        for info in json.loads(run(["docker", "inspect", *ids])):
            state = info["State"]
            found.append(
                Container(
                    id=info["Id"],
                    service=info["Config"]["Labels"]["com.docker.compose.service"],
                    state=state["Status"],
                    health=(state.get("Health") or {}).get("Status", "none"),
                )
            )
        return found

    def wait_healthy(self, workers: int, timeout_s: float) -> float:
        """Seconds until every container reports healthy and ``workers`` CPU workers run."""
        began = time.monotonic()
        while True:
            containers = [c for c in self.containers() if c.state != "exited" or c.service != CPU_WORKER]
            for container in containers:
                if container.state in ("exited", "dead") or container.health == "unhealthy":
                    problem = f"{container.service} is {container.health}, {container.state}"
                    raise StackError(
                        f"{problem}; {self.health_log(container)}; its log:\n{self.logs(container)}"
                    )
            running = [c for c in containers if c.service == CPU_WORKER]
            if len(running) >= workers and all(c.health == "healthy" for c in containers):
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                waiting = ", ".join(f"{c.service} {c.health}" for c in containers if c.health != "healthy")
                raise StackError(f"not healthy after {timeout_s:.0f} s: {waiting or 'no workers'}")
            time.sleep(HEALTH_POLL_S)

    def health_log(self, container: Container) -> str:
        """The last healthchecks of a container: when each ran, its exit code and what it printed."""
        info = json.loads(run(["docker", "inspect", container.id]))[0]
        checks = (info["State"].get("Health") or {}).get("Log", [])
        return "healthchecks: " + " | ".join(
            f"{c['Start'][11:19]} exit {c['ExitCode']}: {c['Output'].strip()[:160]}" for c in checks
        )

    def save_logs(self, folder: Path) -> None:
        """Every container's log into ``folder`` (one file per container)."""
        folder.mkdir(parents=True, exist_ok=True)
        for container in self.containers():
            done = subprocess.run(["docker", "logs", container.id], capture_output=True, text=True)
            (folder / f"{container.service}-{container.id[:12]}.log").write_text(done.stdout + done.stderr)

    def logs(self, container: Container) -> str:
        done = subprocess.run(
            ["docker", "logs", "--tail", str(LOG_LINES), container.id], capture_output=True, text=True
        )
        return (done.stdout + done.stderr).strip()

    def one(self, service: str) -> Container:
        running = [c for c in self.containers() if c.service == service and c.state == "running"]
        if not running:
            raise StackError(f"no {service} container is running")
        return running[0]

    def redis_get(self, key: str) -> str | None:
        """A string value from the stack's Redis (not published on the host: read inside its container)."""
        value = run(["docker", "exec", self.one(REDIS).id, "redis-cli", "--raw", "GET", key]).strip()
        return value or None

    def worker_container(self, worker_id: str) -> Container:
        """The worker container whose process holds ``worker_id`` (host-pid-random; the host is the
        container's short id)."""
        host = worker_id.split("-", 1)[0]
        for container in self.containers():
            if container.service == CPU_WORKER and container.id.startswith(host):
                return container
        raise StackError(f"no worker container runs worker {worker_id}")

    def kill(self, container: Container) -> None:
        run(["docker", "kill", "--signal", "KILL", container.id])

    def image_sizes(self, images: Sequence[str]) -> dict[str, int]:
        return {
            image: int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).strip())
            for image in images
        }
