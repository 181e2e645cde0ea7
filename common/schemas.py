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
