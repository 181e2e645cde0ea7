"""The worker's atomic commit and lease decisions: gap-free seqs, fencing, resume points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr_worker.core.words import Word
from asr_worker.service.audio_feed import FIRST_ENTRY, AudioEntry, ResumeIndex, unseen_part
from asr_worker.service.commit import (
    final_event,
)
from asr_worker.service.leases import Room, claim_quota, unowned
from asr_worker.service.runner import earliest
from asr_worker.transcribers.factory import make_transcriber, uses_vad, write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.contract.audio import parse_or_skip
from common.contract.captions import final_template
from common.errors import ConfigError
from common.schemas import CaptionEvent
from common.settings import Settings


def words(*texts: str, start: float = 0.0) -> list[Word]:
    return [Word(start + i, start + i + 0.5, t) for i, t in enumerate(texts)]


# -- pure --------------------------------------------------------------------------------------
def test_a_caption_template_takes_any_seq() -> None:
    event = final_event("ja", words("今日は", "晴れ。"), "")
    head, tail = final_template(event)
    parsed = CaptionEvent.model_validate_json(head + "42" + tail)
    assert parsed.seq == 42
    assert parsed.text == "今日は晴れ。"
    assert (parsed.start, parsed.end) == (0.0, 1.5)


def test_the_worker_with_most_room_takes_a_new_session() -> None:
    me = Room("a", capacity=2, owned=1)
    roomier = Room("b", capacity=4, owned=0)
    assert claim_quota(me, [roomier], waited_s=0.1, grace_s=3.0) == 0
    assert claim_quota(roomier, [me], waited_s=0.1, grace_s=3.0) == 4
    # a session left waiting (or one whose worker died) goes to anyone with room
    assert claim_quota(me, [roomier], waited_s=5.0, grace_s=3.0) == 1
    assert claim_quota(Room("c", 1, 1), [], waited_s=99.0, grace_s=3.0) == 0


def test_only_sessions_without_a_live_lease_are_claimable() -> None:
    assert unowned(["s1", "s2", "s3", "s4"], [False, True, False, False], mine=["s3"]) == ["s1", "s4"]


def test_re_read_audio_is_fed_once_and_gaps_keep_time() -> None:
    entry = AudioEntry("7-0", 1000, np.ones(500, dtype=np.float32))
    assert unseen_part(entry, fed_until=1500, max_gap_s=30).size == 0
    assert unseen_part(entry, fed_until=1200, max_gap_s=30).size == 300
    assert unseen_part(entry, fed_until=1000, max_gap_s=30).size == 500
    padded = unseen_part(entry, fed_until=800, max_gap_s=30)
    assert padded.size == 700 and not padded[:200].any()


def test_the_resume_point_is_the_entry_holding_the_buffer_start() -> None:
    index = ResumeIndex()
    assert index.entry_for(0) == FIRST_ENTRY
    for n in range(4):
        index.add(AudioEntry(f"{n + 1}-0", n * 100, np.zeros(100, dtype=np.float32)))
    assert index.entry_for(0) == "1-0"
    assert index.entry_for(250) == "3-0"
    assert index.entry_for(400) == "4-0"
    index.forget_before(250)
    assert len(index) == 2 and index.entry_for(0) == "3-0"
    assert earliest(["5-1", "12-0", "5-0"]) == "5-0"
    assert earliest(["5-1", FIRST_ENTRY]) == FIRST_ENTRY


def test_a_malformed_audio_entry_is_skipped_not_fatal() -> None:
    odd = parse_or_skip(b"3-0", {b"kind": b"audio", b"sample0": b"0", b"pcm": b"\x00\x01\x02"})
    unknown = parse_or_skip(b"4-0", {b"kind": b"video", b"sample0": b"0"})
    assert odd.samples.size == 0 and not odd.is_end and unknown.id == "4-0"
    end = parse_or_skip(b"5-0", {b"kind": b"end", b"sample0": b"16000"})
    assert end.is_end and end.sample0 == 16000


def test_the_scripted_engine_reads_its_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    write_script(script, words("hello", "world"))
    settings = Settings(engine="scripted", script_file=script)
    engine = make_transcriber(settings)
    assert isinstance(engine, ScriptedTranscriber)
    assert [w.text for w in engine.timeline] == ["hello", "world"]
    assert not uses_vad(settings)
    with pytest.raises(ConfigError, match="WSP_SCRIPT_FILE"):
        make_transcriber(Settings(engine="scripted"))
    (tmp_path / "bad.json").write_text('[{"start": 0}]')
    with pytest.raises(ConfigError, match="not a list"):
        make_transcriber(Settings(engine="scripted", script_file=tmp_path / "bad.json"))
