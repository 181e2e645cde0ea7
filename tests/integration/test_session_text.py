"""What a session's title and glossary may hold: bounded per item and in all (the glossary goes into every
prompt), and no control characters (NUL, terminal escapes, bidirectional overrides), each refused with a
clear 422 naming what is wrong (real Redis, ingest under uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.schemas import MAX_GLOSSARY_CHARS, MAX_GLOSSARY_TERM_CHARS, MAX_TITLE_CHARS
from common.settings import Settings
from ingest.app import create_app
from tests.served import Served


@pytest.fixture(scope="module")
def base(redis_url: str) -> Iterator[str]:
    settings = Settings(redis_url=redis_url, client_sessions_per_minute=1000, max_sessions_per_client=1000)
    served = Served(lambda client: create_app(settings, client), redis_url)
    yield served.base
    served.stop()


def create(base: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{base}/v1/sessions", json=body, timeout=10)


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_request"
    return str(body["message"])


def test_plain_text_in_any_script_is_kept(base: str) -> None:
    glossary = ["ドヴォルザーク", "Dvořák", "Bartók Béla", "ÄÖÜ", "مرحبا", "🎻 violin", "Pärt"]
    created = create(base, title="秋の演奏会 — Autumn concert 🎶", glossary=glossary)
    assert created.status_code == 201, created.text
    record = created.json()["record"]
    assert record["glossary"] == glossary and record["title"] == "秋の演奏会 — Autumn concert 🎶"


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("title", "room\x00one", "U+0000"),
        ("title", "\x1b[31mred\x1b[0m", "U+001B"),
        ("title", "two\nlines", "U+000A"),
        ("title", "txt.exe\u202egnp", "U+202E"),
        ("glossary", ["fine", "bad\u2066isolate"], "U+2066"),
        ("glossary", ["\x7fdel"], "U+007F"),
    ],
)
def test_control_characters_are_refused_naming_them(base: str, field: str, value: Any, named: str) -> None:
    message = refusal(create(base, **{field: value}))
    assert field in message and named in message


def test_one_glossary_term_is_a_name_or_a_phrase(base: str) -> None:
    message = refusal(create(base, glossary=["x" * 63_000]))
    assert "glossary" in message and str(MAX_GLOSSARY_TERM_CHARS) in message
    assert create(base, glossary=["x" * MAX_GLOSSARY_TERM_CHARS]).status_code == 201


def test_the_whole_glossary_fits_into_a_prompt(base: str) -> None:
    terms = ["y" * 50] * (MAX_GLOSSARY_CHARS // 50 + 1)
    message = refusal(create(base, glossary=terms))
    assert str(MAX_GLOSSARY_CHARS) in message
    assert create(base, glossary=terms[:-1]).status_code == 201


def test_the_title_is_a_line(base: str) -> None:
    refusal(create(base, title="t" * (MAX_TITLE_CHARS + 1)))
    assert create(base, title="t" * MAX_TITLE_CHARS).status_code == 201
