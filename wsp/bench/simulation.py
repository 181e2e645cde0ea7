"""Stream audio through an online processor as if it arrived live, and time every commit.

Computation-aware (the default): audio becomes available at wall-clock pace in chunks of ``chunk_s``,
steps take the time they take, and a commit's emission time is the wall-clock time when its step
returned. Computation-unaware: the clock is the audio itself and steps are free (deterministic, for tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from asr_worker.core.processor import OnlineProcessor, StepResult
from asr_worker.core.words import Word, join_words
from common.audio import SAMPLE_RATE


@dataclass(frozen=True)
class TimedCommit:
    """Words committed by one step, and when (seconds since streaming began)."""

    emitted_s: float
    words: tuple[Word, ...]

    @property
    def start_s(self) -> float:
        return self.words[0].start

    @property
    def end_s(self) -> float:
        return self.words[-1].end


@dataclass
class SimulationResult:
    audio_s: float
    commits: list[TimedCommit] = field(default_factory=list)
    steps: int = 0
    compute_s: float = 0.0
    wall_s: float = 0.0

    def text(self, joiner: str) -> str:
        return join_words((w for c in self.commits for w in c.words), joiner)


CommitCallback = Callable[[TimedCommit, str], None]


def simulate(
    processor: OnlineProcessor,
    audio: np.ndarray,
    chunk_s: float = 0.5,
    comp_aware: bool = True,
    on_commit: CommitCallback | None = None,
) -> SimulationResult:
    """Feed ``audio`` in chunks of ``chunk_s`` and run a step whenever the processor is ready."""
    chunk = max(1, round(chunk_s * SAMPLE_RATE))
    total = audio.size
    result = SimulationResult(audio_s=total / SAMPLE_RATE)
    joiner = processor.options.joiner
    began = time.monotonic()
    fed = 0

    def clock() -> float:
        return time.monotonic() - began if comp_aware else fed / SAMPLE_RATE

    def run(step: Callable[[], StepResult]) -> None:
        t0 = time.monotonic()
        out = step()
        result.compute_s += time.monotonic() - t0
        result.steps += 1
        if out.committed:
            commit = TimedCommit(clock(), tuple(out.committed))
            result.commits.append(commit)
            if on_commit is not None:
                on_commit(commit, join_words(commit.words, joiner))

    while fed < total:
        if comp_aware:
            arrived = min(total, int((time.monotonic() - began) * SAMPLE_RATE) // chunk * chunk)
            if arrived <= fed:
                time.sleep(max(0.0, (fed + chunk) / SAMPLE_RATE - (time.monotonic() - began)))
                continue
        else:
            arrived = min(total, fed + chunk)
        processor.insert_audio(audio[fed:arrived])
        fed = arrived
        if processor.ready() and fed < total:
            run(processor.process_iter)
    run(processor.finish)
    result.wall_s = time.monotonic() - began
    return result
