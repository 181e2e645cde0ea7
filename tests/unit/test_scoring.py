"""How a streaming run is scored: error rates after normalisation, weighted latency, lost tail."""

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_worker.core.words import Word
from common.errors import ConfigError
from wsp.bench.scoring import (
    Sentence,
    error_counts,
    error_rate,
    invented_tail_chars,
    latency_stats,
    longest_stall_s,
    lost_tail_s,
    normalise_for_scoring,
    sentence_timings,
    weighted_percentile,
)
from wsp.bench.simulation import TimedCommit
from wsp.bench.suite import find_clips

# -- normalisation and CER (Japanese) ----------------------------------------------------------------


def test_arabic_and_kanji_numerals_score_the_same() -> None:
    assert error_rate("交響曲第四十番", "交響曲第40番", "ja") == 0.0
    assert error_rate("二十分間の休憩", "20分間の休憩", "ja") == 0.0
    assert normalise_for_scoring("第40番", "ja") == normalise_for_scoring("第四十番", "ja") == "第四十番"


def test_zero_is_a_kanji_numeral_too() -> None:
    assert normalise_for_scoring("0番", "ja") == "零番"


def test_punctuation_spaces_and_character_width_are_ignored() -> None:
    reference = "皆さま、こんばんは。本日はＡＢＣホールへ！"
    hypothesis = "皆さま こんばんは 本日はABCホールへ"
    assert error_rate(reference, hypothesis, "ja") == 0.0
    assert error_rate("「新世界より」です。", "新世界よりです", "ja") == 0.0


def test_cer_counts_characters() -> None:
    # One wrong character out of ten.
    assert error_rate("こんばんは皆さまです", "こんばんわ皆さまです", "ja") == pytest.approx(0.1)
    # A missing half of the text.
    assert error_rate("本日は晴天なり", "本日は", "ja") == pytest.approx(4 / 7)


def test_cer_of_a_wrong_transcript_is_high() -> None:
    assert error_rate("演奏会を始めます", "ご視聴ありがとうございました", "ja") > 0.9


# -- WER (English) -----------------------------------------------------------------------------------


def test_english_is_scored_by_words_ignoring_case_and_punctuation() -> None:
    reference = "And so, my fellow Americans, ask not what your country can do for you."
    spoken = "and so my fellow americans ask not what your country can do for you"
    assert error_rate(reference, spoken, "en") == 0
    # One substituted word out of fourteen.
    wrong = "and so my fellow americans ask not what your county can do for you"
    assert error_rate(reference, wrong, "en") == pytest.approx(1 / 14)


def test_english_words_are_not_split_into_characters() -> None:
    # A CER would be small here; a WER counts the whole word wrong.
    assert error_rate("one two three", "one two tree", "en") == pytest.approx(1 / 3)


def test_an_empty_reference_only_matches_an_empty_hypothesis() -> None:
    assert error_rate("。", "", "ja") == 0.0
    assert error_rate("", "something", "en") == 1.0


def test_an_empty_hypothesis_is_all_wrong() -> None:
    assert error_rate("ask not", "", "en") == 1.0
    assert error_rate("こんばんは", "", "ja") == 1.0


# -- weighted percentiles ----------------------------------------------------------------------------


def test_equal_weights_give_the_plain_lower_percentile() -> None:
    assert weighted_percentile([3.0, 1.0, 2.0], [1, 1, 1], 50) == 2.0
    assert weighted_percentile([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], 50) == 2.0
    assert weighted_percentile([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], 100) == 4.0
    assert weighted_percentile([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], 0) == 1.0


def test_heavy_values_dominate_the_percentiles() -> None:
    # Nine characters came after 1 s, one after 10 s.
    values, weights = [10.0, 1.0], [1, 9]
    assert weighted_percentile(values, weights, 50) == 1.0
    assert weighted_percentile(values, weights, 90) == 1.0
    assert weighted_percentile(values, weights, 95) == 10.0


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(weighted_percentile([], [], 50))


def test_latency_is_weighted_by_characters() -> None:
    commits = [
        TimedCommit(2.0, (Word(0.0, 1.0, "こんばんは"),)),  # 1 s late, 5 characters
        TimedCommit(6.0, (Word(1.0, 2.0, "。"),)),  # 4 s late, 1 character
    ]
    stats = latency_stats(commits)
    assert stats["latency_p50_s"] == 1.0
    assert stats["latency_p90_s"] == 4.0
    assert stats["latency_mean_s"] == pytest.approx((5 * 1.0 + 1 * 4.0) / 6)


def test_latency_of_no_commits_is_nan() -> None:
    assert all(math.isnan(v) for v in latency_stats([]).values())


# -- lost tail ---------------------------------------------------------------------------------------

SPEECH = [(0.0, 2.0), (3.0, 5.0), (6.0, 8.5)]


def commit(*spans: tuple[float, float]) -> TimedCommit:
    return TimedCommit(10.0, tuple(Word(s, e, "w") for s, e in spans))


