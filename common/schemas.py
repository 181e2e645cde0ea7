"""Wire schemas: everything that crosses Redis or a socket, versioned.

Every message a service sends or takes on a socket has its model here, used by the service and by the
clients of ``wsp`` alike: the audio WebSocket (:class:`AudioStart`, :class:`AudioEnd` in; :class:`AudioReady`,
:class:`AudioAck`, :class:`AudioEnded`, :class:`ErrorMessage` out), the captions WebSocket
(:class:`CaptionEvent`, :class:`ErrorMessage`) and the session API's bodies. What Redis stores is written
and read through :mod:`common.contract`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator


class WordModel(BaseModel):
    """A recognised piece of text with absolute start and end seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: float
    end: float
    text: str


class ProcessorState(BaseModel):
    """Everything an online processor needs to resume mid-stream on another worker.

    The audio itself is not here: the resuming worker re-reads it from ``buffer_start_sample`` on.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    buffer_start_sample: int = Field(ge=0)
    received_sample: int = Field(ge=0, description="Audio cursor: samples given to the processor so far.")
    last_step_sample: int = Field(ge=0)
    previous_step_sample: int = Field(0, ge=0, description="Audio heard by the step before the last one.")
    context: str = Field("", description="Committed text before the buffer (the prompt's source).")
    in_buffer: list[WordModel] = Field(default_factory=list, description="Committed words inside the buffer.")
    pending: list[WordModel] = Field(default_factory=list, description="Last hypothesis, not yet agreed.")
    recent: list[WordModel] = Field(default_factory=list, description="Last committed words (overlap check).")
    last_committed_end: float = 0.0
    segment_ends: list[float] = Field(default_factory=list)
    quiet_steps: int = 0


class TrackCheckpoint(BaseModel):
    """What ``keys.state(sid, track)`` holds: a track's processor state and where its audio is.

    A worker that takes the session over resumes the processor from ``processor`` and re-reads the
    audio stream from the entry ``audio_from`` on (the entry that holds ``processor.buffer_start_sample``).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    processor: ProcessorState
    audio_from: str = Field("-", description="Audio stream entry id to re-read from ('-': the first entry).")
    ended: bool = Field(False, description="The track was flushed and its end event committed.")


# --- sessions -----------------------------------------------------------------------------------


class TrackSpec(BaseModel):
    """One output of a session: ``ja`` transcription, ``en`` translation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z]{2,3}(-[a-z0-9]{1,8})?$", description="Track name (its language).")
    task: Literal["transcribe", "translate"] = "transcribe"


MAX_TITLE_CHARS = 200
"""Longest session title: a line on a control page, not a document."""
MAX_GLOSSARY_TERMS = 100
MAX_GLOSSARY_TERM_CHARS = 64
"""A glossary term is a name or a short phrase."""
MAX_GLOSSARY_CHARS = 1000
"""Every term together: the glossary goes into the prompt of every decoding step, and Whisper reads only
the last 224 tokens of a prompt."""

_CONTROL_RANGES = (
    (0x00, 0x1F),  # C0 controls: NUL, ESC (terminal escapes), tab, line breaks
    (0x7F, 0x9F),  # DEL and the C1 controls
    (0x200E, 0x200F),  # left-to-right and right-to-left marks
    (0x2028, 0x2029),  # line and paragraph separators
    (0x202A, 0x202E),  # bidirectional embeddings and overrides
    (0x2066, 0x2069),  # bidirectional isolates
    (0xFFF9, 0xFFFB),  # interlinear annotation controls
)
"""Characters a title or glossary term may not hold: they are invisible, or they change how the text
around them is shown (a right-to-left override turns a log line or a caption around)."""


def control_character(value: str) -> str | None:
    """A sentence naming the first character of ``value`` in :data:`_CONTROL_RANGES`, or None."""
    for position, char in enumerate(value):
        point = ord(char)
        if any(low <= point <= high for low, high in _CONTROL_RANGES):
            return f"holds the control character U+{point:04X} at position {position}; send plain text"
    return None


class SessionCreate(BaseModel):
    """Body of ``POST /v1/sessions``."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field("ja", description="Spoken language (Whisper code).")
    tracks: list[TrackSpec] | None = Field(
        None, min_length=1, max_length=4, description="Default: one track transcribing the spoken language."
    )
    glossary: list[Annotated[str, Field(max_length=MAX_GLOSSARY_TERM_CHARS)]] = Field(
        default_factory=list, max_length=MAX_GLOSSARY_TERMS
    )
    title: str = Field("", max_length=MAX_TITLE_CHARS)

    @field_validator("title")
    @classmethod
    def _plain_title(cls, value: str) -> str:
        problem = control_character(value)
        if problem:
            raise ValueError(f"the title {problem}")
        return value

    @field_validator("glossary")
    @classmethod
    def _plain_glossary(cls, terms: list[str]) -> list[str]:
        for index, term in enumerate(terms):
            problem = control_character(term)
            if problem:
                raise ValueError(f"glossary term {index} {problem}")
        total = sum(len(term.strip()) for term in terms)
        if total > MAX_GLOSSARY_CHARS:
            raise ValueError(
                f"the glossary holds {total} characters; at most {MAX_GLOSSARY_CHARS} fit into the prompt"
            )
        return terms


