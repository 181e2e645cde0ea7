"""Figures of the pipeline load benchmark, from what the clients recorded (pure: no Redis, no sockets).

Per display: the finals it should have got (every seq the workers committed for its session), what it got,
duplicates, gaps and words lost against the script. Per final and display: the latency the pipeline adds
(arrival minus ``emitted_at``, the worker's commit time) and the whole delay from the moment the audio
frame holding the caption's last sample left the sender to the caption's arrival (same machine clock).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.audio import SAMPLE_RATE
from common.settings import Settings

if TYPE_CHECKING:
    from asr_worker.core.words import Word

ADDED_P99_TARGET_MS = 50.0
"""The target: the pipeline adds at most this much to the 99th percentile of caption delivery."""
CLOSE_TOO_SLOW = 4408
"""Close code of a display the publisher dropped because it could not keep up."""


@dataclass(frozen=True)
class LoadPlan:
    """What to run: ``sessions`` x ``displays`` for ``seconds`` of audio each, on ``workers`` workers."""

    sessions: int = 100
    displays: int = 10
    seconds: float = 60.0
    workers: int = 2
    display_procs: int = 2
    lease_ttl_s: float = Settings.model_fields["lease_ttl_s"].default
    workdir: Path | None = None
    """Where the processes' logs go (kept); a temporary directory when None."""


@dataclass(frozen=True)
class SessionLog:
    """One session as the benchmark saw it: the finals committed per track and when its audio left."""

    sid: str
    committed: dict[str, int]
    """Per track, the last seq the workers gave a final (all a display must get)."""
    frame_samples: int
    sent: list[float]
    """Unix time each audio frame left the sender (frame k ends at sample (k + 1) * frame_samples)."""
    published: dict[tuple[str, int], float] = field(default_factory=dict)
    """(track, seq) -> unix time a plain Redis subscriber got the final from the live channel."""


@dataclass
class Tally:
    """Running totals over every display."""

    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    seq_gaps: int = 0
    out_of_order: int = 0
    words_lost: int = 0
    words_extra: int = 0
    complete: int = 0
    partials: int = 0
    dropped: int = 0
    closes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    added_ms: list[float] = field(default_factory=list)
    publisher_ms: list[float] = field(default_factory=list)
    end_to_end_ms: list[float] = field(default_factory=list)


def sent_at(session: SessionLog, end_s: float) -> float | None:
    """When the frame holding the last sample before ``end_s`` left the sender."""
    if not session.sent:
        return None
    last_sample = max(0, math.ceil(end_s * SAMPLE_RATE) - 1)
    return session.sent[min(len(session.sent) - 1, last_sample // session.frame_samples)]


def add_display(tally: Tally, session: SessionLog, record: dict[str, Any], words: Sequence[str]) -> None:
    """Count one display's deliveries and latencies into ``tally``."""
    tally.partials += int(record["partials"])
    tally.closes[str(record.get("close_code"))] += 1
    if record.get("close_code") == CLOSE_TOO_SLOW:
        tally.dropped += 1
    if record.get("error"):
        tally.errors.append(str(record["error"]))
    finals = record["finals"]
    tally.expected += sum(session.committed.values())
    missing = 0
    for track, last in session.committed.items():
        seqs = [f[1] for f in finals if f[0] == track]
        distinct = set(seqs)
        tally.delivered += len(distinct)
        tally.duplicates += len(seqs) - len(distinct)
        tally.out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        lost = len(set(range(1, last + 1)) - distinct)
        missing += lost
        top = max(distinct, default=0)
        tally.seq_gaps += len(set(range(1, top + 1)) - distinct)
    tally.lost += missing
    texts = [t for f in finals for t in str(f[5]).split()]
    got, want = Counter(texts), Counter(words)
    tally.words_lost += sum((want - got).values())
    tally.words_extra += sum((got - want).values())
    if not missing and got == want:
        tally.complete += 1
    for track, seq, emitted_at, end_s, received, _ in finals:
        tally.added_ms.append((received - emitted_at) * 1000)
        published = session.published.get((track, seq))
        if published is not None:
            tally.publisher_ms.append((received - published) * 1000)
        left = sent_at(session, end_s)
        if left is not None:
            tally.end_to_end_ms.append((received - left) * 1000)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max (ms, rounded), or None each when there are no values."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    array = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    return {
        "p50": round(float(p50), 1),
        "p90": round(float(p90), 1),
        "p99": round(float(p99), 1),
        "max": round(float(array.max()), 1),
        "n": int(array.size),
    }


def _machine(run: dict[str, Any], services_cpu: float) -> dict[str, Any]:
    """The machine during the run; CPU that neither the services nor the clients used went to others."""
    machine = dict(run["machine"])
    if machine["busy_cpu_s"] is not None:
        ours = services_cpu + sum(run["client_cpu"].values())
        machine["other_processes_cpu_s"] = round(max(0.0, machine["busy_cpu_s"] - ours), 1)
    return machine


def figures(
    plan: LoadPlan, words: list[Word], sessions: list[SessionLog], run: dict[str, Any], memory: dict[str, Any]
) -> dict[str, Any]:
    """The benchmark's JSON object from the sessions, the clients' records, CPU and Redis memory."""
    tally = Tally()
    tokens = [w.text for w in words]
    for index, record in run["displays"]:
        add_display(tally, sessions[index], record, tokens)
    added, whole = percentiles(tally.added_ms), percentiles(tally.end_to_end_ms)
    cpu = run["cpu"]
    services_cpu = sum(v for v in cpu.values() if v is not None)
    wall_s = run["wall_s"]
    audio_errors = [s.get("error") for s in run["senders"] if s.get("error")]
    clean = tally.lost == tally.duplicates == tally.seq_gaps == 0 and not tally.errors and not audio_errors
    return {
        "sessions": plan.sessions,
        "displays_per_session": plan.displays,
        "displays": plan.sessions * plan.displays,
        "seconds": plan.seconds,
        "workers": plan.workers,
        "finals": {
            "expected_per_display": round(tally.expected / max(1, len(run["displays"])), 1),
            "expected": tally.expected,
            "delivered": tally.delivered,
            "lost": tally.lost,
            "duplicates": tally.duplicates,
            "seq_gaps": tally.seq_gaps,
            "out_of_order": tally.out_of_order,
            "words_lost": tally.words_lost,
            "words_extra": tally.words_extra,
            "displays_with_every_word": tally.complete,
        },
        "added_latency_ms": added,
        "added_latency_split_ms": {
            "commit_to_redis_subscriber": percentiles(
                [(received - emitted) * 1000 for *_, emitted, received in run["published"]]
            ),
            "redis_subscriber_to_display": percentiles(tally.publisher_ms),
        },
        "end_to_end_ms": whole,
        "partials_delivered": tally.partials,
        "dropped_slow_displays": tally.dropped,
        "display_close_codes": dict(tally.closes),
        "display_errors": tally.errors[:5],
        "audio_errors": audio_errors[:5],
        "redis": memory,
        "wall_s": round(wall_s, 1),
        "cpu_s": cpu,
        "services_cpu_s": round(services_cpu, 2),
        "cpu_s_per_session": round(services_cpu / plan.sessions, 3),
        "cpu_pct_of_a_core_per_session": round(100 * services_cpu / wall_s / plan.sessions, 2),
        "client_cpu_s": run["client_cpu"],
        "machine": _machine(run, services_cpu),
        "rss_mb": run["rss"],
        "target": {"added_p99_ms": ADDED_P99_TARGET_MS, "lost": 0},
        "meets_target": clean and added["p99"] is not None and added["p99"] <= ADDED_P99_TARGET_MS,
    }
