"""The online processor with a scripted engine: agreement over time, trimming, prompt, resume, finish."""

import itertools

import numpy as np
import pytest

from asr_worker.core.processor import BUFFER_FLOOR_S, OnlineProcessor, free_steps
from asr_worker.core.words import Word
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE
from common.options import StreamingOptions
from common.schemas import ProcessorState
from wsp.bench.simulation import StepCost, simulate

EN_TEXT = (
    "Good evening everyone. Welcome to the autumn concert. Please switch off your phones. "
    "Photography is not allowed during the performance. The first half is Mozart. "
    "After the interval we play Dvorak. Enjoy the evening."
)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def run(engine: ScriptedTranscriber, options: StreamingOptions, seconds: float):
    processor = OnlineProcessor(engine, options)
    return processor, simulate(processor, silence(seconds), chunk_s=0.25, comp_aware=False)


def committed_words(result) -> list[Word]:
    return [w for c in result.commits for w in c.words]


@pytest.fixture
def en() -> StreamingOptions:
    return StreamingOptions(language="en", vad=False)


def test_every_word_is_committed_once_in_order(en: StreamingOptions) -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT), flip_last=True)
    _, result = run(engine, en, seconds=engine.timeline[-1].end + 1.0)
    assert [w.text for w in committed_words(result)] == EN_TEXT.split()


def test_commits_are_append_only_and_monotonic(en: StreamingOptions) -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT), flip_last=True)
    _, result = run(engine, en, seconds=engine.timeline[-1].end + 1.0)
    emitted = [c.emitted_s for c in result.commits]
    assert emitted == sorted(emitted)
    words = committed_words(result)
    for before, after in itertools.pairwise(words):
        assert before.end <= after.start + 1e-9
        assert after.start <= after.end


def test_a_flipping_last_word_is_never_committed_in_its_unstable_spelling(en: StreamingOptions) -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT), flip_last=True)
    _, result = run(engine, en, seconds=engine.timeline[-1].end + 1.0)
    assert not any("~" in w.text for w in committed_words(result))


def test_words_are_committed_within_a_few_steps_of_being_spoken(en: StreamingOptions) -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT))
    _, result = run(engine, en, seconds=engine.timeline[-1].end + 1.0)
    delays = [c.emitted_s - w.end for c in result.commits for w in c.words]
    # tail_s (0.3) + two agreeing steps (2 x 0.5 s min chunk), or the commit edge (both hypotheses heard
    # edge_s of audio after the word: the earlier one a step before the later) + the step after it;
    # + one chunk of slack
    assert max(delays) <= max(0.3 + 2 * en.min_chunk_s, en.edge_s + 2 * en.min_chunk_s) + 0.25 + 1e-6


def test_the_buffer_is_cut_at_sentence_ends_and_stays_bounded(en: StreamingOptions) -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT))
    processor = OnlineProcessor(engine, en)
    longest = 0.0
    for _ in range(int((engine.timeline[-1].end + 1) / 0.25)):
        processor.insert_audio(silence(0.25))
        if processor.ready():
            processor.process_iter()
            longest = max(longest, processor.buffer_s)
    assert longest <= en.max_buffer_s
    starts = {round(r.offset_s, 3) for r in engine.requests}
    sentence_ends = {round(w.end, 3) for w in engine.timeline if w.ends_sentence}
    assert starts - {0.0} and starts - {0.0} <= sentence_ends


def test_the_prompt_is_the_committed_text_before_the_buffer_plus_the_glossary() -> None:
    options = StreamingOptions(language="en", vad=False, glossary=("Dvorak", "Mozart"))
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT))
    run(engine, options, seconds=engine.timeline[-1].end + 1.0)
    assert engine.requests[0].prompt == "Dvorak, Mozart"
    later = next(r for r in engine.requests if r.offset_s > 0)
    before = " ".join(w.text for w in engine.timeline if w.end <= later.offset_s + 1e-6)
    assert later.prompt == "Dvorak, Mozart " + before
    assert all(len(r.prompt) <= len("Dvorak, Mozart ") + options.prompt_chars for r in engine.requests)


