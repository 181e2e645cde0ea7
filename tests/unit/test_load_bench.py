"""The pipeline load benchmark, small: real processes, several sessions with several displays each.

`wsp bench pipeline` at full size (100 sessions x 10 displays x 60 s) is a benchmark, not a test; this runs
the same code at 3 x 3 x 10 s and checks what a venue would notice: every display gets every caption of its
session exactly once, and the figures are measured (latencies, Redis memory, CPU of every process).
"""

from __future__ import annotations

import pytest

from wsp.bench.load_figures import SessionLog, Tally, add_display, sent_at
from wsp.cli import main


def test_figures_count_what_a_display_missed_or_got_twice() -> None:
    session = SessionLog("s", {"en": 4}, frame_samples=4000, sent=[10.25, 10.5, 10.75, 11.0])
    record = {
        "finals": [
            ["en", 1, 11.0, 0.3, 11.01, "word1"],
            ["en", 2, 11.5, 0.6, 11.52, "word2"],
            ["en", 2, 11.5, 0.6, 11.53, "word2"],
            ["en", 4, 12.0, 0.9, 12.04, "word4"],
        ],
        "partials": 2,
        "close_code": 4408,
        "error": "",
    }
    tally = Tally()
    add_display(tally, session, record, ["word1", "word2", "word3", "word4"])
    assert (tally.expected, tally.delivered, tally.lost, tally.duplicates, tally.seq_gaps) == (4, 3, 1, 1, 1)
    assert tally.words_lost == 1 and tally.words_extra == 1 and tally.complete == 0
    assert tally.dropped == 1
    assert [round(ms) for ms in tally.added_ms] == [10, 20, 30, 40]
    # word1 ends at 0.3 s: in the second frame (0.25-0.5 s), which left at 10.5
    assert sent_at(session, 0.3) == 10.5
    assert round(tally.end_to_end_ms[0]) == 510


def test_the_command_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "pipeline", "--sessions", "0"]) == 2
    assert main(["bench", "pipeline", "--seconds", "1"]) == 2
    assert main(["bench", "pipeline", "--sessions", "600", "--workers", "2"]) == 2
    assert capsys.readouterr().err.count("wsp: error:") == 3
