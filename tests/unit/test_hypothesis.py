"""LocalAgreement-2 on hypotheses: what is committed, when, and what never is."""

from asr_worker.core.hypothesis import HypothesisBuffer
from asr_worker.core.words import Word


def words(*texts: str, start: float = 0.0, step: float = 0.5) -> list[Word]:
    return [Word(start + i * step, start + i * step + 0.4, t) for i, t in enumerate(texts)]


def test_nothing_is_committed_from_a_single_hypothesis() -> None:
    hyp = HypothesisBuffer(spaced=True)
    assert hyp.agree(hyp.insert(words("the", "quick", "brown"))) == []
    assert [w.text for w in hyp.pending] == ["the", "quick", "brown"]


def test_two_agreeing_hypotheses_commit_their_common_prefix() -> None:
    hyp = HypothesisBuffer(spaced=True)
    hyp.agree(hyp.insert(words("the", "quick", "brown")))
    committed = hyp.agree(hyp.insert(words("the", "quick", "brow", "fox")))
    assert [w.text for w in committed] == ["the", "quick"]
    assert [w.text for w in hyp.pending] == ["brow", "fox"]


def test_spaced_languages_never_commit_half_a_word() -> None:
    hyp = HypothesisBuffer(spaced=True)
    hyp.agree(hyp.insert(words("hello", "worlds")))
    committed = hyp.agree(hyp.insert(words("hello", "world")))
    assert [w.text for w in committed] == ["hello"]


def test_japanese_pieces_agree_on_characters_even_when_split_differently() -> None:
    hyp = HypothesisBuffer(spaced=False)
    hyp.agree(hyp.insert(words("こんばんは", "本日")))
    committed = hyp.agree(hyp.insert(words("こん", "ばんは", "本", "日は")))
    assert "".join(w.text for w in committed) == "こんばんは本"


def test_words_repeated_from_the_committed_tail_are_dropped() -> None:
    hyp = HypothesisBuffer(spaced=True)
    hyp.agree(hyp.insert(words("one", "two", "three")))
    hyp.agree(hyp.insert(words("one", "two", "three", "four")))
    assert hyp.last_committed_end == 1.4
    # After a buffer cut, the model hears "three" again, timestamped just before the last commit end.
    again = hyp.insert([Word(1.35, 1.6, "three"), Word(1.6, 2.0, "four"), Word(2.0, 2.4, "five")])
    assert [w.text for w in again] == ["four", "five"]


def test_words_starting_before_the_last_commit_are_dropped() -> None:
    hyp = HypothesisBuffer(spaced=True, last_committed_end=5.0)
    assert [w.text for w in hyp.insert(words("old", "new", start=4.5))] == ["new"]


def test_commit_pending_respects_the_time_limit() -> None:
    hyp = HypothesisBuffer(spaced=True)
    hyp.agree(hyp.insert(words("a", "b", "c")))
    assert [w.text for w in hyp.commit_pending(until=0.95)] == ["a", "b"]
    assert [w.text for w in hyp.pending] == ["c"]
    assert hyp.last_committed_end == 0.9


def test_a_word_after_a_stretched_committed_word_is_kept() -> None:
    # Whisper stretched "ask" over the pause; "not." starts before that stretched end yet is new.
    hyp = HypothesisBuffer(spaced=True)
    hyp.commit_pending()
    hyp.pending = [Word(1.56, 2.08, "Americans"), Word(2.08, 3.72, "ask")]
    hyp.commit_pending()
    again = hyp.insert([Word(2.04, 3.54, "Ask"), Word(3.54, 4.22, "not.")])
    assert [w.text for w in again] == ["not."]


def test_a_committed_word_heard_again_in_another_case_is_not_repeated() -> None:
    hyp = HypothesisBuffer(spaced=True)
    hyp.pending = [Word(0.0, 0.5, "my"), Word(0.5, 1.0, "fellow")]
    hyp.commit_pending()
    again = hyp.insert([Word(0.95, 1.4, "Fellow,"), Word(1.4, 1.9, "Americans")])
    assert [w.text for w in again] == ["Americans"]