def test_japanese_is_joined_without_spaces() -> None:
    timeline = ScriptedTranscriber.from_text("皆さま 、 こんばんは 。 本日 は")
    engine = ScriptedTranscriber(timeline)
    _, result = run(engine, StreamingOptions(language="ja", vad=False), seconds=timeline[-1].end + 1)
    assert result.text("") == "皆さま、こんばんは。本日は"


def test_finish_flushes_the_unstable_tail(en: StreamingOptions) -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text("one two three four"), tail_s=0.0)
    processor = OnlineProcessor(engine, en)
    processor.insert_audio(silence(2.5))
    first = processor.process_iter()
    assert first.committed == [] and [w.text for w in first.partial] == ["one", "two", "three", "four"]
    flushed = processor.finish()
    assert [w.text for w in flushed.committed] == ["one", "two", "three", "four"]
    assert flushed.partial == []


def test_finish_keeps_the_tail_when_the_last_decode_stops_short(en: StreamingOptions) -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text("a transition between Gothic and Roman"))
    processor = OnlineProcessor(engine, en)
    processor.insert_audio(silence(3.5))
    heard = ["a", "transition", "between", "Gothic", "and"]
    assert [w.text for w in processor.process_iter().partial] == heard
    engine.timeline = engine.timeline[:3]  # the last decode ends after "between"
    processor.insert_audio(silence(0.5))
    flushed = processor.finish()
    assert [w.text for w in flushed.committed] == heard


def test_a_hard_bound_keeps_the_buffer_short_without_any_sentence_end() -> None:
    options = StreamingOptions(language="en", vad=False, trim_s=2, segment_trim_s=3, max_buffer_s=4)
    text = " ".join(f"w{i}" for i in range(60))
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(text), flip_last=True)
    processor = OnlineProcessor(engine, options)
    out: list[str] = []
    for _ in range(int((engine.timeline[-1].end + 1) / 0.25)):
        processor.insert_audio(silence(0.25))
        if processor.ready():
            out += [w.text for w in processor.process_iter().committed]
            assert processor.buffer_s <= options.max_buffer_s
    out += [w.text for w in processor.finish().committed]
    assert out == [w for w in text.split()]


@pytest.mark.parametrize("cut_after_steps", [3, 11, 24])
def test_resuming_from_serialised_state_equals_an_uninterrupted_run(cut_after_steps: int) -> None:
    options = StreamingOptions(language="en", vad=False)
    timeline = ScriptedTranscriber.from_text(EN_TEXT)
    seconds = timeline[-1].end + 1.0
    audio = silence(seconds)
    chunk = int(0.25 * SAMPLE_RATE)

    def drive(processor: OnlineProcessor, start: int, stop_after: int | None) -> tuple[list[str], int]:
        out: list[str] = []
        steps = 0
        pos = start
        while pos < audio.size:
            processor.insert_audio(audio[pos : pos + chunk])
            pos += chunk
            if processor.ready():
                out += [w.text for w in processor.process_iter().committed]
                steps += 1
                if steps == stop_after:
                    return out, pos
        out += [w.text for w in processor.finish().committed]
        return out, pos

    whole, _ = drive(OnlineProcessor(ScriptedTranscriber(timeline, flip_last=True), options), 0, None)

    engine = ScriptedTranscriber(timeline, flip_last=True)
    original = OnlineProcessor(engine, options)
    first, _ = drive(original, 0, cut_after_steps)
    state = ProcessorState.model_validate_json(original.state().model_dump_json())

    # Another worker: a fresh processor from the saved state, fed the audio again from the buffer start.
    resumed = OnlineProcessor(engine, options, state=state)
    resumed.insert_audio(audio[state.buffer_start_sample : state.received_sample])
    rest, _ = drive(resumed, state.received_sample, None)
    assert rest
    assert first + rest == whole


