"""The `wsp` command on bad input: one clear line on stderr, no traceback, exit code 2."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wsp.cli import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("WSP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "one_second.wav"
    sf.write(good, np.zeros(16_000, dtype=np.float32), 16_000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    text = tmp_path / "readme.wav"
    text.write_text("this is not audio\n")
    return {"good": good, "empty": empty, "text": text, "missing": tmp_path / "missing.wav"}


# (argv with {good}/{empty}/{text}/{missing} placeholders, what the one error line must say)
BAD_INVOCATIONS = {
    "unreadable-file": (["simulate", "{text}"], "cannot read audio from"),
    "missing-file": (["simulate", "{missing}"], "audio file not found"),
    "empty-audio": (["simulate", "{empty}"], "holds no audio"),
    "unknown-language": (["simulate", "{good}", "--language", "xx"], "unknown language 'xx'"),
    "missing-model-dir": (["simulate", "{good}", "--model", "/nonexistent/dir"], "/nonexistent/dir"),
    "zero-chunk": (["simulate", "{good}", "--chunk-ms", "0"], "--chunk-ms must be positive"),
    "negative-chunk": (["simulate", "{good}", "--chunk-ms", "-500"], "--chunk-ms must be positive"),
    "start-past-the-end": (["simulate", "{good}", "--start", "5"], "holds no audio"),
    "end-before-start": (["simulate", "{good}", "--start", "0.5", "--end", "0.2"], "bad range"),
    "bench-missing-ref": (["bench", "stream", "{good}", "--ref", "{missing}"], "cannot read reference"),
    "bench-empty-audio": (["bench", "stream", "{empty}", "--json"], "holds no audio"),
}


def argv_for(case: str, files: dict[str, Path]) -> list[str]:
    template, _ = BAD_INVOCATIONS[case]
    return [arg.format(**files) for arg in template]


def assert_one_error_line(stderr: str, expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("wsp: error: ")
    assert expected in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("case", list(BAD_INVOCATIONS))
def test_bad_input_is_one_line_and_exit_code_2(
    case: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv_for(case, files)) == 2
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, BAD_INVOCATIONS[case][1])
    assert captured.out == ""


def test_a_missing_file_is_named_in_the_message(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", str(files["missing"])]) == 2
    assert str(files["missing"]) in capsys.readouterr().err


def test_usage_errors_exit_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--chunk-ms", "fast"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid int value: 'fast'" in err and "Traceback" not in err
