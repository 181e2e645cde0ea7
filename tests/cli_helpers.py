"""What the tests of the `wsp` command on bad input share across tiers: the bad invocations, the files they
name, and what the one error line must look like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def bad_input_files(tmp_path: Path) -> dict[str, Path]:
    """A one-second WAV, an empty one, a text file named .wav and a path that does not exist, by name."""
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
