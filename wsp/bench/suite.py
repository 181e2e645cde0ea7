"""``wsp bench suite``: every clip with a reference in some folders, streamed one after another.

For each clip the same figures as ``wsp bench stream`` (word latency, error rate against the reference and
against the whole-file pass, lost tail, rtf), and, where a ``.segments.json`` gives the true place of each
sentence, the sentence latency (emission of the commit that completes a sentence minus the sentence's end
in the audio), the longest stall (nothing committed although uncommitted speech had been heard) and the
characters made up after the end of the talk. Then the aggregate: error rates weighted by reference size,
and the sentence latencies of every clip together.

A clip is ``NAME.wav`` (any format soundfile reads) with ``NAME.txt`` beside it (the reference);
its language is the file name's prefix (``ja_...``) or the folder's name (``ja/``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr_worker.core.words import join_words
from asr_worker.transcribers.silero import SileroDetector
from asr_worker.transcribers.whisper import WhisperTranscriber, decode_kwargs
from common.audio import load_audio
from common.errors import ConfigError
from common.options import WHISPER_LANGUAGES, StreamingOptions
from wsp.bench.scoring import (
    Sentence,
    error_counts,
    invented_tail_chars,
    longest_stall_s,
    sentence_timings,
    weighted_percentile,
)
from wsp.bench.stream import report, stream

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Clip:
    """One benchmark clip: its audio, the reference transcript, its language, its sentences if known."""

    audio: Path
    reference: str
    language: str
    sentences: tuple[Sentence, ...] = ()

    @property
    def name(self) -> str:
        return self.audio.stem


def clip_language(path: Path, default: str) -> str:
    """``ja`` for ``ja_concert.wav`` or ``ja/concert.wav``; ``default`` when neither names a language."""
    for guess in (path.stem.partition("_")[0], path.parent.name):
        if guess.lower() in WHISPER_LANGUAGES:
            return guess.lower()
    return default


def load_sentences(path: Path) -> tuple[Sentence, ...]:
    if not path.is_file():
        return ()
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return tuple(Sentence(float(r["start"]), float(r["end"]), str(r["text"])) for r in rows)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a list of {{start, end, text}}: {exc}") from exc


def find_clips(folders: Iterable[Path], default_language: str) -> list[Clip]:
    """Every audio file with a reference transcript beside it, sorted by name within each folder."""
    clips: list[Clip] = []
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"not a folder: {folder}")
        for audio in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
            reference = audio.with_suffix(".txt")
            if not reference.is_file():
                continue
            clips.append(
                Clip(
                    audio,
                    reference.read_text(encoding="utf-8").strip(),
                    clip_language(audio, default_language),
                    load_sentences(audio.with_suffix(".segments.json")),
                )
            )
    if not clips:
        raise ConfigError(
            "no clip with a reference transcript (NAME.wav beside NAME.txt) in the folders given"
        )
    return clips


class OfflineCache:
    """Whole-file transcripts kept on disk, keyed by the audio, the model and the decoding options.

    The whole-file pass of a 100 s clip costs as much as streaming it; it does not change between runs.
    """

    def __init__(self, folder: Path | None, model_key: str) -> None:
        self._folder = folder
        self._model_key = model_key

    def text(self, transcriber: WhisperTranscriber, audio: np.ndarray, options: StreamingOptions) -> str:
        key = hashlib.sha256()
        key.update(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
        key.update(self._model_key.encode())
        key.update(json.dumps(decode_kwargs(options, None, None), sort_keys=True).encode())
        path = self._folder / f"{key.hexdigest()[:32]}.json" if self._folder else None
        if path is not None and path.is_file():
            return str(json.loads(path.read_text(encoding="utf-8"))["text"])
        segments = transcriber.transcribe_offline(audio, options)
        text = join_words((w for s in segments for w in s.words), options.joiner)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"text": text}, ensure_ascii=False), encoding="utf-8")
        return text


def _seconds(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def run_clip(
    transcriber: WhisperTranscriber,
    clip: Clip,
    options: StreamingOptions,
    chunk_s: float,
    comp_aware: bool,
    cache: OfflineCache,
    step_cost: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Stream one clip and measure it."""
    audio = load_audio(clip.audio)
    run = stream(transcriber, audio, options, chunk_s, comp_aware, step_cost=step_cost)
    offline = cache.text(transcriber, audio, options)
    figures = report(transcriber, audio, run, clip.reference, offline_text=offline)
    language = options.output_language
    errors, size = error_counts(clip.reference, figures["text"], language)
    offline_errors, _ = error_counts(clip.reference, offline, language)
    if clip.sentences:
        speech = [(s.start, s.end) for s in clip.sentences]
    else:
        speech = SileroDetector(options.vad_threshold).speech(audio)
    timings = sentence_timings(clip.sentences, run.result.commits, language)
    delays = [t.latency_s for t in timings if t.latency_s is not None]
    figures.update(
        clip=clip.name,
        errors=errors,
        offline_errors=offline_errors,
        reference_size=size,
        ratio=round(errors / offline_errors, 3) if offline_errors else None,
        sentences=len(timings),
        sentences_missed=sum(t.emitted_s is None for t in timings),
        sentence_latency_s=[None if d is None else round(d, 3) for d in (t.latency_s for t in timings)],
        sentence_p50_s=_seconds(delays, 50),
        sentence_p90_s=_seconds(delays, 90),
        sentence_worst_s=round(max(delays), 3) if delays else None,
        longest_stall_s=longest_stall_s(run.result.commits, speech),
        invented_tail_chars=invented_tail_chars(clip.reference, figures["text"], language),
        offline_invented_tail_chars=invented_tail_chars(clip.reference, offline, language),
    )
    return figures


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The whole set: error rates weighted by reference size, every sentence's latency together."""
    size = sum(r["reference_size"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    offline = sum(r["offline_errors"] for r in rows)
    delays = [d for r in rows for d in r["sentence_latency_s"] if d is not None]
    word_delays = [r["latency_p50_s"] for r in rows if not math.isnan(r["latency_p50_s"])]
    return {
        "clips": len(rows),
        "audio_s": round(sum(r["audio_s"] for r in rows), 1),
        "error_rate": round(errors / size, 4) if size else None,
        "offline_error_rate": round(offline / size, 4) if size else None,
        "ratio": round(errors / offline, 3) if offline else None,
        "worst_clip_ratio": max((r["ratio"] for r in rows if r["ratio"] is not None), default=None),
        "sentence_p50_s": _seconds(delays, 50),
        "sentence_p90_s": _seconds(delays, 90),
        "worst_clip_sentence_p90_s": max(
            (r["sentence_p90_s"] for r in rows if r["sentence_p90_s"] is not None), default=None
        ),
        "sentences_missed": sum(r["sentences_missed"] for r in rows),
        "longest_stall_s": max(r["longest_stall_s"] for r in rows),
        "invented_tail_chars": sum(r["invented_tail_chars"] for r in rows),
        "lost_tail_s": round(sum(r["lost_tail_s"] for r in rows), 3),
        "median_word_latency_p50_s": round(weighted_percentile(word_delays, [1] * len(word_delays), 50), 3)
        if word_delays
        else None,
        "rtf": round(
            sum(r["rtf"] * r["audio_s"] for r in rows if r["rtf"]) / sum(r["audio_s"] for r in rows), 3
        ),
    }


COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("clip", "clip", str),
    ("error", "error_rate", lambda v: f"{100 * v:.1f} %"),
    ("whole file", "offline_error_rate", lambda v: f"{100 * v:.1f} %"),
    ("ratio", "ratio", lambda v: f"{v:.2f}"),
    ("sent. p50", "sentence_p50_s", lambda v: f"{v:.2f} s"),
    ("sent. p90", "sentence_p90_s", lambda v: f"{v:.2f} s"),
    ("worst", "sentence_worst_s", lambda v: f"{v:.2f} s"),
    ("stall", "longest_stall_s", lambda v: f"{v:.1f} s"),
    ("made up", "invented_tail_chars", str),
    ("lost tail", "lost_tail_s", lambda v: f"{v:.1f} s"),
    ("rtf", "rtf", lambda v: f"{v:.2f}"),
)


def table(rows: Sequence[dict[str, Any]], total: dict[str, Any]) -> str:
    """A Markdown table: one row per clip and the aggregate."""
    lines = [
        "| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in [*rows, {**total, "clip": "all (aggregate)", "sentence_worst_s": None}]:
        cells = [("—" if row.get(key) is None else show(row[key])) for _, key, show in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
