"""A scripted transcriber for tests and pipeline benchmarks: no model, deterministic output.

It "hears" a fixed timeline of words with absolute times. A call returns the words that lie inside the
buffer, except those ending within ``tail_s`` of its end (a real model is unsure of the last word), and,
when ``flip_last`` is set, the last word it returns alternates spelling from call to call while more
speech follows (a real model often changes its mind about the last word), which LocalAgreement-2
must not commit too early.

Asked to translate, it hears ``translation`` where it has one (an English line in the time of the speech
it renders), else the same words: a fake has nothing to translate with, and Japanese words are never
committed to an English track.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asr_worker.core.seam import Segment, TranscribeRequest
from asr_worker.core.words import Word
from common.audio import SAMPLE_RATE


@dataclass
class ScriptedTranscriber:
    timeline: list[Word]
    tail_s: float = 0.3
    flip_last: bool = False
    requests: list[TranscribeRequest] = field(default_factory=list)
    translation: list[Word] | None = None

    def transcribe(self, request: TranscribeRequest) -> list[Segment]:
        self.requests.append(request)
        if request.options.task == "translate" and self.translation is not None:
            return ScriptedTranscriber(self.translation, tail_s=0.0).transcribe(request)  # a whole unit
        start = request.offset_s
        end = start + request.audio.size / SAMPLE_RATE
        heard = [w for w in self.timeline if w.start >= start - 1e-6 and w.end <= end - self.tail_s]
        words = [Word(w.start - start, w.end - start, w.text) for w in heard]
        more_follows = bool(heard) and heard[-1] is not self.timeline[-1]
        if self.flip_last and more_follows and len(self.requests) % 2:
            last = words[-1]
            words[-1] = Word(last.start, last.end, last.text + "~")
        return _segments(words)

    @staticmethod
    def from_text(text: str, word_s: float = 0.4, gap_s: float = 0.1, start_s: float = 0.5) -> list[Word]:
        """A timeline from space-separated words, one every ``word_s + gap_s`` seconds."""
        timeline = []
        t = start_s
        for token in text.split():
            timeline.append(Word(round(t, 3), round(t + word_s, 3), token))
            t += word_s + gap_s
        return timeline


def _segments(words: list[Word]) -> list[Segment]:
    segments: list[Segment] = []
    current: list[Word] = []
    for w in words:
        current.append(w)
        if w.ends_sentence:
            segments.append(Segment(current[0].start, current[-1].end, tuple(current)))
            current = []
    if current:
        segments.append(Segment(current[0].start, current[-1].end, tuple(current)))
    return segments
