"""Wire schemas: everything that crosses Redis or a socket, versioned."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class SessionCreate(BaseModel):
    """Body of ``POST /v1/sessions``."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field("ja", description="Spoken language (Whisper code).")
    tracks: list[TrackSpec] | None = Field(
        None, min_length=1, max_length=4, description="Default: one track transcribing the spoken language."
    )
    glossary: list[str] = Field(default_factory=list, max_length=100)
    title: str = Field("", max_length=200)


class SessionRecord(BaseModel):
    """What Redis keeps about a session (``keys.session``), minus secrets."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    id: str
    title: str = ""
    language: str
    tracks: list[TrackSpec]
    glossary: list[str] = Field(default_factory=list)
    status: Literal["open", "streaming", "ended"] = "open"
    created_at: float


# --- audio WebSocket protocol -------------------------------------------------------------------


class AudioStart(BaseModel):
    """The opening JSON message on ``WS /v1/sessions/{sid}/audio``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start"]
    sample_rate: Literal[16000] = 16000
    format: Literal["s16le"] = "s16le"
    channels: Literal[1] = 1
    pace: Literal["realtime", "fast"] = "realtime"
    """``fast``: the client would send recorded audio faster than real time. The ``ready`` answer then
    says which pace the service grants (``WSP_ACCEPT_FAST_AUDIO``); without it the client keeps real time."""


class AudioEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["end"]


# --- captions -----------------------------------------------------------------------------------


class CaptionEvent(BaseModel):
    """A caption as displays receive it.

    ``final`` events carry a per-track ``seq`` (1, 2, 3, ... with no gaps) and never change; ``partial``
    events carry the current unstable tail of a track and replace the previous partial of that track;
    ``skip`` says the worker jumped ahead over ``start``-``end`` to catch up; ``end`` closes the session.
    """

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    type: Literal["final", "partial", "skip", "end"]
    track: str
    seq: int | None = None
    text: str = ""
    start: float | None = None
    end: float | None = None
    emitted_at: float = Field(description="Unix time when the worker committed it.")
