"""The `wsp` command on bad input: one clear line on stderr, no traceback, exit code 2."""

from pathlib import Path

import pytest

from tests.cli_helpers import BAD_INVOCATIONS, argv_for, assert_one_error_line, bad_input_files
from wsp.cli import main

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return bad_input_files(tmp_path)


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