SessionStatus = Literal["open", "streaming", "ended"]
"""``open`` once created, ``streaming`` once its audio started, ``ended`` once every track was flushed."""


class SessionRecord(BaseModel):
    """What Redis keeps about a session (``keys.session``), minus secrets.

    ``status`` is kept in its own field of the session hash, where the scripts change it; the record
    read back through :func:`common.contract.sessions.load` carries its current value.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    id: str
    title: str = ""
    language: str
    tracks: list[TrackSpec]
    glossary: list[str] = Field(default_factory=list)
    status: SessionStatus = "open"
    created_at: float


class SessionLinks(BaseModel):
    """Where a session's audio goes and where its captions are read (each URL carries a token only in the
    answer to the session's creation)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    audio_url: str
    captions_url: str
    display_url: str


class SessionCreated(SessionLinks):
    """The answer to ``POST /v1/sessions``: the record and, shown this once, the session's two tokens."""

    record: SessionRecord
    audio_token: str
    read_token: str


class DisplayLinksRequest(BaseModel):
    """Body of ``POST /v1/sessions/{sid}/displays``: the session's read token, which the links carry."""

    model_config = ConfigDict(extra="forbid")

    read_token: str = Field(min_length=1, max_length=512)


class DisplayLink(BaseModel):
    """One kind of display of a session (stage screen, one track, phones, OBS): its full link, a short
    link a person can type (``/d/<code>``, leading to the same display) and a QR code of the short link."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    label: str
    url: str
    short_url: str
    qr_svg: str = Field(description="The QR code of short_url, an inline SVG document.")


class DisplayLinks(BaseModel):
    """The answer to ``POST /v1/sessions/{sid}/displays``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    displays: list[DisplayLink]


class SessionState(SessionLinks):
    """The answer to ``GET /v1/sessions/{sid}``: the record and how far its audio has come."""

    record: SessionRecord
    status: SessionStatus
    samples: int
    audio_ended: bool


SessionActivity = Literal["waiting", "running", "queued", "paused", "ending"]
"""What an open session is doing (see :attr:`SessionSummary.activity`)."""


