"""The ingest protocol under fuzzing: a real `wsp ingest` process and real connections, a fixed seed."""

from __future__ import annotations

from wsp.bench.fuzz import run_bench

CASES = 120


def test_every_fuzz_case_is_answered_clearly_and_nothing_crashes() -> None:
    figures = run_bench(CASES, seed=7, concurrency=4)
    assert figures["cases"] == CASES
    assert figures["crashes"] == 0, figures["examples"]
    assert figures["service_down"] is None and figures["service_tracebacks"] == 0
    assert figures["unclear"] == figures["unexpected_code"] == 0, figures["examples"]
    assert figures["answered_clearly"] == CASES
    assert len(figures["by_kind"]) >= 20  # the seed reaches nearly every kind of case