def test_english_speech_keeps_longer_buffers_and_edge_than_japanese_unless_told_otherwise() -> None:
    en, ja = StreamingOptions(language="en"), StreamingOptions(language="ja")
    assert (en.trim_s, en.segment_trim_s, en.max_buffer_s, en.edge_s) == (14.0, 18.0, 24.0, 0.7)
    assert (ja.trim_s, ja.segment_trim_s, ja.max_buffer_s, ja.edge_s) == (10.0, 14.0, 20.0, 0.4)
    # Japanese speech translated into English is still Japanese audio: its step cost decides.
    assert StreamingOptions(language="ja", task="translate").max_buffer_s == 20.0
    assert StreamingOptions(language="en", trim_s=4).trim_s == 4.0
    again = StreamingOptions.model_validate_json(StreamingOptions(language="en", trim_s=4).model_dump_json())
    assert (again.trim_s, again.max_buffer_s) == (4.0, 24.0)


class SlowClock:
    """A clock that a step moves on by ``cost_per_s`` seconds for every second of window it decodes."""

    def __init__(self, engine: ScriptedTranscriber, cost_per_s: float, pad_s: float) -> None:
        self.now = 0.0
        self._engine = engine
        self._cost = cost_per_s
        self._pad = pad_s
        self._seen = 0

    def __call__(self) -> float:
        if len(self._engine.requests) > self._seen:  # a step has run since the last reading
            request = self._engine.requests[-1]
            self.now += self._cost * (request.audio.size / SAMPLE_RATE + self._pad)
            self._seen = len(self._engine.requests)
        return self.now


def longest_buffer(cost_per_s: float | None) -> float:
    """The longest buffer a step decodes over 80 s of speech without a sentence end."""
    options = StreamingOptions(language="ja", vad=False)
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(" ".join(["ことば"] * 160)))
    clock = free_steps if cost_per_s is None else SlowClock(engine, cost_per_s, options.window_pad_s or 0)
    processor = OnlineProcessor(engine, options, clock=clock)
    simulate(processor, silence(80), chunk_s=0.5, comp_aware=False)
    return max(r.audio.size for r in engine.requests) / SAMPLE_RATE


def test_buffers_shrink_where_steps_are_slow_and_keep_their_bounds_where_they_are_free() -> None:
    options = StreamingOptions(language="ja")
    assert longest_buffer(None) == pytest.approx(options.max_buffer_s, abs=0.6)
    # A step costing 0.15 s per second of window may decode about 1.5 / 0.15 - 2 = 8 s of buffer.
    slow = longest_buffer(0.15)
    assert slow <= options.step_budget_s / 0.15 - (options.window_pad_s or 0) + 0.6
    # However slow, the buffer keeps enough audio for the model to hear whole phrases.
    assert longest_buffer(5.0) >= BUFFER_FLOOR_S - 0.6


class SpeechIn:
    """A detector that hears speech in the given stretches of the stream (absolute seconds) only."""

    def __init__(self, spans: list[tuple[float, float]]) -> None:
        self.spans = spans
        self.processor: OnlineProcessor | None = None

    def speech(self, audio: np.ndarray) -> list[tuple[float, float]]:
        assert self.processor is not None
        start, length = self.processor.buffer_start_s, audio.size / SAMPLE_RATE
        return [
            (max(a - start, 0.0), min(b - start, length))
            for a, b in self.spans
            if b > start and a < start + length
        ]


def _with_speech_in(engine: ScriptedTranscriber, spans: list[tuple[float, float]]) -> OnlineProcessor:
    detector = SpeechIn(spans)
    processor = OnlineProcessor(engine, StreamingOptions(language="ja"), detector=detector)
    detector.processor = processor
    return processor


def test_a_made_up_tail_after_the_last_speech_is_never_committed() -> None:
    timeline = ScriptedTranscriber.from_text("今日は いい 天気 だ 。")
    spoken_until = timeline[-1].end + 0.1
    # Said at a natural pace (the pace guard would not notice), but after the speech has ended.
    invented = [
        Word(spoken_until + 0.3, spoken_until + 0.7, "スタッフ"),
        Word(spoken_until + 0.7, spoken_until + 0.9, "ルー"),
    ]
    engine = ScriptedTranscriber([*timeline, *invented], tail_s=0.0)
    processor = _with_speech_in(engine, [(0.0, spoken_until)])
    result = simulate(processor, silence(spoken_until + 1.0), chunk_s=0.5, comp_aware=False)
    assert result.text("") == "今日はいい天気だ。"


