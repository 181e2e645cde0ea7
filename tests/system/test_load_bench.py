"""The pipeline load benchmark, small: real processes, several sessions with several displays each.

`wsp bench pipeline` at full size (100 sessions x 10 displays x 60 s) is a benchmark, not a test; this runs
the same code at 3 x 3 x 10 s and checks what a venue would notice: every display gets every caption of its
session exactly once, and the figures are measured (latencies, Redis memory, CPU of every process).
"""

from __future__ import annotations

from pathlib import Path

from wsp.bench.load import LoadPlan, run_bench, script_for


def test_small_load_delivers_every_caption_to_every_display(tmp_path: Path) -> None:
    plan = LoadPlan(sessions=3, displays=3, seconds=10, workers=1, display_procs=1, workdir=tmp_path)
    result = run_bench(plan)

    finals = result["finals"]
    words = len(script_for(10))
    assert result["displays"] == 9
    assert finals["expected"] == finals["delivered"] > 0
    assert finals["lost"] == finals["duplicates"] == finals["seq_gaps"] == finals["out_of_order"] == 0
    assert finals["words_lost"] == finals["words_extra"] == 0
    assert finals["displays_with_every_word"] == 9
    assert result["dropped_slow_displays"] == 0
    assert not result["display_errors"] and not result["audio_errors"]
    assert result["display_close_codes"] == {"1000": 9}

    added, whole = result["added_latency_ms"], result["end_to_end_ms"]
    assert added["n"] == whole["n"] == finals["delivered"]
    assert 0 <= added["p50"] <= added["p99"] <= added["max"] < 5000
    # the whole delay includes the scripted engine's agreement (about a second), so it exceeds the added part
    assert added["p50"] < whole["p50"] < 10_000
    split = result["added_latency_split_ms"]
    assert split["commit_to_redis_subscriber"]["n"] == finals["expected"] // plan.displays
    assert split["redis_subscriber_to_display"]["n"] == finals["delivered"]

    assert result["redis"]["used_memory"] > 0
    assert set(result["cpu_s"]) == {"redis", "ingest", "publisher", "worker-1"}
    assert all(v is not None and v >= 0 for v in result["cpu_s"].values())
    assert result["cpu_s_per_session"] > 0
    assert set(result["client_cpu_s"]) == {"audio senders", "live probe", "displays 1"}
    assert words * 9 == finals["expected"]
    assert (tmp_path / "publisher.log").exists()
