"""Metrics, health endpoints, the `wsp check` probe and JSON logs, against a real Redis server."""

from __future__ import annotations

import io
import json
import logging

from common.logs import configure_logging

# --- logs --------------------------------------------------------------------------------------


def test_json_logs_carry_the_session_id() -> None:
    out = io.StringIO()
    handler = configure_logging(logging.INFO, "json", stream=out, force=True)
    try:
        logging.getLogger("wsp.test").info("session %s: claimed", "abc123", extra={"session": "abc123"})
        logging.getLogger("wsp.test").warning("no session here")
    finally:
        assert handler is not None
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["session"] == "abc123" and first["message"] == "session abc123: claimed"
    assert first["level"] == "INFO" and first["logger"] == "wsp.test" and "time" in first
    assert "session" not in second and second["level"] == "WARNING"
