"""Back-pressure in the pure core: ``OnlineProcessor.skip_to`` jumps ahead without losing what was heard."""

import numpy as np

from asr_worker.core.processor import OnlineProcessor
from asr_worker.service.audio_feed import AudioEntry, lag_s
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE
from common.options import StreamingOptions

EN_TEXT = (
    "Good evening everyone. Welcome to the autumn concert. Please switch off your phones. "
    "Photography is not allowed during the performance. The first half is Mozart. "
    "After the interval we play Dvorak. Enjoy the evening."
)
OPTIONS = StreamingOptions(language="en", vad=False)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def feed(processor: OnlineProcessor, seconds: float, chunk_s: float = 0.25) -> list[str]:
    """Insert ``seconds`` of audio in chunks, stepping whenever ready; the committed words."""
    words: list[str] = []
    for _ in range(round(seconds / chunk_s)):
        processor.insert_audio(silence(chunk_s))
        if processor.ready():
            words += [w.text for w in processor.process_iter().committed]
    return words


def test_skip_commits_the_pending_tail_and_resumes_at_the_target() -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT))
    processor = OnlineProcessor(engine, OPTIONS)
    before = feed(processor, 3.0)
    pending = [w.text for w in processor.state().pending]
    assert pending, "the scripted engine leaves an unagreed tail"

    skip = processor.skip_to(round(12.0 * SAMPLE_RATE))
    assert [w.text for w in skip.committed] == pending
    assert skip.start_s == 3.0 and skip.end_s == 12.0
    assert processor.buffer_start_s == 12.0 and processor.buffer_s == 0
    assert processor.state().pending == []

    # audio from the target on: words heard after 12 s are committed, nothing from the skipped span
    after = feed(processor, 6.0) + [w.text for w in processor.finish().committed]
    timeline = engine.timeline
    expected_after = [w.text for w in timeline if w.start >= 12.0 and w.end <= 18.0]
    assert after == expected_after
    assert before + [w.text for w in skip.committed] == [
        w.text for w in timeline if w.end <= 3.0 - engine.tail_s
    ]
    assert all(r.offset_s >= 12.0 for r in engine.requests[len(engine.requests) - 12 :])


def test_skip_keeps_committed_text_as_prompt_context() -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT))
    processor = OnlineProcessor(engine, OPTIONS)
    heard = feed(processor, 3.0)
    processor.skip_to(round(10.0 * SAMPLE_RATE))
    feed(processor, 1.0)
    prompt = engine.requests[-1].prompt
    assert heard and prompt.endswith(processor.state().context[-len(prompt) :])
    assert "Good evening" in processor.state().context


def test_skip_within_the_fed_audio_keeps_the_audio_after_the_target() -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT))
    processor = OnlineProcessor(engine, OPTIONS)
    feed(processor, 2.0)
    processor.insert_audio(silence(3.0))  # fed but not yet heard by the model
    skip = processor.skip_to(round(4.0 * SAMPLE_RATE))
    assert skip.start_s == 2.0 and skip.end_s == 4.0
    assert processor.buffer_start_s == 4.0 and processor.buffer_s == 1.0
    assert processor.ready()


def test_skip_backwards_only_commits_the_tail() -> None:
    engine = ScriptedTranscriber(ScriptedTranscriber.from_text(EN_TEXT))
    processor = OnlineProcessor(engine, OPTIONS)
    feed(processor, 3.0)
    skip = processor.skip_to(0)
    assert skip.start_s == skip.end_s == 3.0
    assert processor.buffer_start_s == 3.0


def test_a_skipped_processor_state_resumes_identically() -> None:
    """The state after a skip is serialisable: a resumed processor commits what the original does."""
    timeline = ScriptedTranscriber.from_text(EN_TEXT)
    original = OnlineProcessor(ScriptedTranscriber(timeline), OPTIONS)
    feed(original, 3.0)
    original.skip_to(round(10.0 * SAMPLE_RATE))
    feed(original, 1.0)
    state = original.state()
    resumed = OnlineProcessor(ScriptedTranscriber(timeline), OPTIONS, state=state)
    resumed.insert_audio(silence((state.received_sample - state.buffer_start_sample) / SAMPLE_RATE))
    assert feed(resumed, 5.0) == feed(original, 5.0)
    assert [w.text for w in resumed.finish().committed] == [w.text for w in original.finish().committed]


def test_lag_is_the_age_of_the_oldest_unheard_audio_by_the_server_s_clock() -> None:
    chunk = np.zeros(4000, dtype=np.float32)
    entries = [AudioEntry(f"{1_000_000 + 250 * n}-0", 4000 * n, chunk) for n in range(8)]
    edge = "1010000-0"  # the newest entry of the stream arrived 10 s after the first
    assert lag_s(entries, heard_sample=0, edge_id=edge) == 10.0
    assert lag_s(entries, heard_sample=4000 * 4, edge_id=edge) == 9.0  # heard audio (a re-read) is no lag
    assert lag_s(entries, heard_sample=4000 * 8, edge_id=edge) == 0.0
    assert lag_s([], heard_sample=0, edge_id=edge) == 0.0
