"""What a venue needs around its screens: links that open on other devices (public address, short links,
QR codes), the session record a display shows its title from, `wsp up` open to the local network and
keeping its sessions across a restart, and session ids and tokens that begin with '-'."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno

from common.redis_conn import DataDirInUse, EmbeddedRedis
from common.settings import Settings
from ingest.app import create_app as create_ingest
from ingest.displays import qr_svg, short_code
from publisher.app import create_app as create_publisher
from tests.served import Served, free_port


@pytest.fixture
def services(redis_url: str) -> Iterator[tuple[Served, Served]]:
    """Ingest and the publisher, the publisher's public address set to where it really listens."""
    port = free_port()
    settings = Settings(redis_url=redis_url, publisher_port=port, public_url=f"http://127.0.0.1:{port}")
    publisher = Served(lambda client: create_publisher(settings, client), redis_url, port=port)
    ingest = Served(lambda client: create_ingest(settings, client), redis_url)
    try:
        yield ingest, publisher
    finally:
        ingest.stop()
        publisher.stop()


def _create(ingest: Served, **body: Any) -> dict[str, Any]:
    created = httpx.post(ingest.base + "/v1/sessions", json={"language": "ja", **body})
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_display_links_are_built_on_the_public_address(services: tuple[Served, Served]) -> None:
    ingest, publisher = services
    body = _create(ingest)
    assert body["display_url"].startswith(publisher.base + f"/v1/sessions/{body['id']}/display?token=")
    assert body["captions_url"].startswith(publisher.base.replace("http", "ws") + "/v1/sessions/")


def test_each_display_gets_a_short_link_and_a_qr_code_only_for_the_read_token(
    services: tuple[Served, Served],
) -> None:
    ingest, publisher = services
    body = _create(ingest, tracks=[{"name": "ja"}, {"name": "en", "task": "translate"}], title="秋の演奏会")
    url = f"{ingest.base}/v1/sessions/{body['id']}/displays"
    for wrong in (body["audio_token"], "not-a-token"):
        refused = httpx.post(url, json={"read_token": wrong})
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    answer = httpx.post(url, json={"read_token": body["read_token"]})
    assert answer.status_code == 200, answer.text
    displays = answer.json()["displays"]
    assert [d["kind"] for d in displays] == ["stage", "stage-ja", "stage-en", "phone", "obs"]
    assert len({d["short_url"] for d in displays}) == len(displays)  # each one readable apart
    for display in displays:
        code = short_code(body["read_token"], body["id"], display["kind"])
        assert display["short_url"] == f"{publisher.base}/d/{code[:4]}-{code[4:]}"
        assert display["url"].startswith(f"{publisher.base}/v1/sessions/{body['id']}/display?token=")
        assert body["audio_token"] not in display["url"]
        assert display["qr_svg"] == qr_svg(display["short_url"])
        assert display["qr_svg"].startswith("<svg") and 'viewBox="0 0' in display["qr_svg"]
        # a short link leads to its display, typed in any case, with or without the dash
        for typed in (display["short_url"], f"{publisher.base}/d/{code.upper()}"):
            landed = httpx.get(typed, follow_redirects=False)
            assert landed.status_code == 302
            assert landed.headers["location"] == display["url"].removeprefix(publisher.base)
        assert httpx.get(f"{publisher.base}/d/{code}", follow_redirects=True).status_code == 200
    phone = next(d for d in displays if d["kind"] == "phone")
    assert "mode=phone" in phone["url"]
    obs = next(d for d in displays if d["kind"] == "obs")
    assert "theme=transparent" in obs["url"] and "controls=0" in obs["url"]
    # asking again (a reload of the page) gives the same links
    again = httpx.post(url, json={"read_token": body["read_token"]}).json()["displays"]
    assert [d["short_url"] for d in again] == [d["short_url"] for d in displays]
    unknown = httpx.get(f"{publisher.base}/d/abcd-efgh")
    assert unknown.status_code == 404 and "not known" in unknown.text
    version = segno.make(displays[0]["short_url"], error="m").version
    assert isinstance(version, int) and version <= 4  # a small code, easy to scan


def test_a_display_reads_the_session_title_with_its_token(services: tuple[Served, Served]) -> None:
    ingest, publisher = services
    body = _create(ingest, title="秋の定期演奏会", glossary=["ドヴォルザーク"])
    url = f"{publisher.base}/v1/sessions/{body['id']}/record"
    record = httpx.get(url, params={"token": body["read_token"]})
    assert record.status_code == 200
    assert record.json()["title"] == "秋の定期演奏会" and "glossary" not in record.json()
    refused = httpx.get(url, params={"token": "nope"})
    assert refused.status_code == 401


def test_one_embedded_redis_per_data_folder(tmp_path: Path) -> None:
    first = EmbeddedRedis(directory=tmp_path, persistent=True, fsync="everysec")
    try:
        with pytest.raises(DataDirInUse, match="WSP_REDIS_DATA_DIR"):
            EmbeddedRedis(directory=tmp_path, persistent=True)
    finally:
        first.close()
    EmbeddedRedis(directory=tmp_path, persistent=True).close()  # free again once the first stopped
