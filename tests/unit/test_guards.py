"""Guards against made-up text: stock phrases, repetition loops, silence read as speech."""

import pytest

from asr_worker.core import guards
from asr_worker.core.seam import Segment
from asr_worker.core.words import Word
from common.options import StreamingOptions

OPTIONS = StreamingOptions(language="ja")


CHAR_S = 0.15
"""A natural pace for the pieces: about seven characters a second."""


def pieces(*texts: str, start: float = 0.0, step: float = 0.3) -> tuple[Word, ...]:
    """Pieces one after another, each lasting as long as its text takes to say (at least ``step``)."""
    out, t = [], start
    for text in texts:
        length = max(step, CHAR_S * len(text))
        out.append(Word(t, t + length - 0.05, text))
        t += length
    return tuple(out)


def segment(*texts: str, start: float = 0.0, **scores: float) -> Segment:
    words = pieces(*texts, start=start)
    return Segment(words[0].start, words[-1].end, words, **scores)


def kept_text(segments: list[Segment]) -> str:
    return "".join(s.text for s in guards.clean(segments, OPTIONS))


@pytest.mark.parametrize(
    "text",
    [
        "ご視聴ありがとうございました",
        "ご視聴ありがとうございました。",
        "チャンネル登録よろしくお願いします！",
        "Thank you for watching!",
        "THANKS FOR WATCHING.",
        "Ｔｈａｎｋ ｙｏｕ ｆｏｒ ｗａｔｃｈｉｎｇ",  # full width
    ],
)
def test_known_hallucinations_are_never_kept(text: str) -> None:
    assert guards.is_known_hallucination(text)
    words = text.split() if " " in text else [text]
    assert guards.clean([segment(*words)], OPTIONS) == []


def test_a_sentence_that_merely_contains_a_stock_phrase_is_kept() -> None:
    text = "皆さま、ご視聴ありがとうございました。次の曲です。"
    assert not guards.is_known_hallucination(text)
    assert kept_text([segment(text)]) == text


def test_a_known_hallucination_among_real_segments_drops_only_itself() -> None:
    real = segment("本日", "は", "ようこそ", "。")
    made_up = segment("ご視聴", "ありがとう", "ございました", start=2.0)
    after = segment("開演", "です", "。", start=4.0)
    assert kept_text([real, made_up, after]) == "本日はようこそ。開演です。"


def test_a_repetition_loop_is_cut_after_its_first_occurrence() -> None:
    loop = segment("本日", "は", *["上に", "、"] * 8)
    kept = guards.clean([loop], OPTIONS)
    assert "".join(s.text for s in kept) == "本日は上に、"
    # Kept words keep their timestamps.
    assert kept[0].words == loop.words[:4]


def test_a_single_word_loop_is_cut() -> None:
    words = guards.cut_loop(list(pieces("the", "end", "end", "end", "end", "end")), max_repeats=3)
    assert [w.text for w in words] == ["the", "end"]


def test_a_loop_inside_one_piece_drops_the_segment_and_everything_after_it() -> None:
    glued = segment("上に、上に、上に、上に、上に、")
    later = segment("開演", "です", start=3.0)
    assert kept_text([segment("ようこそ", "。"), glued, later]) == "ようこそ。"


def test_words_repeated_fewer_times_than_the_limit_are_kept() -> None:
    text = ("とても", "とても", "嬉しい", "です")
    assert kept_text([segment(*text)]) == "とてもとても嬉しいです"


@pytest.mark.parametrize("number", ["100000", "1000000円", "2000年", "ははは"])
def test_numbers_and_short_repeats_are_not_taken_for_loops(number: str) -> None:
    assert kept_text([segment("入場者", "は", number, "です")]) == f"入場者は{number}です"


@pytest.mark.parametrize(
    "number",
    [("100", "000"), ("100", "0000", "000"), ("100", ",", "000", ",", "000")],
    ids=["100000", "1000000000", "100,000,000"],
)
def test_a_number_split_into_token_pieces_is_not_a_loop(number: tuple[str, ...]) -> None:
    # How Whisper's tokenizer splits these numbers; Japanese word timestamps come one per token.
    assert kept_text([segment("賞金", "は", *number, "円")]) == "賞金は" + "".join(number) + "円"


