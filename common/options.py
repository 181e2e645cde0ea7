"""The streaming options: how one track of a session is decoded and when text is committed.

Stored with the session (it crosses Redis), so every result can say how it was produced.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Languages Whisper knows; checked early so a typo is a clear error, not a model crash.
WHISPER_LANGUAGES = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "yue",
        "zh",
    ]
)

# Languages written without spaces between words: committed pieces are joined with "".
UNSPACED_LANGUAGES = frozenset({"ja", "zh", "yue", "th", "lo", "my", "km", "bo"})

SPACED_SPEECH_DEFAULTS = {"trim_s": 14.0, "segment_trim_s": 18.0, "max_buffer_s": 24.0, "edge_s": 0.7}
"""Buffer bounds and commit edge for speech in a spaced language (English, ...), where they are not given.

Longer buffers give the model more context, and an English word is often only decided by the words after
it ("and graved" became "engraved" once "in relief" was heard): both hypotheses must have heard 0.7 s after
a word (so the later one, a step later, 1.2 s or more). Japanese, whose steps cost more per second of
audio, has the field defaults (10 / 14 / 20 s, 0.4 s). Both are upper bounds: where steps are slow the
processor shrinks them (``step_budget_s``).
"""


TRANSLATION_DEFAULTS = {"max_tokens_per_s": 8.0}
"""Decoding of a translation, where not given. English says a second of Japanese speech in fewer tokens
than the transcript takes, so fewer tokens per second bound a step: Whisper base, translating, goes round in
loops ("the power of the power of the ...") that would cost a step its whole token budget before the guards
drop them.
"""


class StreamingOptions(BaseModel):
    """Decoding and agreement parameters for one streaming track."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    language: str = Field("ja", description="Spoken language (Whisper code).")
    task: Literal["transcribe", "translate"] = Field("transcribe", description="translate = into English.")
    min_chunk_s: float = Field(0.5, gt=0, le=10, description="New audio needed before the next step.")
    trim_s: float = Field(
        10.0,
        gt=0,
        description="Buffer length above which it is cut at the last committed sentence end "
        "(14 s for speech in spaced languages: SPACED_SPEECH_DEFAULTS; shrunk where steps are slow).",
    )
    segment_trim_s: float = Field(
        14.0, gt=0, description="Buffer length above which a committed segment end is a cut point too."
    )
    max_buffer_s: float = Field(
        20.0, gt=0, le=30, description="Hard bound: the buffer never grows past this (Whisper sees 30 s)."
    )
    edge_s: float = Field(
        0.4,
        ge=0,
        le=3,
        description="Two hypotheses agree on a word only when both heard this much audio after it: the "
        "earlier one ended a step before the later, its last words may be cut short, and a word's reading "
        "depends on what follows it (0.7 s for speech in spaced languages: SPACED_SPEECH_DEFAULTS).",
    )
    last_word_edge_s: float = Field(
        1.0,
        ge=0,
        le=5,
        description="In spaced languages, a hypothesis's last word waits until this much audio follows it "
        "(unless punctuation ends it): it may be the first part of a longer word (letter|press).",
    )
    step_budget_s: float = Field(
        1.5,
        gt=0,
        description="The buffer bounds shrink so that a step over a full buffer takes about this long where "
        "steps are slow (nothing is committed until a step returns); where they are cheap the full "
        "bounds give the model more context.",
    )
    prompt_chars: int = Field(200, ge=0, le=800, description="Committed text fed back as the prompt.")
    glossary: tuple[str, ...] = Field((), description="Names and terms put in every prompt.")
    beam_size: int = Field(1, ge=1, le=10, description="Beam width of each streaming step.")
    max_tokens_per_s: float = Field(
        12.0, gt=0, description="Bound on decoded tokens per second of buffer, so no step runs away."
    )
    window_pad_s: float | None = Field(
        2.0,
        ge=0,
        le=30,
        description="The encoder sees the buffer plus this much padding instead of Whisper's full 30 s "
        "window (about twice as fast on a CPU at the same accuracy); None for the full window.",
    )
    vad: bool = Field(True, description="Skip the model on audio the silero VAD finds no speech in.")
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    no_speech_threshold: float = Field(0.6, gt=0, le=1)
    log_prob_threshold: float = Field(-1.0, description="With no_speech_threshold: a segment is silence.")
    loop_no_speech_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A segment that loops and is this likely to be non-speech is dropped whole, "
        "the words before its loop too (Whisper's loops on noise start with a made-up phrase).",
    )
    unsure_word_probability: float = Field(
        0.4,
        ge=0,
        le=1,
        description="A segment this unsure of its words (their mean probability) that is also probably "
        "not speech (loop_no_speech_threshold) was made up from noise, music or a crowd.",
    )
    compression_ratio_threshold: float = Field(
        2.4, gt=1, description="Segments more repetitive than this (gzip ratio) are never committed."
    )
    word_timestamps: bool = Field(
        True,
        description="Decode word timestamps (an alignment pass): streaming agreement needs them; the "
        "translation of a whole unit does not (its words are spread over its segment), and saves the pass.",
    )
    no_repeat_ngram_size: int = Field(
        0,
        ge=0,
        le=10,
        description="Never decode the same n tokens twice in one step (0: off). Off by default: with "
        "Whisper base a forbidden repeat turns a translation into made-up romanised words.",
    )
    max_repeats: int = Field(
        3, ge=2, description="A piece of text repeated this many times in a row is a loop: cut it."
    )

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in WHISPER_LANGUAGES:
            raise ValueError(f"unknown language {value!r}; use a Whisper language code such as ja or en")
        return value

    @model_validator(mode="before")
    @classmethod
    def _spaced_speech_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            language = str(data.get("language", "ja")).strip().lower()
            if language not in UNSPACED_LANGUAGES:
                data = {**SPACED_SPEECH_DEFAULTS, **data}
            if data.get("task") == "translate":
                data = {**TRANSLATION_DEFAULTS, **data}
        return data

    @model_validator(mode="after")
    def _ordered_bounds(self) -> StreamingOptions:
        if not self.trim_s <= self.segment_trim_s <= self.max_buffer_s:
            raise ValueError("need trim_s <= segment_trim_s <= max_buffer_s")
        return self

    @property
    def output_language(self) -> str:
        """The language of the committed text: English when translating."""
        return "en" if self.task == "translate" else self.language

    @property
    def joiner(self) -> str:
        """How committed pieces are joined: nothing for Japanese and friends, a space otherwise."""
        return "" if self.output_language in UNSPACED_LANGUAGES else " "

    @property
    def source_joiner(self) -> str:
        """How the spoken language's pieces are joined (the transcript a translation is made from)."""
        return "" if self.language in UNSPACED_LANGUAGES else " "
