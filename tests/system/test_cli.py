"""The `wsp` command on bad input: one clear line on stderr, no traceback, exit code 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import BAD_INVOCATIONS, argv_for, assert_one_error_line, bad_input_files

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return bad_input_files(tmp_path)


@pytest.mark.parametrize("case", ["unreadable-file", "empty-audio", "missing-model-dir"])
def test_the_real_command_exits_2_with_one_line(case: str, files: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wsp.cli", *argv_for(case, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, BAD_INVOCATIONS[case][1])
    assert proc.stdout == ""