def test_silence_read_as_speech_is_dropped() -> None:
    # Likely no speech and a low-confidence decode: Whisper's own silence rule.
    silent = segment("えー", no_speech_prob=0.9, avg_logprob=-1.5)
    assert guards.clean([silent], OPTIONS) == []


@pytest.mark.parametrize(
    ("no_speech_prob", "avg_logprob"),
    [(0.9, -0.3), (0.2, -1.5)],
    ids=["confident-decode", "speech-likely"],
)
def test_one_bad_score_alone_does_not_drop_a_segment(no_speech_prob: float, avg_logprob: float) -> None:
    seg = segment("こんばんは", no_speech_prob=no_speech_prob, avg_logprob=avg_logprob)
    assert kept_text([seg]) == "こんばんは"


SENTENCE = "The Middle Ages brought calligraphy to perfection, and it was natural therefore that the forms"


def test_a_segment_whose_text_is_too_repetitive_to_be_speech_is_dropped() -> None:
    ratio = guards.compression_ratio(SENTENCE)

    def kept_below(threshold: float) -> list[Segment]:
        options = StreamingOptions(language="en", compression_ratio_threshold=threshold)
        return guards.clean([segment(*SENTENCE.split())], options)

    assert kept_below(ratio - 0.01) == []
    assert kept_below(ratio) != []


def test_good_segments_survive_a_window_whisper_scores_as_repetitive() -> None:
    # Whisper's score is the whole window's: a loop at its end gives every segment of it 2.9.
    good = segment(*SENTENCE.split(), compression_ratio=2.9)
    assert en_text([good]) == SENTENCE


def test_thresholds_come_from_the_options() -> None:
    strict = StreamingOptions(language="ja", compression_ratio_threshold=1.5, max_repeats=2)
    assert guards.clean([segment("演奏会演奏会演奏会", "です")], strict) == []
    cut = guards.clean([segment("はい", "はい", "はい")], strict)
    assert "".join(s.text for s in cut) == "はい"
    assert kept_text([segment("はい", "はい", "はい")]) == "はい"
    assert kept_text([segment("はい", "はい")]) == "はいはい"


EN = StreamingOptions(language="en")


def en_text(segments: list[Segment], history: tuple[Word, ...] = ()) -> str:
    return " ".join(w.text for s in guards.clean(segments, EN, history=history) for w in s.words)


def test_a_sentence_said_again_at_the_end_of_a_buffer_is_cut() -> None:
    # Whisper repeats the last sentence when the buffer ends; the repeat must never be committed.
    said = segment(*["And", "it", "is", "worth", "mentioning", "in", "passing."] * 2)
    assert en_text([said]) == "And it is worth mentioning in passing."


def test_a_phrase_repeating_the_committed_text_before_the_buffer_is_cut() -> None:
    history = pieces("worth", "mentioning", "in", "passing.")
    again = segment("mentioning", "in", "passing.", "That", "is", "all.", start=2.0)
    assert en_text([again], history=history[:1]) == "mentioning in passing. That is all."
    assert en_text([again], history=history) == ""


def test_a_long_word_doubled_is_cut_but_a_short_emphasis_is_kept() -> None:
    assert en_text([segment("missals,", "soldiers,", "soldiers,", "etc.")]) == "missals, soldiers,"
    assert en_text([segment("very,", "very", "good")]) == "very, very good"


def test_the_words_before_a_loop_survive_even_when_the_segment_scores_as_repetitive() -> None:
    looped = segment("especially", "as", "regards", *["ancient"] * 20, compression_ratio=9.0)
    assert en_text([looped]) == "especially as regards ancient"


def test_a_loop_on_probable_non_speech_is_dropped_whole() -> None:
    # Whisper on noise: a made-up phrase, then a loop; the phrase before the loop is made up too.
    noise = segment("スタッフ", "の", "上に", "、", *["上に", "、"] * 6, no_speech_prob=0.7, avg_logprob=-0.9)
    speech = segment(
        "スタッフ", "の", "上に", "、", *["上に", "、"] * 6, no_speech_prob=0.1, avg_logprob=-0.9
    )
    assert kept_text([noise]) == ""
    assert kept_text([speech]) == "スタッフの上に、"


