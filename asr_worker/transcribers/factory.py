"""Which ASR engine a worker runs: the Whisper model, or a scripted fake for tests without the model."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from asr_worker.core.seam import Transcriber
from asr_worker.core.words import Word
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.errors import ConfigError
from common.schemas import WordModel
from common.settings import Settings

_SCRIPT = TypeAdapter(list[WordModel])


def make_transcriber(settings: Settings) -> Transcriber:
    """The engine ``settings.engine`` names (blocking: loading the model takes seconds)."""
    if settings.engine == "scripted":
        path = settings.script_file
        translation = path.with_suffix(".translation.json") if path is not None else None
        heard = ScriptedTranscriber(load_script(path))
        if translation is not None and translation.is_file():
            heard.translation = load_script(translation)
        return heard
    from asr_worker.transcribers.whisper import WhisperTranscriber

    return WhisperTranscriber.load(settings)


def uses_vad(settings: Settings) -> bool:
    """Voice activity detection runs with the real model; the scripted engine hears words in silence."""
    return settings.engine != "scripted"


def load_script(path: Path | None) -> list[Word]:
    """The words a scripted engine hears: a JSON list of ``{"start": s, "end": s, "text": "..."}``.

    What it hears when asked to translate may sit beside it, in ``NAME.translation.json`` (same format).
    """
    if path is None:
        raise ConfigError("WSP_ENGINE=scripted needs WSP_SCRIPT_FILE (a JSON list of {start, end, text})")
    try:
        words = _SCRIPT.validate_json(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read WSP_SCRIPT_FILE {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise ConfigError(f"WSP_SCRIPT_FILE {path} is not a list of {{start, end, text}}: {exc}") from exc
    return [Word(w.start, w.end, w.text) for w in words]


def write_script(path: Path, words: list[Word]) -> None:
    """Save words in the format :func:`load_script` reads."""
    rows = [{"start": w.start, "end": w.end, "text": w.text} for w in words]
    Path(path).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
