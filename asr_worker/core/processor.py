"""The online processor: audio in, committed words and an unstable tail out. Pure: no Redis, no sockets.

Each step transcribes the whole buffer with a prompt built from committed text before the buffer,
commits what two consecutive hypotheses agree on (LocalAgreement-2), and cuts the buffer at the end
of the last committed sentence so that the buffer, the prompt and the cost of a step stay bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from asr_worker.core import guards
from asr_worker.core.audio_buffer import AudioBuffer
from asr_worker.core.hypothesis import HypothesisBuffer
from asr_worker.core.seam import SpeechDetector, Transcriber, TranscribeRequest
from asr_worker.core.words import Word, join_words
from common.audio import SAMPLE_RATE
from common.options import StreamingOptions
from common.schemas import ProcessorState, WordModel

log = logging.getLogger(__name__)

COST_SMOOTHING = 0.3
"""Weight of the newest step in the running estimate of what a second of window costs to decode."""
BUFFER_FLOOR_S = 6.0
"""However slow the steps, the buffer may grow to this much before its hard cut: less context than this
and the model mishears more than a slow step costs."""
QUIET_STEPS_TO_FLUSH = 3
"""Steps with no new speech after which the unagreed tail of an utterance is committed as it stands."""
SILENCE_KEEP_S = 1.0
"""Audio kept when a buffer without speech is dropped (speech may begin right at its end)."""
MAX_WORDS_LOG = 12


@dataclass(frozen=True)
class StepResult:
    """What one step produced: final words (append-only) and the current unstable tail."""

    committed: list[Word] = field(default_factory=list)
    partial: list[Word] = field(default_factory=list)
    ran_model: bool = False


@dataclass(frozen=True)
class SkipResult:
    """What :meth:`OnlineProcessor.skip_to` did: the pending words it committed, the audio it jumped over."""

    committed: list[Word]
    start_s: float
    """Where the skipped audio begins: the end of the audio the model had heard."""
    end_s: float
    """Where recognition resumes."""


def free_steps() -> float:
    """A clock that stands still: every step is free, so the buffers keep their full bounds (runs where
    the clock is the audio, not the computation)."""
    return 0.0


def _to_model(words: list[Word]) -> list[WordModel]:
    return [WordModel(start=w.start, end=w.end, text=w.text) for w in words]


def _from_model(words: list[WordModel]) -> list[Word]:
    return [Word(w.start, w.end, w.text) for w in words]


class OnlineProcessor:
    """Streaming recognition of one track (one language and task) of one session."""

    def __init__(
        self,
        transcriber: Transcriber,
        options: StreamingOptions,
        detector: SpeechDetector | None = None,
        state: ProcessorState | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``clock`` times the steps (the buffer bounds adapt to what a step costs); a clock that stands
        still makes every step free, so the buffers keep their full bounds (computation-unaware runs)."""
        self.options = options
        self._clock = clock
        self._cost_per_s: float | None = None
        """Seconds a step takes per second of the window it decodes (a running estimate)."""
        self._transcriber = transcriber
        self._detector = detector if options.vad else None
        state = state or ProcessorState(buffer_start_sample=0, received_sample=0, last_step_sample=0)
        self._audio = AudioBuffer(state.buffer_start_sample)
        self._resume_until = state.received_sample
        self._last_step_sample = state.last_step_sample
        self._context = state.context
        self._in_buffer = _from_model(state.in_buffer)
        self._hypothesis = HypothesisBuffer(
            spaced=options.joiner == " ",
            last_committed_end=state.last_committed_end,
            pending=_from_model(state.pending),
            recent=_from_model(state.recent),
        )
        self._segment_ends = list(state.segment_ends)
        self._quiet_steps = state.quiet_steps
        self._previous_step_sample = state.previous_step_sample
        self._speech_until: float | None = None
        self._speech: list[tuple[float, float]] | None = None
        """The speech regions the VAD found in the buffer at the last step (absolute seconds)."""

    # -- audio in -------------------------------------------------------------------------------
    def insert_audio(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 samples (after a resume: from ``buffer_start_sample`` on)."""
        self._audio.append(np.asarray(samples, dtype=np.float32))

    @property
    def received_s(self) -> float:
        return self._audio.end_sample / SAMPLE_RATE

    @property
    def buffer_start_s(self) -> float:
        return self._audio.start_sample / SAMPLE_RATE

    @property
    def buffer_s(self) -> float:
        return len(self._audio) / SAMPLE_RATE

    def ready(self) -> bool:
        """True when enough new audio has arrived for the next step."""
        if self._audio.end_sample < self._resume_until:
            return False
        return self._audio.end_sample - self._last_step_sample >= self.options.min_chunk_s * SAMPLE_RATE

    # -- steps ----------------------------------------------------------------------------------
    def process_iter(self) -> StepResult:
        """Run one step over the whole buffer."""
        audio = self._audio.view()
        new_from = max(0, self._last_step_sample - self._audio.start_sample)
        self._previous_step_sample = self._last_step_sample
        self._last_step_sample = self._audio.end_sample
        if audio.size == 0:
            return StepResult(partial=list(self._hypothesis.pending))

        if self._detector is not None:
            regions = self._detector.speech(audio)
            if not regions:
                return self._drop_silence()
            new_speech = regions[-1][1] * SAMPLE_RATE > new_from
            self._speech_until = self.buffer_start_s + regions[-1][1]
            self._speech = [(self.buffer_start_s + a, self.buffer_start_s + b) for a, b in regions]
            self._quiet_steps = 0 if new_speech else self._quiet_steps + 1
            if self._quiet_steps and not self._hypothesis.pending:
                return self._end_utterance()  # everything heard is committed and nothing new came
            if self._quiet_steps >= QUIET_STEPS_TO_FLUSH:
                return self._end_utterance()

        committed = self._transcribe_and_agree(audio)
        if self._detector is not None:
            settled = self._settled_until(regions)
            if settled is not None:
                committed += self._emit(self._hypothesis.commit_pending(until=settled, keep_unsure=True))
        committed += self._trim()
        return StepResult(committed=committed, partial=list(self._hypothesis.pending), ran_model=True)

    def _settled_until(self, regions: list[tuple[float, float]]) -> float | None:
        """Where the words this decode heard before a pause end (absolute seconds), or None.

        Agreement waits for a second hypothesis because the words at the end of the first may be cut
        short or read otherwise once the words after them are heard. Words followed by a pause the VAD
        found (a gap between two speech regions, or ``edge_s`` or more of silence after the last one)
        were heard whole, with what follows them, by this decode: the next one would hear the same words
        and the same pause. They are final now; waiting for agreement on them costs a whole step at the
        end of every phrase spoken with a pause after it. The limit is the middle of the pause (Whisper
        stretches a word over the pause after it); words put in a pause at the end were already left out
        (:meth:`_spoken`).
        """
        start = self.buffer_start_s
        limit = start + (regions[-2][1] + regions[-1][0]) / 2 if len(regions) > 1 else None
        trailing = self.received_s - (start + regions[-1][1])
        if trailing >= self.options.edge_s:
            limit = self.received_s
        return limit

    def finish(self) -> StepResult:
        """End of stream: one last step over unheard audio, then commit everything left."""
        committed: list[Word] = []
        ran = False
        if self._audio.end_sample > self._last_step_sample and len(self._audio):
            self._quiet_steps = 0
            heard = list(self._hypothesis.pending)
            result = self.process_iter()
            committed += result.committed
            ran = result.ran_model
            if ran:  # the end of the talk, if the last decode stopped short of it
                self._hypothesis.keep_unheard([w for w in heard if self._spoken(w)])
        committed += self._emit(self._hypothesis.commit_pending())
        return StepResult(committed=committed, partial=[], ran_model=ran)

    def skip_to(self, sample: int) -> SkipResult:
        """Jump ahead to absolute ``sample`` (back-pressure): nothing before it will ever be transcribed.

        The unstable tail is committed as it stands (it is the best guess there is and would otherwise be
        lost), the buffer is emptied and restarts at ``sample``; the committed text stays the prompt's
        context. Audio from ``sample`` on is inserted next. A ``sample`` at or before what the model has
        already heard only commits the tail.
        """
        heard = self._last_step_sample
        committed = self._emit(self._hypothesis.commit_pending())
        target = max(sample, heard)
        self._to_context(self._in_buffer)
        self._in_buffer = []
        if target >= self._audio.end_sample:
            self._audio = AudioBuffer(target)
        else:
            self._audio.drop_before(target)
        self._segment_ends = []
        self._quiet_steps = 0
        self._last_step_sample = self._audio.start_sample
        self._resume_until = min(self._resume_until, self._audio.start_sample)
        return SkipResult(committed, heard / SAMPLE_RATE, target / SAMPLE_RATE)

    @property
    def heard_sample(self) -> int:
        """End of the audio the model has heard (the last step), absolute samples."""
        return self._last_step_sample

    def state(self) -> ProcessorState:
        """A serialisable snapshot; ``OnlineProcessor(..., state=...)`` resumes from it."""
        return ProcessorState(
            buffer_start_sample=self._audio.start_sample,
            received_sample=self._audio.end_sample,
            last_step_sample=self._last_step_sample,
            context=self._context,
            in_buffer=_to_model(self._in_buffer),
            pending=_to_model(self._hypothesis.pending),
            recent=_to_model(self._hypothesis.recent),
            last_committed_end=self._hypothesis.last_committed_end,
            segment_ends=list(self._segment_ends),
            quiet_steps=self._quiet_steps,
            previous_step_sample=self._previous_step_sample,
        )

    def prompt(self) -> str:
        """Glossary plus the tail of the committed text that lies before the buffer."""
        joiner = self.options.joiner
        glossary = ("、" if joiner == "" else ", ").join(self.options.glossary)
        context = self._context[-self.options.prompt_chars :] if self.options.prompt_chars else ""
        if self.options.prompt_chars and joiner == " " and len(self._context) > self.options.prompt_chars:
            context = context.partition(" ")[2] or context  # do not start the prompt mid-word
        return (glossary + joiner + context).strip() if glossary and context else (glossary or context)

    # -- internals ------------------------------------------------------------------------------
    def _transcribe_and_agree(self, audio: np.ndarray) -> list[Word]:
        offset = self.buffer_start_s
        request = TranscribeRequest(audio=audio, offset_s=offset, prompt=self.prompt(), options=self.options)
        began = self._clock()
        heard = self._transcriber.transcribe(request)
        self._learn_cost(self._clock() - began, audio.size / SAMPLE_RATE + (self.options.window_pad_s or 0.0))
        before = [
            w for w in self._hypothesis.recent if w.end <= offset + 1e-6
        ]  # the buffer restates the rest
        segments = guards.clean(heard, self.options, history=before)
        words = [w for w in (w.shifted(offset) for s in segments for w in s.words) if self._spoken(w)]
        self._segment_ends = [s.words[-1].end + offset for s in segments if s.words]
        new = self._hypothesis.insert(words, restated=self._in_buffer, buffer_start=offset)
        # Both hypotheses must have heard edge_s of audio after a word for their agreement on it to count:
        # the previous one heard less (a word's reading depends on what follows it, and the audio may
        # have cut the last words short).
        edge = min(self._previous_step_sample, self._audio.end_sample) / SAMPLE_RATE - self.options.edge_s
        last_edge = self.received_s - self.options.last_word_edge_s
        committed = self._emit(self._hypothesis.agree(new, until=edge, last_until=last_edge))
        if committed:
            log.debug("commit %s", join_words(committed[:MAX_WORDS_LOG], self.options.joiner))
        return committed

    def _spoken(self, word: Word) -> bool:
        """False for a word that lies wholly outside the speech the VAD found (its regions are padded):
        after the last speech, or in a pause between two stretches of it. There was nothing to hear;
        Whisper made it up (a greeting in the pause between two voices, a word after the last one)."""
        if self._speech_until is None or self._speech is None:
            return True
        return any(word.start < end and word.end > start for start, end in self._speech)

    def _emit(self, words: list[Word]) -> list[Word]:
        """Make committed words monotonic in time and remember them inside the buffer."""
        out: list[Word] = []
        floor = self._in_buffer[-1].end if self._in_buffer else self.buffer_start_s
        for w in words:
            start = max(w.start, floor)
            end = max(w.end, start)
            out.append(Word(start, end, w.text))
            floor = end
        self._in_buffer += out
        return out

    def _learn_cost(self, took_s: float, window_s: float) -> None:
        rate = took_s / max(window_s, self.options.min_chunk_s)
        previous = self._cost_per_s
        self._cost_per_s = rate if previous is None else previous + COST_SMOOTHING * (rate - previous)

    def bounds(self) -> tuple[float, float, float]:
        """(trim, segment trim, hard bound) in seconds: the options' bounds, shrunk when steps are slow.

        A step over a longer buffer costs more, and until a step returns nothing is committed: the bounds
        are scaled down so that a step over a full buffer takes about ``step_budget_s`` (never below
        ``BUFFER_FLOOR_S`` for the hard bound). Where steps are cheap (a GPU, or computation-unaware runs)
        the buffers keep their full bounds, and the context that comes with them.
        """
        trim, segment, hard = self.options.trim_s, self.options.segment_trim_s, self.options.max_buffer_s
        if not self._cost_per_s:
            return trim, segment, hard
        affordable = self.options.step_budget_s / self._cost_per_s - (self.options.window_pad_s or 0.0)
        scale = min(1.0, max(affordable, min(BUFFER_FLOOR_S, hard)) / hard)
        return trim * scale, segment * scale, hard * scale

    def _trim(self) -> list[Word]:
        """Cut the buffer once it is long: at a sentence end, else a segment end, else by force."""
        length = self.buffer_s
        trim_s, segment_trim_s, max_buffer_s = self.bounds()
        if length <= trim_s:
            return []
        start = self.buffer_start_s
        cut = next((w.end for w in reversed(self._in_buffer) if w.ends_sentence and w.end > start), None)
        forced: list[Word] = []
        if cut is None and length > segment_trim_s:
            done = self._hypothesis.last_committed_end + 1e-6
            cut = max((e for e in self._segment_ends if start < e <= done), default=None)
        if cut is None and length > max_buffer_s - self.options.min_chunk_s:
            limit = self.received_s - max_buffer_s / 2
            forced = self._emit(self._hypothesis.commit_pending(until=limit))
            cut = max(limit, self._hypothesis.last_committed_end)
            log.info("buffer at %.1f s: hard cut at %.2f s", length, cut)
        if cut is not None:
            self._cut(cut)
        return forced

    def _cut(self, at_s: float) -> None:
        """Drop audio before ``at_s``; committed words before it become prompt context."""
        done = [w for w in self._in_buffer if w.end <= at_s + 1e-6]
        self._in_buffer = self._in_buffer[len(done) :]
        self._to_context(done)
        self._audio.drop_before(round(at_s * SAMPLE_RATE))
        self._segment_ends = [e for e in self._segment_ends if e > at_s]

    def _to_context(self, words: list[Word]) -> None:
        """Committed words leaving the buffer become the prompt's context."""
        if words:
            text = join_words(words, self.options.joiner)
            sep = self.options.joiner if self._context else ""
            self._context = (self._context + sep + text)[-max(self.options.prompt_chars, 1) * 4 :]

    def _drop_silence(self) -> StepResult:
        """No speech anywhere in the buffer: nothing to decode; keep only its last moments."""
        self._hypothesis.pending = []
        keep_from = self._audio.end_sample - int(SILENCE_KEEP_S * SAMPLE_RATE)
        self._cut(max(keep_from, self._audio.start_sample) / SAMPLE_RATE)
        return StepResult()

    def _end_utterance(self) -> StepResult:
        """Speech stopped a while ago: commit the tail as it stands and start afresh after it."""
        committed = self._emit(self._hypothesis.commit_pending())
        keep_from = self._audio.end_sample / SAMPLE_RATE - SILENCE_KEEP_S
        self._cut(max(self._hypothesis.last_committed_end, keep_from))
        self._quiet_steps = 0
        return StepResult(committed=committed)