def test_a_decode_that_repeats_whole_segments_is_dropped_whatever_whisper_scores_it() -> None:
    # Whisper on a tone sequence: one made-up phrase, one segment after another. Whisper's own score
    # for the window depends on the processor; the shape does not.
    def loop(ratio: float) -> list[Segment]:
        return [
            segment("スタッフ", "の", "音", "がある", start=3.0 * i, compression_ratio=ratio)
            for i in range(4)
        ]

    assert kept_text(loop(1.5)) == ""
    assert kept_text(loop(OPTIONS.compression_ratio_threshold + 0.5)) == ""


def test_text_squeezed_into_an_instant_after_the_last_words_is_dropped() -> None:
    # Two decodes of real recordings' ends: Whisper went on after the last word, in no time at all.
    last = Segment(0.0, 0.2, (Word(0.0, 0.2, "か"),))
    made_up = Segment(
        0.2, 0.26, tuple(Word(0.2 + 0.06 * (i > 0), 0.26, c) for i, c in enumerate("スタッフの音がある"))
    )
    assert kept_text([last, made_up]) == "か"
    switch = Segment(0.0, 0.16, (Word(0.0, 0.16, "ス"), *(Word(0.16, 0.16, c) for c in "イッチ")))
    assert kept_text([segment("きます。"), switch]) == "きます。"


def test_fast_but_human_speech_is_kept() -> None:
    quick = segment("ありがとう", "ございます", "。")  # 15 characters in 2.25 s
    assert kept_text([quick]) == "ありがとうございます。"
    words = tuple(
        Word(i * 0.2, i * 0.2 + 0.18, w) for i, w in enumerate(["I", "can", "not", "do", "it", "now"])
    )
    kept = guards.clean([Segment(0.0, 1.2, words)], StreamingOptions(language="en"))
    assert [w.text for s in kept for w in s.words] == ["I", "can", "not", "do", "it", "now"]


@pytest.mark.parametrize(
    "split",
    [
        ("スタッフ", "の", "上に", "、") * 3,
        ("ス", "タッフの上", "に、スタ", "ッフの", "上に、", "スタッフの上に", "、"),
        ("スタッフの上に、スタッフの上に、スタッフの上に、",),
    ],
    ids=["by-words", "odd-pieces", "one-piece"],
)
def test_a_decode_that_is_nothing_but_a_phrase_going_round_is_dropped(split: tuple[str, ...]) -> None:
    # Whisper on white noise (the VAD off) on one processor: a made-up phrase, three times, each time
    # split into other token pieces; the model is sure it is speech.
    assert kept_text([segment(*split, no_speech_prob=0.1, avg_logprob=-0.4)]) == ""


def test_a_phrase_going_round_across_segments_is_dropped() -> None:
    rounds = [segment("スタッフ", "の", "上に", "、", start=3.0 * i) for i in range(3)]
    assert kept_text(rounds) == ""
    assert kept_text([segment("本日は", "。"), *rounds]) == "本日は。スタッフの上に、"  # said once, maybe


def test_loops_are_recognised_by_shape_whatever_their_length() -> None:
    for unit in ("上に、", "拍手の音、", "会場のみなさま、こんばんは。"):
        assert kept_text([segment("では", "。", *[unit] * 4)]) == f"では。{unit}"


@pytest.mark.parametrize(
    "text",
    [
        "最後までご視聴いただき誠にありがとうございました",
        "ご覧いただきありがとうございました！",
        "チャンネル登録お願いいたします",
        "高評価とチャンネル登録をよろしくお願いします",
        "字幕はボランティアによって作成されました",
        "Thanks so much for watching!",
        "Please like and subscribe to my channel.",
        "Subtitles by the Amara.org community",
    ],
)
def test_the_subtitle_credit_family_is_recognised_as_a_class(text: str) -> None:
    assert guards.is_known_hallucination(text)


def test_a_copy_of_a_made_up_segment_is_made_up_too() -> None:
    # White noise read as 「スタッフルーツを使って、」 with unsure words, then said again in the same window:
    # the copy's words are sure (the decoder copying itself), but it repeats what was made up.
    text = ("スタ", "ッフ", "ルー", "ツを", "使っ", "て、")
    first = segment(*text, no_speech_prob=0.69, word_probability=0.23)
    copy = segment(*text, start=4.4, no_speech_prob=0.69, word_probability=0.72)
    assert guards.clean([first, copy], OPTIONS) == []
