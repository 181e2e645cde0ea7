"""Sessions that never stream, or stop streaming, do not hold worker places (real Redis, in-process
workers on the scripted engine, audio written by ingest's own scripts).

A created session takes a place only once its audio arrives; one that never streams is ended after
WSP_SESSION_START_S; a full worker gives a silent session back when a live one waits; a real session's
first caption comes as soon with abandoned sessions present as without them.
"""

from __future__ import annotations

from asr_worker.service.leases import Candidate, claim_order, idle_limit_s
from common.contract import sessions


# -- the decisions (pure) -------------------------------------------------------------------------
def activity(newest_ms: int | None, now_ms: int, parked: bool = False) -> sessions.Activity:
    newest = None if newest_ms is None else f"{newest_ms}-0"
    return sessions.Activity("s", "open", newest, newest if parked else None, now_ms)


def test_a_session_wants_a_worker_only_for_audio_nobody_has_seen() -> None:
    assert not activity(None, 10_000).wants_worker  # created, or started without a frame
    assert activity(9_000, 10_000).wants_worker
    assert not activity(9_000, 10_000, parked=True).wants_worker  # given back: nothing new since
    moved = sessions.Activity("s", "streaming", "9500-0", "9000-0", 10_000)
    assert moved.wants_worker  # audio came after it was given back


def test_a_session_that_never_streamed_gets_minutes_one_that_streamed_hours() -> None:
    never, streamed = activity(None, 0), activity(1_000, 2_000)
    assert idle_limit_s(never, idle_s=7200, start_s=600) == 600
    assert idle_limit_s(never, idle_s=60, start_s=600) == 60  # the idle time, when it is shorter
    assert idle_limit_s(streamed, idle_s=7200, start_s=600) == 7200
    assert idle_limit_s(never, idle_s=0, start_s=0) is None
    assert activity(None, 100_000).idle_s(created_at=40.0) == 60.0
    assert activity(70_000, 100_000).idle_s(created_at=0.0) == 30.0


def test_live_sessions_are_claimed_before_stale_ones() -> None:
    stale = Candidate(1.0, sessions.Activity("stale", "streaming", "1000-0", None, 60_000))
    live = Candidate(2.0, sessions.Activity("live", "streaming", "59500-0", None, 60_000))
    assert claim_order([stale, live], live_s=5.0) == ([live], [stale])
    assert claim_order([stale, live], live_s=0.0) == ([stale, live], [])
