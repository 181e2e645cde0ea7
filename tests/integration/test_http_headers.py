"""The headers of the services' pages: the microphone page (session controls) may not be framed by another
site, the caption display may (OBS, venue pages); nothing is sniffed; page URLs carry tokens, so no
referrer is sent; the API docs, which load Swagger from a CDN, are off unless asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from common.settings import Settings
from ingest.app import create_app as create_ingest
from publisher.app import create_app as create_publisher
from tests.served import Served


@pytest.fixture
def serve(redis_url: str) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(create: Callable[..., object], **values: object) -> Served:
        settings = Settings(redis_url=redis_url, **values)  # type: ignore[arg-type]
        served = Served(lambda client: create(settings, client), redis_url)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def test_the_microphone_page_may_not_be_framed_or_sniffed(serve: Callable[..., Served]) -> None:
    ingest = serve(create_ingest)
    for path in ("/", "/static/mic.js", "/v1/sessions/nosuch", "/healthz"):
        headers = httpx.get(ingest.base + path).headers
        assert headers["content-security-policy"] == "frame-ancestors 'none'", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path


def test_the_display_page_may_be_framed_but_is_not_sniffed(serve: Callable[..., Served]) -> None:
    publisher = serve(create_publisher)
    for path in ("/v1/sessions/abc/display?token=t", "/static/display.js", "/healthz"):
        headers = httpx.get(publisher.base + path).headers
        assert "x-frame-options" not in headers, path
        assert "frame-ancestors" not in headers.get("content-security-policy", ""), path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path


def test_api_docs_with_third_party_scripts_are_off_unless_asked_for(serve: Callable[..., Served]) -> None:
    for create in (create_ingest, create_publisher):
        quiet = serve(create)
        assert httpx.get(quiet.base + "/docs").status_code == 404
        assert httpx.get(quiet.base + "/redoc").status_code == 404
        documented = serve(create, api_docs=True)
        assert httpx.get(documented.base + "/docs").status_code == 200
