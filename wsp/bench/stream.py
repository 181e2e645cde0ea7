"""``wsp bench stream``: stream a file through the core and report latency, accuracy and lost tail."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr_worker.core.interpreter import SentenceInterpreter
from asr_worker.core.processor import OnlineProcessor, free_steps
from asr_worker.core.seam import Transcriber
from asr_worker.core.words import join_words
from asr_worker.transcribers.silero import SileroDetector
from asr_worker.transcribers.translator import WhisperTranslator
from asr_worker.transcribers.whisper import WhisperTranscriber
from common.options import StreamingOptions
from wsp.bench import nonspeech
from wsp.bench.scoring import (
    Sentence,
    SentenceTiming,
    chrf,
    error_rate,
    latency_stats,
    lost_tail_s,
    sentence_timings,
    span_timings,
)
from wsp.bench.simulation import CommitCallback, SimulationResult, StepCost, simulate


@dataclass(frozen=True)
class StreamRun:
    options: StreamingOptions
    result: SimulationResult


def stream(
    transcriber: WhisperTranscriber,
    audio: np.ndarray,
    options: StreamingOptions,
    chunk_s: float,
    comp_aware: bool,
    on_commit: CommitCallback | None = None,
    step_cost: tuple[float, float] | None = None,
) -> StreamRun:
    """Stream ``audio`` through the core; ``step_cost`` (fixed seconds, seconds per second of audio the
    encoder sees) takes a computation-aware run's time from that model of a decode (:class:`StepCost`)."""
    detector = SileroDetector(options.vad_threshold)
    clock: Callable[[], float] = time.perf_counter if comp_aware else free_steps  # unaware: bounds stay full
    cost = None
    model: Transcriber = transcriber
    if step_cost is not None and comp_aware:
        cost = StepCost(*step_cost, pad_s=options.window_pad_s or 0.0)
        model, clock = cost.charge(transcriber), cost.clock
    if interprets(options):  # the transcript track, and the interpreter that follows it
        source_options = options.model_copy(update={"task": "transcribe"})
        source = OnlineProcessor(model, source_options, detector=detector, clock=clock)
        interpreter = SentenceInterpreter(WhisperTranslator(model), options, detector=detector)
        return StreamRun(options, simulate(interpreter, audio, chunk_s, comp_aware, on_commit, source, cost))
    processor = OnlineProcessor(model, options, detector=detector, clock=clock)
    return StreamRun(options, simulate(processor, audio, chunk_s, comp_aware, on_commit, cost=cost))


def interprets(options: StreamingOptions) -> bool:
    """A translation of speech that is not English: a transcript track and an interpreter following it."""
    return options.task == "translate" and options.language != "en"


def report(
    transcriber: WhisperTranscriber,
    audio: np.ndarray,
    run: StreamRun,
    reference: str | None,
    offline_text: str | None = None,
    sentences: Sequence[Sentence] = (),
) -> dict[str, Any]:
    """The benchmark's JSON object; with a ``reference``, the whole-file pass beside it (``offline_text``,
    or decoded here)."""
    options, result = run.options, run.result
    language = options.output_language
    text = result.text(options.joiner)
    speech = SileroDetector(options.vad_threshold).speech(audio)
    out: dict[str, Any] = {
        "language": options.language,
        "task": options.task,
        **latency_stats(result.commits),
        "error_rate": None,
        "offline_error_rate": None,
        "error_metric": "cer" if options.joiner == "" else "wer",
        "audio_s": round(result.audio_s, 3),
        "rtf": round(result.compute_s / result.audio_s, 3) if result.audio_s else None,
        "steps": result.steps,
        "lost_tail_s": lost_tail_s(speech, result.commits),
        "committed_chars": len("".join(text.split())),
        "text": text,
        "offline_text": None,
        "options": options.model_dump(mode="json"),
        "commits": [
            {
                "emitted_s": round(c.emitted_s, 3),
                "start_s": round(c.start_s, 3),
                "end_s": round(c.end_s, 3),
                "text": join_words(c.words, options.joiner),
            }
            for c in result.commits
        ],
    }
    if reference is not None:
        if offline_text is None:
            offline = transcriber.transcribe_offline(audio, options)
            offline_text = join_words((w for s in offline for w in s.words), options.joiner)
        out["offline_text"] = offline_text
        out["error_rate"] = round(error_rate(reference, text, language), 4)
        out["offline_error_rate"] = round(error_rate(reference, offline_text, language), 4)
        if options.task == "translate":
            out["chrf"] = round(chrf(reference, text), 2)
            out["offline_chrf"] = round(chrf(reference, offline_text), 2)
    for key in ("latency_p50_s", "latency_p90_s", "latency_mean_s"):
        out[key] = round(out[key], 3)
    if sentences:
        if options.task == "translate":
            timings = span_timings(sentences, result.commits)
        else:
            timings = sentence_timings(sentences, result.commits, language)
        out.update(sentence_figures(timings))
    if result.source_commits:
        out["source_commits"] = [
            {
                "emitted_s": round(c.emitted_s, 3),
                "start_s": round(c.start_s, 3),
                "end_s": round(c.end_s, 3),
                "text": join_words(c.words, options.source_joiner),
            }
            for c in result.source_commits
        ]
    return out


def sentence_figures(timings: Sequence[SentenceTiming]) -> dict[str, Any]:
    """Sentence latency (p50, p90, worst) and the sentences whose text never came."""
    delays = sorted(t.latency_s for t in timings if t.latency_s is not None)
    if not delays:
        return {"sentences": len(timings), "sentences_missed": len(timings)}

    def at(q: float) -> float:
        return round(float(np.percentile(delays, q, method="lower")), 3)

    return {
        "sentences": len(timings),
        "sentences_missed": sum(1 for t in timings if t.latency_s is None),
        "sentence_latency_p50_s": at(50),
        "sentence_latency_p90_s": at(90),
        "sentence_latency_worst_s": round(delays[-1], 3),
    }


def nonspeech_report(
    transcriber: WhisperTranscriber,
    options: StreamingOptions,
    seconds: float,
    chunk_s: float,
    comp_aware: bool,
    seeds: int = 1,
) -> dict[str, Any]:
    """Committed characters for each non-speech signal (the target is zero for all)."""
    out: dict[str, Any] = {
        "seconds": seconds,
        "language": options.language,
        "task": options.task,
        "vad": options.vad,
    }
    for name, audio in nonspeech.signals(seconds, seeds):
        run = stream(transcriber, audio, options, chunk_s, comp_aware)
        text = run.result.text(options.joiner)
        out[name] = {"committed_chars": len("".join(text.split())), "text": text, "steps": run.result.steps}
    out["committed_chars"] = sum(v["committed_chars"] for v in out.values() if isinstance(v, dict))
    return out