def test_an_announcement_said_twice_is_committed_twice() -> None:
    # Venues repeat announcements word for word; only a phrase that starts over inside new text is a loop.
    text = "皆さん こんばんは。 本日は 秋の 演奏会に ようこそ。 携帯電話の 電源を お切りください。 "
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(text * 2), flip_last=True)
    _, result = run(engine, StreamingOptions(language="ja", vad=False), seconds=engine.timeline[-1].end + 1.0)
    assert result.text("") == text.replace(" ", "") * 2


def test_a_step_cost_model_times_a_run_whatever_the_machine_is_doing(en: StreamingOptions) -> None:
    # Computation-aware time from a model of a decode: the same run gives the same emission times, each
    # commit comes after the audio it covers, and slow decodes shrink the buffers as slow hardware would.
    def costed(fixed_s: float, per_s: float) -> tuple[OnlineProcessor, list[float]]:
        cost = StepCost(fixed_s, per_s, pad_s=en.window_pad_s or 0.0)
        engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT))
        processor = OnlineProcessor(cost.charge(engine), en, clock=cost.clock)
        result = simulate(processor, silence(20.0), chunk_s=0.25, comp_aware=True, cost=cost)
        said = [w.text for w in committed_words(result)]
        assert said == EN_TEXT.split()[: len(said)] and said
        assert all(c.emitted_s >= c.end_s for c in result.commits)
        return processor, [c.emitted_s for c in result.commits]

    cheap, emitted = costed(0.05, 0.01)
    assert costed(0.05, 0.01)[1] == emitted
    slow, _ = costed(0.2, 0.15)
    assert slow.bounds()[2] < cheap.bounds()[2]


def test_words_followed_by_a_pause_are_committed_by_the_decode_that_heard_the_pause() -> None:
    # Three words end at 1.9 s, then a pause, then speech again from 3.5 s. Agreement alone would wait for
    # a second decode that also heard 0.4 s after the last word (the step at 3.0 s); the decode that heard
    # the pause (padding 0.1 s + edge_s 0.4 s of it, the step at 2.5 s) has heard those words whole.
    first = ScriptedTranscriber.from_text("皆さん こんばんは 。")
    second = ScriptedTranscriber.from_text("本日は ようこそ 。", start_s=3.5)
    engine = ScriptedTranscriber([*first, *second])
    spans = [(first[0].start - 0.1, first[-1].end + 0.1), (second[0].start - 0.1, second[-1].end + 0.1)]
    result = simulate(_with_speech_in(engine, spans), silence(second[-1].end + 1.0), 0.5, comp_aware=False)
    first_end = next(c.emitted_s for c in result.commits for w in c.words if w.text == "。")
    assert result.text("") == "皆さんこんばんは。本日はようこそ。"
    assert first_end == pytest.approx(2.5)


def test_words_whisper_puts_in_a_pause_between_two_stretches_of_speech_are_never_committed() -> None:
    first = ScriptedTranscriber.from_text("ありがとう ございます 。")
    second = ScriptedTranscriber.from_text("時間の 都合上 。", start_s=4.5)
    # words at a natural pace, in the pause between the two voices, where the VAD heard nothing
    made_up = ScriptedTranscriber.from_text("はい じゃあ 。", start_s=first[-1].end + 0.6)
    assert made_up[-1].end < second[0].start - 0.2
    engine = ScriptedTranscriber([*first, *made_up, *second])
    spans = [(first[0].start - 0.1, first[-1].end + 0.1), (second[0].start - 0.1, second[-1].end + 0.1)]
    result = simulate(_with_speech_in(engine, spans), silence(second[-1].end + 1.0), 0.5, comp_aware=False)
    assert result.text("") == "ありがとうございます。時間の都合上。"
