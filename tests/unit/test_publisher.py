"""The caption publisher against a real Redis server: displays, replay, gap repair, export, back-pressure.

Captions are written by hand exactly as a worker writes them: XADD to ``keys.captions`` (final, skip,
end) and PUBLISH to ``keys.live`` (also partial).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from publisher.replay import BadQuery, parse_request

_connections = ExitStack()


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    with _connections:
        yield


# --- writing captions as a worker does ------------------------------------------------------------


def test_parse_request_defaults_and_per_track_since() -> None:
    assert parse_request(None, None, ["ja", "en"]).tracks == ("ja", "en")
    assert dict(parse_request("en", "7", ["ja", "en"]).since) == {"en": 7}
    assert dict(parse_request(None, "ja:12,en:9", ["ja", "en"]).since) == {"ja": 12, "en": 9}
    assert dict(parse_request(None, "en:9", ["ja", "en"]).since) == {"ja": 0, "en": 9}
    with pytest.raises(BadQuery):
        parse_request("ja,de", None, ["ja", "en"])


# --- export ---------------------------------------------------------------------------------------
