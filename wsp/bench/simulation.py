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

from asr_worker.core.interpreter import SentenceInterpreter
from asr_worker.core.processor import OnlineProcessor, StepResult
from asr_worker.core.seam import Segment, Transcriber, TranscribeRequest
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
    source_commits: list[TimedCommit] = field(default_factory=list)
    """The transcript track's commits, when the run interprets (its translation is ``commits``)."""

    def text(self, joiner: str) -> str:
        return join_words((w for c in self.commits for w in c.words), joiner)


@dataclass
class StepCost:
    """Computation-aware time taken from a model of what a decode costs instead of the wall clock.

    A decode over ``seconds`` of audio (the encoder sees them plus ``pad_s``) costs ``fixed_s`` +
    ``per_s`` per second. Audio still arrives in real time and the processor still adapts its buffers to
    what its steps cost, but the figures no longer move with whatever else the machine is running, and
    one machine's costs can be replayed on another (``wsp bench suite --step-cost 0.1,0.07``).
    """

    fixed_s: float
    per_s: float
    pad_s: float = 0.0
    now: float = 0.0

    def clock(self) -> float:
        return self.now

    def wait_until(self, t: float) -> None:
        self.now = max(self.now, t)

    def charge(self, transcriber: Transcriber) -> Transcriber:
        """``transcriber``, with every decode advancing this clock by what it costs."""
        return _Charged(transcriber, self)


class _Charged:
    def __init__(self, inner: Transcriber, cost: StepCost) -> None:
        self._inner, self._cost = inner, cost

    def transcribe(self, request: TranscribeRequest) -> list[Segment]:
        heard = self._inner.transcribe(request)
        cost = self._cost
        cost.now += cost.fixed_s + cost.per_s * (request.audio.size / SAMPLE_RATE + cost.pad_s)
        return heard


CommitCallback = Callable[[TimedCommit, str], None]


def simulate(
    processor: OnlineProcessor | SentenceInterpreter,
    audio: np.ndarray,
    chunk_s: float = 0.5,
    comp_aware: bool = True,
    on_commit: CommitCallback | None = None,
    source: OnlineProcessor | None = None,
    cost: StepCost | None = None,
) -> SimulationResult:
    """Feed ``audio`` in chunks of ``chunk_s`` and run a step whenever the processor is ready.

    With a ``source`` (the transcript track an interpreter follows), both tracks get the audio, the source
    steps first and the interpreter hears its commits, as a worker runs a session's tracks one after the
    other; ``commits`` are the interpreter's. With a ``cost`` (whose ``charge`` wraps the processors'
    transcriber) the time of a computation-aware run is the cost model's, not the wall clock's.
    """
    chunk = max(1, round(chunk_s * SAMPLE_RATE))
    total = audio.size
    result = SimulationResult(audio_s=total / SAMPLE_RATE)
    joiner = processor.options.joiner
    began = time.monotonic()
    fed = 0

    def now() -> float:
        return cost.now if cost is not None else time.monotonic() - began

    def clock() -> float:
        return now() if comp_aware else fed / SAMPLE_RATE

    def run(step: Callable[[], StepResult], commits: list[TimedCommit], shown: bool = True) -> StepResult:
        t0 = now()
        out = step()
        result.compute_s += now() - t0
        result.steps += 1
        if out.committed:
            commit = TimedCommit(clock(), tuple(out.committed))
            commits.append(commit)
            if on_commit is not None and shown:
                on_commit(commit, join_words(commit.words, joiner))
        return out

    def run_source(step: Callable[[], StepResult]) -> None:
        if source is not None and isinstance(processor, SentenceInterpreter):
            out = run(step, result.source_commits, shown=False)
            processor.hear(out.committed, not out.partial, out.partial[0].start if out.partial else None)

    while fed < total:
        if comp_aware:
            arrived = min(total, int(now() * SAMPLE_RATE) // chunk * chunk)
            if arrived <= fed:
                if cost is not None:
                    cost.wait_until((fed + chunk) / SAMPLE_RATE)
                else:
                    time.sleep(max(0.0, (fed + chunk) / SAMPLE_RATE - now()))
                continue
        else:
            arrived = min(total, fed + chunk)
        if source is not None:
            source.insert_audio(audio[fed:arrived])
        processor.insert_audio(audio[fed:arrived])
        fed = arrived
        if source is not None and source.ready() and fed < total:
            run_source(source.process_iter)
        if processor.ready() and fed < total:
            run(processor.process_iter, result.commits)
    if cost is not None:
        cost.wait_until(total / SAMPLE_RATE)
    if source is not None:
        run_source(source.finish)
    run(processor.finish, result.commits)
    result.wall_s = time.monotonic() - began
    return result