def test_nothing_is_lost_when_the_last_speech_has_words() -> None:
    assert lost_tail_s(SPEECH, [commit((0.1, 1.0)), commit((6.5, 7.0))]) == 0.0


def test_uncovered_speech_at_the_end_counts_as_lost() -> None:
    assert lost_tail_s(SPEECH, [commit((0.1, 1.9))]) == 4.5


def test_a_gap_in_the_middle_is_not_a_lost_tail() -> None:
    assert lost_tail_s(SPEECH, [commit((0.5, 1.0), (7.0, 8.0))]) == 0.0


def test_a_word_overlapping_a_region_edge_covers_it() -> None:
    assert lost_tail_s(SPEECH, [commit((5.8, 6.1))]) == 0.0
    # Touching is not overlapping.
    assert lost_tail_s(SPEECH, [commit((5.5, 6.0))]) == 6.5


def test_with_no_commits_all_speech_is_lost() -> None:
    assert lost_tail_s(SPEECH, []) == 6.5
    assert lost_tail_s([], []) == 0.0


def timed(emitted_s: float, *texts_at: tuple[str, float, float]) -> TimedCommit:
    return TimedCommit(emitted_s, tuple(Word(start, end, text) for text, start, end in texts_at))


def test_a_sentence_is_timed_by_the_commit_that_completes_it() -> None:
    sentences = [Sentence(0.0, 2.0, "皆さま、こんばんは。"), Sentence(2.5, 5.0, "本日はようこそ。")]
    commits = [
        timed(1.6, ("皆さま", 0.0, 0.8)),
        timed(2.9, ("こんばんは", 0.9, 1.9)),
        timed(6.2, ("本日は", 2.5, 3.5), ("ようこそ", 3.6, 4.9)),
    ]
    timings = sentence_timings(sentences, commits, "ja")
    assert [t.latency_s for t in timings] == pytest.approx([0.9, 1.2])


def test_a_sentence_that_was_misheard_at_its_end_is_complete_with_its_last_heard_character() -> None:
    sentences = [Sentence(0.0, 2.0, "百万塔陀羅尼です。"), Sentence(3.0, 4.0, "次です。")]
    commits = [
        timed(2.5, ("百万", 0.0, 0.5)),
        timed(3.0, ("党だらにです", 0.5, 1.9)),
        timed(5.0, ("次です", 3, 4)),
    ]
    timings = sentence_timings(sentences, commits, "ja")
    assert timings[0].emitted_s == 3.0 and timings[1].emitted_s == 5.0
    assert sentence_timings([Sentence(0, 1, "何も")], [], "ja")[0].latency_s is None


def test_text_made_up_after_the_end_of_the_talk_is_counted() -> None:
    reference = "最後までお楽しみください。"
    assert invented_tail_chars(reference, "最後までお楽しみください", "ja") == 0
    assert invented_tail_chars(reference, "最後までお楽しみくださいスタッフの音がある", "ja") == 9
    # A misheard last word is an error, not an invention.
    assert invented_tail_chars(reference, "最後までお楽しみくださる", "ja") == 0


def test_a_stall_counts_only_while_uncommitted_speech_waits() -> None:
    speech = [(0.0, 4.0), (10.0, 14.0)]
    commits = [timed(1.0, ("a", 0.0, 0.5)), timed(4.5, ("b", 0.5, 4.0)), timed(13.0, ("c", 10.0, 12.0))]
    # 1.0 -> 4.5 while speech went on: 3.5 s; the pause 4.0-10.0 does not count, 10.0 -> 13.0 does.
    assert longest_stall_s(commits, speech) == pytest.approx(3.5)
    assert longest_stall_s([timed(4.0, ("a", 0.0, 1.0))], [(0.5, 1.0)]) == pytest.approx(3.5)


def test_errors_add_up_over_clips_by_reference_size() -> None:
    assert error_counts("今日はいい天気だ", "今日は良い天気だ", "ja") == (1, 8)
    assert error_counts("the quick brown fox", "the quick brown box", "en") == (1, 4)


def test_clips_are_found_with_their_references_languages_and_sentences(tmp_path: Path) -> None:
    folder = tmp_path / "ja"
    folder.mkdir()
    for name in ("ja_talk", "noref", "meeting"):
        sf.write(folder / f"{name}.wav", np.zeros(1600, dtype=np.float32), 16000)
    (folder / "ja_talk.txt").write_text("こんにちは。", encoding="utf-8")
    (folder / "meeting.txt").write_text("はい。", encoding="utf-8")
    (folder / "ja_talk.segments.json").write_text('[{"start": 0, "end": 0.1, "text": "こんにちは。"}]')
    clips = find_clips([folder], "en")
    assert [(c.name, c.language, len(c.sentences)) for c in clips] == [
        ("ja_talk", "ja", 1),
        ("meeting", "ja", 0),
    ]
    with pytest.raises(ConfigError):
        find_clips([tmp_path / "missing"], "ja")
