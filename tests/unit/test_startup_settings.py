"""Bad settings at start-up: every service says which setting is wrong in one line and exits non-zero."""

from __future__ import annotations

import pytest

from wsp.cli import main

# (command, environment, what the one line must name)
BAD = {
    "ingest-port-not-a-number": (["ingest"], {"WSP_INGEST_PORT": "abc"}, "WSP_INGEST_PORT"),
    "publisher-port-out-of-range": (["publisher"], {"WSP_PUBLISHER_PORT": "70000"}, "WSP_PUBLISHER_PORT"),
    "negative-lease": (["worker"], {"WSP_LEASE_TTL_S": "-1"}, "WSP_LEASE_TTL_S"),
    "no-capacity": (["worker"], {"WSP_WORKER_CAPACITY": "0"}, "WSP_WORKER_CAPACITY"),
    "redis-url-not-redis": (["publisher"], {"WSP_REDIS_URL": "http://x"}, "WSP_REDIS_URL"),
    "redis-url-missing": (["ingest"], {}, "WSP_REDIS_URL"),
    "tiny-frames": (["ingest"], {"WSP_MAX_FRAME_BYTES": "10"}, "WSP_MAX_FRAME_BYTES"),
    "unknown-log-level": (["ingest"], {"WSP_LOG_LEVEL": "loud"}, "WSP_LOG_LEVEL"),
    "unknown-device": (["up"], {"WSP_DEVICE": "tpu"}, "WSP_DEVICE"),
    "weak-api-key": (["ingest"], {"WSP_API_KEY": "tiny-k3y"}, "WSP_API_KEY"),
    "weak-api-key-publisher": (["publisher"], {"WSP_API_KEY": "tiny-k3y"}, "WSP_API_KEY"),
}


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_setting_is_named_in_one_line_and_the_exit_is_non_zero(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, env, setting = BAD[name]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wsp: error: ") and "\n" not in err, err
    assert setting in err, err
    assert "Traceback" not in err
    if "WSP_API_KEY" in env:
        assert env["WSP_API_KEY"] not in err.removeprefix("wsp: error: WSP_API_KEY")  # never echoed


def test_fuzz_bench_refuses_nonsense_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "fuzz", "--cases", "0"]) == 2
    assert "--cases" in capsys.readouterr().err
