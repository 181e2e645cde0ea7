"""The translation track: each sentence of the speech translated once, as one English final with its span.

Streaming a translation through LocalAgreement does not work: a translation's words come in the target
language's order, so two hypotheses of a growing buffer rarely agree on a prefix (Whisper base reorders and
rephrases from one step to the next), and what they do agree on lags the speech by several sentences. The
interpreter instead cuts the speech into units (sentences, or clauses of a long one), hands each to a
:class:`~asr_worker.core.seam.Translator` once, and commits the answer as one English final carrying the
unit's audio span. A display pairs it with the Japanese finals of the same span; an export puts both in one
cue.

A translator that listens (``listens = True``: Whisper's own translation) gets a unit as soon as it is
heard: the voice activity detector finds the pause after at least ``UNIT_MIN_S`` of speech (or the speaker
stopping, or ``MAX_UNIT_S`` of speech, cut at its last pause), without waiting for the transcript, which is
a few seconds slower; the transcript committed in the unit's span so far is its ``source``. A text
translator follows the transcript track instead: a unit is a sentence (its last word ends with 。？！ or
friends), or, where Whisper left the punctuation out, the words before a pause (a gap between the words'
times, or a silence the detector finds in the audio: Whisper stretches words over the pauses after them),
the words before the transcript settled (nothing unstable left and ``SETTLED_S`` of audio heard after
them), or, in a long sentence, its clauses (cut at 、 or a comma once ``MAX_UNIT_S`` has built up). Pure: no
Redis, sockets or model.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np

from asr_worker.core.audio_buffer import AudioBuffer
from asr_worker.core.processor import SkipResult, StepResult
from asr_worker.core.seam import SpeechDetector, TranslateRequest, Translator
from asr_worker.core.words import Word, join_words
from common.audio import SAMPLE_RATE
from common.options import StreamingOptions
from common.schemas import ProcessorState, WordModel

log = logging.getLogger(__name__)

PAUSE_S = 0.5
"""A gap this long between two committed words of the transcript ends a unit (a sentence whose end Whisper
did not punctuate)."""
SETTLED_S = 0.8
"""Audio heard after the last committed word, with nothing unstable left in the transcript: the speaker
stopped, so the words so far are a unit."""
MAX_UNIT_S = 7.0
"""A unit grows to this much speech before it is cut at its last clause mark (or as it stands): a long
sentence is interpreted clause by clause rather than seconds after it ends."""
MIN_SILENCE_S = 0.15
"""A gap this long between two speech regions of the detector (whose regions are padded) is a pause."""
AFTER_WORD_S = 1.0
"""A silence beginning this long after the last committed word at most follows that word."""
TAIL_SLACK_S = 0.1
"""The transcript's unstable tail may seem to begin this much before a silence and still follow it."""
UNIT_MIN_S = 1.5
"""Listening: a unit holds at least this much speech before a pause may end it (a breath inside a
sentence is not its end)."""
HEARD_PAUSE_S = 0.3
"""Listening: silence heard after the last speech for the speaker to have paused."""
CLAUSE_ENDS = frozenset("、，,;；:：")
LEAD_S = 0.5
"""Audio kept before a unit's first word (Whisper's word starts are late rather than early)."""
TAIL_S = 0.3
"""Audio kept after a unit's last word, where the next word does not start sooner."""
IDLE_KEEP_S = 30.0
"""Audio kept while no transcript is waiting: the next unit's first words may start this far back."""


def _to_model(words: Sequence[Word]) -> list[WordModel]:
    return [WordModel(start=w.start, end=w.end, text=w.text) for w in words]


