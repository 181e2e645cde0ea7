"""Process settings from WSP_* environment variables: read when built, refused early when nonsense."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from common.settings import BUNDLED_MODEL, Settings
from wsp.cli import main

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_run_the_bundled_model_locally(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.model == BUNDLED_MODEL
    assert settings.cache_dir == tmp_path / "xdg" / "wsp"
    assert (settings.ingest_port, settings.publisher_port) == (8000, 8001)
    assert settings.redis_url is None and settings.device == "auto"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "WSP_MODEL": "large-v3",
        "WSP_CACHE_DIR": str(tmp_path / "models"),
        "WSP_DEVICE": "cuda",
        "WSP_COMPUTE_TYPE": "int8_float16",
        "WSP_CPU_THREADS": "3",
        "WSP_REDIS_URL": "redis://redis:6379/0",
        "WSP_INGEST_PORT": "9000",
        "WSP_PUBLISHER_PORT": "9001",
        "WSP_WORKER_CAPACITY": "4",
        "WSP_WORKER_ID": "gpu-1",
        "WSP_LEASE_TTL_S": "5.5",
        "WSP_LOG_LEVEL": "DEBUG",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.model == "large-v3"
    assert s.cache_dir == tmp_path / "models"
    assert (s.device, s.compute_type, s.cpu_threads) == ("cuda", "int8_float16", 3)
    assert s.redis_url == "redis://redis:6379/0"
    assert (s.ingest_port, s.publisher_port) == (9000, 9001)
    assert (s.worker_capacity, s.worker_id, s.lease_ttl_s, s.log_level) == (4, "gpu-1", 5.5, "DEBUG")


def test_values_passed_in_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSP_MODEL", "large-v3")
    assert Settings(model="base").model == "base"


def test_unknown_wsp_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSP_NOT_A_SETTING", "1")
    assert Settings().model == BUNDLED_MODEL


def test_settings_are_read_when_built_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    first = Settings()
    monkeypatch.setenv("WSP_INGEST_PORT", "8100")
    assert (first.ingest_port, Settings().ingest_port) == (8000, 8100)


def test_compute_type_and_threads_resolve_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.resolved_compute_type("cpu") == "int8"
    assert s.resolved_compute_type("cuda") == "float16"
    assert s.resolved_cpu_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("WSP_COMPUTE_TYPE", "float32")
    monkeypatch.setenv("WSP_CPU_THREADS", "1")
    monkeypatch.setenv("WSP_DEVICE", "cpu")
    s = Settings()
    resolved = (s.resolved_device(), s.resolved_compute_type("cpu"), s.resolved_cpu_threads())
    assert resolved == ("cpu", "float32", 1)


BAD_VALUES = [
    ("WSP_DEVICE", "tpu"),
    ("WSP_COMPUTE_TYPE", "int3"),
    ("WSP_MODEL", "   "),
    ("WSP_CPU_THREADS", "-1"),
    ("WSP_CPU_THREADS", "many"),
    ("WSP_INGEST_PORT", "70000"),
    ("WSP_WORKER_CAPACITY", "0"),
    ("WSP_LEASE_TTL_S", "0"),
    ("WSP_LOG_LEVEL", "LOUD"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_nonsense_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [e["loc"] for e in info.value.errors()] == [(name.removeprefix("WSP_").lower(),)]


def test_an_unknown_compute_type_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSP_COMPUTE_TYPE", "int3")
    with pytest.raises(ValidationError, match=r"unknown compute type 'int3'.*int8_float16"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [("WSP_DEVICE", "tpu", "'auto', 'cpu' or 'cuda'"), ("WSP_COMPUTE_TYPE", "int3", "'int3'")],
)
def test_the_cli_reports_a_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    value: str,
    hint: str,
) -> None:
    wav = tmp_path / "short.wav"
    sf.write(wav, np.zeros(16_000, dtype=np.float32), 16_000)
    monkeypatch.setenv(name, value)
    assert main(["simulate", str(wav), "--comp-unaware"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"wsp: error: {name}:")
    assert hint in err[0]
