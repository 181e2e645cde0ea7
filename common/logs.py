"""Logging for every entry point, in one place: plain text for a terminal, JSON lines for a log collector.

Code logs through module loggers with %-style arguments; a record about a session carries its id with
``extra={"session": sid}``. With ``WSP_LOG_FORMAT=json`` each record becomes one JSON object per line:
``time``, ``level``, ``logger``, ``message``, ``session`` (when the record has one) and ``exception``
(when it carries one).

No secret reaches a log line: every line is passed through :func:`redact` once formatted, whoever logged
it. uvicorn's access lines carry the whole URL, and browsers can only send a token in the URL
(``?token=``), so without this the logs would hold every token Redis keeps only the hashes of.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

REDACTED = "***"
SECRET_PARAMS = ("token", "read", "key", "api_key", "access_token", "password", "secret")
"""Query parameters that carry secrets (the microphone page's address keeps the read token as ``read=``)."""
_SECRETS = (
    (
        re.compile(r"([?&](?:" + "|".join(SECRET_PARAMS) + r")=)[^&\s\"'#]*", re.IGNORECASE),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(r"(\bBearer\s+)[^\s\"',]+", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    (
        re.compile(r"(\b(?:rediss?|redis\+\w+)://[^:/@\s]*:)[^@\s]+(@)", re.IGNORECASE),
        rf"\g<1>{REDACTED}\g<2>",
    ),
    (re.compile(r"(\"(?:audio_token|read_token|api_key)\"\s*:\s*\")[^\"]*"), rf"\g<1>{REDACTED}"),
)
"""Where secrets show up in text: URL parameters, Authorization headers, a password in a Redis URL, a
session's tokens in a JSON body."""


def redact(text: str) -> str:
    """``text`` with every secret it carries replaced by ``***``."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A text formatter whose lines carry no secret."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


SESSION_ATTRS = ("session", "sid")
"""Record attributes that name the session a record is about (``session`` is the one to use)."""


def session_of(record: logging.LogRecord) -> str | None:
    for name in SESSION_ATTRS:
        value = getattr(record, name, None)
        if value:
            return str(value)
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, carrying no secret."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        session = session_of(record)
        if session is not None:
            entry["session"] = session
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return redact(json.dumps(entry, ensure_ascii=False))


class _Handler(logging.StreamHandler):
    """The root handler this module installs (recognised, so configuring again replaces it)."""


def configure_logging(
    level: str | int, fmt: LogFormat = "text", stream: TextIO | None = None, force: bool = False
) -> logging.Handler | None:
    """Send every record at ``level`` or above to ``stream`` (stderr) as text or JSON lines.

    Safe to call again (the entry point first, then once its settings are known): the handler this
    function installed before is replaced. Like :func:`logging.basicConfig`, it adds no handler to a root
    logger that someone else has configured (a test runner's capture, an embedding application) unless
    ``force`` is given; the level is set either way. Returns the handler it installed, if any.
    """
    root = logging.getLogger()
    root.setLevel(level)
    ours = [h for h in root.handlers if isinstance(h, _Handler)]
    if not force and len(ours) != len(root.handlers):
        return None
    for old in ours:
        root.removeHandler(old)
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    return handler