def test_agreed_words_at_the_very_end_of_the_audio_wait_for_more() -> None:
    # "there" may be the first half of "therefore", cut by the end of the audio: both hypotheses agree on it.
    hyp = HypothesisBuffer(spaced=True)
    hyp.agree(hyp.insert(words("and", "there")))
    assert [w.text for w in hyp.agree(hyp.insert(words("and", "there")), until=0.8)] == ["and"]
    assert [w.text for w in hyp.pending] == ["there"]
    assert [w.text for w in hyp.agree(hyp.insert(words("and", "therefore")))] == []


def test_the_last_word_heard_waits_until_audio_follows_it() -> None:
    # Two steps both end on "letter" (the audio stopped inside "letterpress"): it is held, not shown
    # as a word, until something is heard after it.
    hyp = HypothesisBuffer(spaced=True)
    hyp.agree(hyp.insert(words("the", "letter")))
    held = hyp.agree(hyp.insert(words("the", "letter")), last_until=0.8)
    assert [w.text for w in held] == ["the"]
    assert [w.text for w in hyp.agree(hyp.insert(words("letterpress", "was", start=0.5)))] == []
    again = hyp.agree(hyp.insert(words("letterpress", "was", start=0.5)), last_until=1.2)
    assert [w.text for w in again] == ["letterpress"]


def test_a_last_word_ended_by_punctuation_or_followed_by_enough_audio_is_committed() -> None:
    hyp = HypothesisBuffer(spaced=True)
    hyp.agree(hyp.insert(words("the", "end.")))
    assert [w.text for w in hyp.agree(hyp.insert(words("the", "end.")), last_until=0.0)] == ["the", "end."]
    hyp = HypothesisBuffer(spaced=True)
    hyp.agree(hyp.insert(words("the", "end")))
    assert [w.text for w in hyp.agree(hyp.insert(words("the", "end")), last_until=1.0)] == ["the", "end"]


def test_japanese_pieces_are_not_held_as_possible_half_words() -> None:
    hyp = HypothesisBuffer(spaced=False)
    hyp.agree(hyp.insert(words("こんばんは", "本日")))
    assert [w.text for w in hyp.agree(hyp.insert(words("こんばんは", "本日")), last_until=0.0)] == [
        "こんばんは",
        "本日",
    ]


def test_japanese_hypotheses_restating_the_committed_text_are_cut_after_it_whatever_their_pieces() -> None:
    hyp = HypothesisBuffer(spaced=False)
    hyp.agree(hyp.insert(words("本日の", "プログ", "ラム")))
    committed = hyp.agree(hyp.insert(words("本日の", "プログ", "ラムは")), until=1.2)
    assert "".join(w.text for w in committed) == "本日のプログ"  # committed in the middle of a word
    # The next hypotheses split the word differently; each continues with the same text, so they agree.
    again = hyp.insert(words("本日の", "プロ", "グラムは", "第"), restated=committed)
    assert "".join(w.text for w in again) == "ラムは第"
    assert "".join(w.text for w in hyp.agree(again)) == "ラムは"
    again = hyp.insert(words("本日", "のプロ", "グ", "ラムは", "第一"), restated=committed)
    assert "".join(w.text for w in again) == "ラムは第一"


def test_a_hypothesis_that_changed_the_committed_text_falls_back_to_times() -> None:
    hyp = HypothesisBuffer(spaced=False, last_committed_end=1.0)
    committed = words("本日の", "プロ")
    again = hyp.insert(words("本日は", "プロ", "グラム", "です"), restated=committed)
    assert [w.text for w in again] == ["グラム", "です"]


def test_words_after_a_stretched_committed_word_are_kept_when_the_hypothesis_restates_it() -> None:
    hyp = HypothesisBuffer(spaced=True)
    stretched = [Word(0.0, 0.4, "The"), Word(0.4, 3.0, "Middle")]  # "Middle" runs over the next words
    hyp.agree(stretched)
    assert hyp.agree(stretched) == stretched and hyp.last_committed_end == 3.0
    heard = [
        Word(0.0, 0.4, "the"),
        Word(0.4, 0.8, "Middle,"),
        *words("Ages", "brought", "calligraphy", start=0.9),
    ]
    assert [w.text for w in hyp.insert(heard, restated=stretched)] == ["Ages", "brought", "calligraphy"]
    assert [w.text for w in hyp.insert(heard)] == []  # by their times they were all heard before


