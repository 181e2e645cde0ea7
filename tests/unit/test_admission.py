"""Admission that one client cannot exhaust (real Redis, ingest under uvicorn): sessions created per client
address and minute, sessions open per address, pages of other sites, and audio no faster than its pace.
"""

from __future__ import annotations

import pytest

from ingest.admission import RateLimiter, origin_refusal


# -- per client address ---------------------------------------------------------------------------
def test_the_rate_limiter_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(20.0)  # the next one in 60 s / 3
    assert limiter.take("b") == 0.0  # another address has its own
    now[0] = 20.0
    assert limiter.take("a") == 0.0


# -- other sites ----------------------------------------------------------------------------------
def test_origins_are_judged_by_host_and_port() -> None:
    own = {"host": "venue.example:8000"}
    assert origin_refusal(own, []) is None  # not a browser
    assert origin_refusal({**own, "origin": "http://venue.example:8000"}, []) is None
    assert origin_refusal({**own, "origin": "https://venue.example:8000"}, []) is None  # behind https
    assert origin_refusal({**own, "origin": "https://evil.example"}, []) is not None
    assert origin_refusal({**own, "origin": "null"}, []) is not None  # a sandboxed frame, a file
    assert origin_refusal({**own, "origin": "https://control.example"}, ["https://control.example"]) is None
