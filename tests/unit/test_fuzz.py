"""The ingest protocol under fuzzing: a real `wsp ingest` process and real connections, a fixed seed."""

from __future__ import annotations

from wsp.bench.fuzz_cases import Limits, Outcome, Verdict, WsCase, generate, judge


def test_the_same_seed_gives_the_same_cases() -> None:
    limits = Limits(64_000, 1 << 20)
    assert generate(50, 3, limits, 65_536) == generate(50, 3, limits, 65_536)
    assert generate(50, 3, limits, 65_536) != generate(50, 4, limits, 65_536)


def test_judging_tells_a_refusal_from_a_crash_and_from_silence() -> None:
    case = WsCase("odd_frame", ("x",), frozenset([4400]))
    error = {"type": "error", "code": "odd_frame", "message": "not whole samples"}
    assert judge(case, Outcome(messages=[error], close_code=4400)) is Verdict.CLEAR
    assert judge(case, Outcome(messages=[error], close_code=4409)) is Verdict.UNEXPECTED_CODE
    assert judge(case, Outcome(messages=[], close_code=4400)) is Verdict.UNCLEAR  # a code without a sentence
    assert judge(case, Outcome(messages=[error], close_code=1011)) is Verdict.CRASH
    assert judge(case, Outcome(failure="unreachable: connection refused")) is Verdict.CRASH
    assert judge(case, Outcome(messages=[{"type": "ready"}], close_code=None)) is Verdict.UNCLEAR