def test_the_last_committed_name_heard_again_in_another_spelling_is_dropped() -> None:
    hyp = HypothesisBuffer(spaced=True)
    said = [Word(0.0, 0.5, "1465,"), Word(0.5, 1.2, "Suéneheim")]
    hyp.agree(said)
    hyp.agree(said)
    again = hyp.insert([Word(1.0, 1.6, "Swayneheim"), Word(1.6, 1.8, "and"), Word(1.8, 2.4, "Panartes")])
    assert [w.text for w in again] == ["and", "Panartes"]
    after = hyp.insert([Word(1.2, 1.9, "Swayneheim"), Word(1.9, 2.1, "and")])  # after it: a new word
    assert [w.text for w in after] == ["Swayneheim", "and"]


def test_the_end_of_the_prompt_said_again_at_the_start_of_a_buffer_is_dropped() -> None:
    hyp = HypothesisBuffer(spaced=False)
    hyp.agree(hyp.insert(words("一つ目は", "議題です。", start=1.0)))
    hyp.agree(hyp.insert(words("一つ目は", "議題です。", "次", start=1.0)))
    assert hyp.last_committed_end == 1.9
    # After a pause the buffer starts at 5.0; the model first says the end of its prompt again (an echo).
    echoed = [Word(5.0, 5.3, "議題です。"), Word(5.4, 5.8, "二つ目は"), Word(5.9, 6.3, "予算")]
    assert [w.text for w in hyp.insert(echoed, buffer_start=5.0)] == ["二つ目は", "予算"]


def test_a_phrase_said_again_well_after_the_start_of_its_buffer_is_kept() -> None:
    hyp = HypothesisBuffer(spaced=False)
    hyp.agree(hyp.insert(words("はい", start=1.0)))
    hyp.agree(hyp.insert(words("はい", "そう", start=1.0)))
    later = [Word(7.0, 7.3, "はい"), Word(7.4, 7.8, "次です")]
    assert [w.text for w in hyp.insert(later, buffer_start=5.0)] == ["はい", "次です"]


def unsure(*texts: str, start: float, probability: float) -> list[Word]:
    return [Word(start + i * 0.5, start + i * 0.5 + 0.4, t, probability) for i, t in enumerate(texts)]


def test_an_utterance_the_model_is_unsure_of_does_not_begin_by_agreement() -> None:
    # A crowd or a song after a pause: two decodes agree on the same guess, and the model is unsure of it.
    hyp = HypothesisBuffer(spaced=False)
    hyp.agree(hyp.insert(words("本日は", "。")))
    guess = unsure("おなし", "など", start=5.0, probability=0.2)
    hyp.agree(hyp.insert(guess))
    assert hyp.agree(hyp.insert([*guess, *unsure("こは", start=6.0, probability=0.2)])) == []
    assert hyp.commit_pending() == []  # nor at the end of the stream
    # Real speech that the model hears clearly begins an utterance as usual.
    clear = unsure("二つ目", "の", "議題", start=8.0, probability=0.9)
    hyp.agree(hyp.insert(clear))
    assert [w.text for w in hyp.agree(hyp.insert([*clear, *unsure("です", start=9.5, probability=0.9)]))] == [
        "二つ目",
        "の",
        "議題",
    ]


def test_unsure_words_inside_an_utterance_are_decided_by_agreement_alone() -> None:
    hyp = HypothesisBuffer(spaced=False)
    hyp.agree(hyp.insert(words("皆さん", "今日は")))
    hyp.agree(hyp.insert(words("皆さん", "今日は", "ミ")))
    assert hyp.last_committed_end == 0.9
    said = [*words("皆さん", "今日は"), *unsure("ミラ", "イ", start=1.0, probability=0.2)]
    hyp.agree(hyp.insert(said))
    assert [w.text for w in hyp.agree(hyp.insert([*said, *words("です", start=2.0)]))] == ["ミラ", "イ"]