class SentenceInterpreter:
    """The translation track of a session whose transcript track feeds it (:meth:`hear`).

    It has the processor's interface (audio in, steps, ``finish``, ``skip_to``, a serialisable state), so a
    worker runs and checkpoints it like any track.
    """

    def __init__(
        self,
        translator: Translator,
        options: StreamingOptions,
        state: ProcessorState | None = None,
        detector: SpeechDetector | None = None,
    ) -> None:
        """``detector`` finds the pauses between sentences whose end Whisper did not punctuate."""
        self.options = options
        self._translator = translator
        self._detector = detector
        self._listens = detector is not None and bool(getattr(translator, "listens", False))
        """A translator that listens to the audio needs no transcript: its units are cut at the pauses the
        detector hears, as soon as they are heard (the transcript, slower, only names their source)."""
        self._regions: tuple[tuple[int, float], list[tuple[float, float]]] = ((-1, 0.0), [])
        self._pauses: list[float] = []
        """Where silences the detector found in the pending audio begin (absolute seconds)."""
        state = state or ProcessorState(buffer_start_sample=0, received_sample=0, last_step_sample=0)
        self._audio = AudioBuffer(state.buffer_start_sample)
        self._done_s = state.last_committed_end
        """End of the last word translated: the next unit's audio starts no sooner (the tail after that
        word, which a unit's audio includes, may hold the start of the next word: both units hear it)."""
        self._pending = [Word(w.start, w.end, w.text) for w in state.pending]
        """Committed transcript not translated yet."""
        self._context = state.context
        self._settled = False
        self._tail_start: float | None = None
        """Where the transcript's unstable tail begins (None when it has none)."""
        self._last_step_sample = state.last_step_sample

    # -- the transcript ------------------------------------------------------------------------
    def hear(self, words: Sequence[Word], settled: bool, tail_start: float | None = None) -> None:
        """Words the transcript track committed; ``settled`` when it has nothing unstable left, else
        ``tail_start``: where its unstable tail begins."""
        floor = self._done_s - 1e-6
        new = [w for w in words if w.text.strip() and (w.middle if self._listens else w.end) > floor]
        self._pending += new
        if self._listens:
            return
        self._settled = settled
        self._tail_start = None if settled else tail_start
        if self._pending and self._detector is not None:
            self._find_pauses()

    def _find_pauses(self) -> None:
        """The silences in the audio of the pending transcript, up to what has been heard."""
        start = max(self.buffer_start_s, self._pending[0].start - LEAD_S)
        audio = self._audio.view()[max(0, round(start * SAMPLE_RATE) - self._audio.start_sample) :]
        assert self._detector is not None
        regions = self._detector.speech(audio)
        self._pauses = [
            start + a_end
            for (_, a_end), (b_start, _) in itertools.pairwise(regions)
            if b_start - a_end >= MIN_SILENCE_S
        ]
        if regions and audio.size / SAMPLE_RATE - regions[-1][1] >= MIN_SILENCE_S:
            self._pauses.append(start + regions[-1][1])  # the speaker has stopped

    # -- audio in -------------------------------------------------------------------------------
    def insert_audio(self, samples: np.ndarray) -> None:
        self._audio.append(np.asarray(samples, dtype=np.float32))
        if not self._pending:  # nothing waits for this audio but the next words, which start late
            keep = max(self._done_s, self.received_s - IDLE_KEEP_S)
            if keep > self.buffer_start_s:
                self._audio.drop_before(round(keep * SAMPLE_RATE))

    @property
    def received_s(self) -> float:
        return self._audio.end_sample / SAMPLE_RATE

    @property
    def buffer_start_s(self) -> float:
        return self._audio.start_sample / SAMPLE_RATE

    @property
    def heard_sample(self) -> int:
        return self._audio.end_sample

    def ready(self) -> bool:
        """True when a whole unit of the transcript and its audio are there."""
        if self._listens:
            return self._heard_unit() is not None
        unit = self._next_unit()
        return bool(unit) and self.received_s >= self._span(unit)[1] - 1e-6

    # -- steps ----------------------------------------------------------------------------------
    def process_iter(self) -> StepResult:
        """Translate the next unit, if one is ready: one English final."""
        self._last_step_sample = self._audio.end_sample
        if self._listens:
            span = self._heard_unit()
            word = self._translate_span(*span) if span is not None else None
            return StepResult(committed=[word] if word else [], ran_model=span is not None)
        unit = self._next_unit()
        if not unit or self.received_s < self._span(unit)[1] - 1e-6:
            return StepResult()
        word = self._translate(unit)
        return StepResult(committed=[word] if word else [], ran_model=True)

    def finish(self) -> StepResult:
        """End of stream: every unit left, the last one as it stands."""
        committed: list[Word] = []
        while self._listens and self.received_s - self._done_s > LEAD_S:
            span = self._heard_unit(final=True)
            if span is None or span[1] <= self._done_s + 1e-3:
                break
            word = self._translate_span(*span)
            if word:
                committed.append(word)
        while self._pending and not self._listens:
            unit = self._next_unit() or list(self._pending)
            word = self._translate(unit)
            if word:
                committed.append(word)
        return StepResult(committed=committed, ran_model=bool(committed))

    def skip_to(self, sample: int) -> SkipResult:
        """Back-pressure: the transcript before ``sample`` is given up untranslated."""
        heard = self._audio.end_sample
        target = max(sample, heard)
        self._pending = []
        self._audio = AudioBuffer(target)
        self._done_s = target / SAMPLE_RATE
        return SkipResult([], heard / SAMPLE_RATE, target / SAMPLE_RATE)

    def state(self) -> ProcessorState:
        return ProcessorState(
            buffer_start_sample=self._audio.start_sample,
            received_sample=self._audio.end_sample,
            last_step_sample=self._last_step_sample,
            context=self._context,
            pending=_to_model(self._pending),
            last_committed_end=self._done_s,
        )

    # -- internals ------------------------------------------------------------------------------
    def _next_unit(self) -> list[Word]:
        """The first unit of the pending transcript that is complete, or nothing."""
        pending = self._pending
        for i, word in enumerate(pending):
            if word.ends_sentence:
                return pending[: i + 1]
            if i + 1 < len(pending) and pending[i + 1].start - word.end >= PAUSE_S:
                return pending[: i + 1]
            if i + 1 < len(pending) and self._silent_between(word, pending[i + 1]):
                return pending[: i + 1]
        if not pending:
            return []
        if self._after_last_word():
            return list(pending)
        begin = max(self._done_s, pending[0].start)
        if pending[-1].end - begin >= MAX_UNIT_S:  # a long sentence: its first clause, or its first words
            within = [i for i, w in enumerate(pending) if w.end - begin <= MAX_UNIT_S] or [0]
            clause = [i for i in within if pending[i].text.rstrip()[-1:] in CLAUSE_ENDS]
            return pending[: (clause or within)[-1] + 1]
        if self._settled and self.received_s - pending[-1].end >= SETTLED_S:
            return list(pending)
        return []

    def _speech(self) -> list[tuple[float, float]]:
        """The speech the detector hears from the end of the last unit on (absolute seconds; cached)."""
        key = (self._audio.end_sample, self._done_s)
        if self._regions[0] != key:
            start = max(self._done_s, self.buffer_start_s)
            audio = self._audio.view()[max(0, round(start * SAMPLE_RATE) - self._audio.start_sample) :]
            assert self._detector is not None
            found = [(start + a, start + b) for a, b in self._detector.speech(audio)]
            self._regions = (key, found)
        return self._regions[1]

    def _heard_unit(self, final: bool = False) -> tuple[float, float] | None:
        """The next unit by the audio alone: the speech up to the first pause after ``UNIT_MIN_S`` of it,
        or its first ``MAX_UNIT_S`` (cut at its last pause within); at the end of the stream, what is left."""
        regions = self._speech()
        if not regions:
            if self.received_s - self._done_s > IDLE_KEEP_S:  # nothing said: move on
                self._done_s = self.received_s - LEAD_S
                self._audio.drop_before(round(self._done_s * SAMPLE_RATE))
            return None
        begin = max(self._done_s, self.buffer_start_s, regions[0][0] - LEAD_S)
        ends = [b for (_, b), (c, _) in itertools.pairwise(regions) if c - b >= MIN_SILENCE_S]
        if self.received_s - regions[-1][1] >= HEARD_PAUSE_S or final:
            ends.append(regions[-1][1])
        for end in ends:
            stopped = end == regions[-1][1] and self.received_s - end >= SETTLED_S  # a short utterance
            if end - regions[0][0] >= UNIT_MIN_S or final or stopped:
                return begin, min(end + TAIL_S, self.received_s)
        if regions[-1][1] - regions[0][0] >= MAX_UNIT_S:
            within = [end for end in ends if end - regions[0][0] <= MAX_UNIT_S]
            end = within[-1] if within else regions[0][0] + MAX_UNIT_S
            return begin, end
        return None

    def _translate_span(self, start: float, end: float) -> Word | None:
        """Translate the audio ``start``-``end`` (listening): its source is the transcript committed in it."""
        unit = [w for w in self._pending if w.middle < end]
        self._pending = self._pending[len(unit) :]
        return self._translate_audio(unit, start, end, end)

    def _translate_audio(self, unit: Sequence[Word], start: float, end: float, done_s: float) -> Word | None:
        """One English final for the audio ``start``-``end`` whose transcript is ``unit``; the audio before
        ``done_s`` is done with."""
        audio = self._audio.view()[
            max(0, round(start * SAMPLE_RATE) - self._audio.start_sample) : max(
                0, round(end * SAMPLE_RATE) - self._audio.start_sample
            )
        ]
        source = join_words(unit, self.options.source_joiner)
        request = TranslateRequest(
            source=source,
            language=self.options.language,
            audio=audio,
            offset_s=start,
            context=self._context[-self.options.prompt_chars :] if self.options.prompt_chars else "",
            options=self.options,
        )
        text = " ".join(self._translator.translate(request).split())
        self._done_s = max(self._done_s, done_s)
        self._audio.drop_before(min(round(self._done_s * SAMPLE_RATE), self._audio.end_sample))
        log.debug("unit %.2f-%.2f s %r -> %r", start, end, source, text)
        if not text:
            return None
        self._context = (self._context + " " + text).strip()[-max(self.options.prompt_chars, 1) * 4 :]
        return Word(start, end, text)

    def _after_last_word(self) -> bool:
        """True when a silence follows the last committed word, and what the transcript has not committed
        yet (its unstable tail) comes after that silence: the words so far are a sentence or a clause, and
        everything of it is committed."""
        last = self._pending[-1]
        for pause in self._pauses:
            if pause < last.middle or pause - last.end > AFTER_WORD_S:
                continue
            tail = self._tail_start
            if self._settled or (tail is not None and tail >= pause - TAIL_SLACK_S):
                return True
        return False

    def _silent_between(self, word: Word, after: Word) -> bool:
        """True when a silence begins after ``word`` is half said and before ``after`` is half said."""
        return any(word.middle <= pause <= after.middle for pause in self._pauses)

    def _span(self, unit: Sequence[Word]) -> tuple[float, float]:
        """The stretch of audio a unit was said in."""
        start = max(self._done_s, self.buffer_start_s, unit[0].start - LEAD_S)
        rest = self._pending[len(unit) :]
        end = unit[-1].end + TAIL_S
        if rest:
            end = min(end, max(rest[0].start, unit[-1].end))
        return start, max(end, start)

    def _translate(self, unit: list[Word]) -> Word | None:
        start, end = self._span(unit)
        end = min(end, max(self.received_s, unit[-1].end))
        self._pending = self._pending[len(unit) :]
        return self._translate_audio(unit, start, end, unit[-1].end)