class SessionSummary(BaseModel):
    """One open session in the operator's list (``GET /v1/sessions`` with the API key)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    language: str
    tracks: list[str]
    status: SessionStatus
    activity: SessionActivity
    """``waiting``: no audio yet (no worker place taken); ``running``: a worker runs it; ``queued``: it
    has audio and waits for a worker place; ``paused``: its audio stopped and its worker gave it back;
    ``ending``: its audio has ended and a worker flushes it."""
    worker: str | None
    created_at: float
    samples: int
    idle_s: float
    """Seconds since its newest audio arrived (since its creation if none did)."""


class SessionList(BaseModel):
    """The answer to ``GET /v1/sessions``: every open session, oldest first."""

    model_config = ConfigDict(extra="forbid")

    sessions: list[SessionSummary]


# --- audio WebSocket protocol -------------------------------------------------------------------

AudioPace = Literal["realtime", "fast"]
"""How fast a client sends audio: as it is spoken, or as fast as the service takes it."""


class AudioStart(BaseModel):
    """The opening JSON message on ``WS /v1/sessions/{sid}/audio``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start"]
    sample_rate: Literal[16000] = 16000
    format: Literal["s16le"] = "s16le"
    channels: Literal[1] = 1
    pace: AudioPace = Field("realtime", exclude_if=lambda pace: pace == "realtime")
    """``fast``: the client would send recorded audio faster than real time. The ``ready`` answer then
    says the pace granted; a client granted ``realtime`` keeps real time (see :class:`AudioReady`).
    Left out of the message when it is ``realtime``: a client that does not ask sends what it always did."""


class AudioEnd(BaseModel):
    """The closing JSON message on the audio WebSocket: no more audio will come. Other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["end"]


class _AudioCount(BaseModel):
    """A reply of the audio WebSocket that says how many samples the session holds."""

    model_config = ConfigDict(extra="forbid")

    type: str
    samples: int = Field(ge=0)


class AudioReady(_AudioCount):
    """The answer to the start message: the samples the session already holds (the next frame's first).

    ``pace`` answers a start that asked for one: ``fast`` when the service takes this connection's audio
    as fast as it comes (the API key, or ``WSP_ACCEPT_FAST_AUDIO``), ``realtime`` when it takes at most
    ``WSP_AUDIO_MAX_SPEED`` times real time beyond a burst of ``WSP_AUDIO_BURST_S`` (more is refused:
    ``too_fast``, close 4429). Absent when the start did not ask.
    """

    type: Literal["ready"] = "ready"
    pace: AudioPace | None = Field(None, exclude_if=lambda pace: pace is None)


class AudioAck(_AudioCount):
    """Sent about once per second of accepted audio: the samples the session holds now."""

    type: Literal["ack"] = "ack"


class AudioEnded(_AudioCount):
    """The answer to the end message, before the close: the session's total samples."""

    type: Literal["ended"] = "ended"


class ErrorMessage(BaseModel):
    """A refusal, on every socket and in every HTTP error body: a short code and a sentence for a person."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["error"] = "error"
    code: str
    message: str


AudioReply = Annotated[AudioReady | AudioAck | AudioEnded | ErrorMessage, Field(discriminator="type")]
"""Any message the ingest service sends on the audio WebSocket."""

AUDIO_REPLY: TypeAdapter[AudioReady | AudioAck | AudioEnded | ErrorMessage] = TypeAdapter(AudioReply)
"""Reads an :data:`AudioReply` (``AUDIO_REPLY.validate_json(text)``)."""


# --- captions -----------------------------------------------------------------------------------


class CaptionEvent(BaseModel):
    """A caption as displays receive it.

    ``final`` events carry a per-track ``seq`` (1, 2, 3, ... with no gaps) and never change; ``partial``
    events carry the current unstable tail of a track and replace the previous partial of that track;
    ``skip`` says the worker jumped ahead over ``start``-``end`` to catch up; ``end`` closes the session.

    ``seq`` is the last field: the commit script writes a final's number after the rest of its JSON
    (:func:`common.contract.captions.final_template`).
    """

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    type: Literal["final", "partial", "skip", "end"]
    track: str
    text: str = ""
    start: float | None = None
    end: float | None = None
    emitted_at: float = Field(description="Unix time when the worker committed it.")
    seq: int | None = None


CaptionsMessage = Annotated[CaptionEvent | ErrorMessage, Field(discriminator="type")]
"""Any message the publisher sends on the captions WebSocket."""

CAPTIONS_MESSAGE: TypeAdapter[CaptionEvent | ErrorMessage] = TypeAdapter(CaptionsMessage)
"""Reads a :data:`CaptionsMessage` (``CAPTIONS_MESSAGE.validate_json(text)``)."""
