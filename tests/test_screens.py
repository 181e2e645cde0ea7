"""What a venue needs around its screens: links that open on other devices (public address, short links,
QR codes), the session record a display shows its title from, `wsp up` open to the local network and
keeping its sessions across a restart, and session ids and tokens that begin with '-'."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import segno
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE, float_to_pcm16
from common.errors import ConfigError
from common.redis_conn import DataDirInUse, EmbeddedRedis
from common.settings import Settings, load_settings
from ingest.app import create_app as create_ingest
from ingest.displays import qr_svg, short_code
from publisher.app import create_app as create_publisher
from tests.served import Served, free_port
from tests.test_stack import WORDS, scripted_env  # noqa: F401 (a fixture: wsp up on the scripted engine)
from wsp.cli import SECRET_VALUED, build_parser, glue_dashed_values, main
from wsp.client import push_audio
from wsp.network import exposure_notes, for_venue, is_loopback, lan_address

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.redis
def test_display_links_are_built_on_the_public_address(services: tuple[Served, Served]) -> None:
    ingest, publisher = services
    body = _create(ingest)
    assert body["display_url"].startswith(publisher.base + f"/v1/sessions/{body['id']}/display?token=")
    assert body["captions_url"].startswith(publisher.base.replace("http", "ws") + "/v1/sessions/")


@pytest.mark.redis
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


@pytest.mark.redis
def test_a_display_reads_the_session_title_with_its_token(services: tuple[Served, Served]) -> None:
    ingest, publisher = services
    body = _create(ingest, title="秋の定期演奏会", glossary=["ドヴォルザーク"])
    url = f"{publisher.base}/v1/sessions/{body['id']}/record"
    record = httpx.get(url, params={"token": body["read_token"]})
    assert record.status_code == 200
    assert record.json()["title"] == "秋の定期演奏会" and "glossary" not in record.json()
    refused = httpx.get(url, params={"token": "nope"})
    assert refused.status_code == 401


def test_wsp_up_opens_the_publisher_to_the_local_network_and_says_so() -> None:
    settings = Settings(publisher_port=8001)
    venue = for_venue(settings, local=False, address="192.168.1.20")
    assert venue.publisher_listen_host() == "0.0.0.0"
    assert venue.public_url == "http://192.168.1.20:8001"
    assert venue.host == "127.0.0.1"  # ingest stays on this machine
    notes = " ".join(exposure_notes(venue))
    assert "read token" in notes and "ingest stays on 127.0.0.1" in notes
    # told otherwise, it keeps out of the way
    assert for_venue(settings, local=True, address="192.168.1.20").publisher_listen_host() == "127.0.0.1"
    assert for_venue(settings, local=False, address=None).public_url is None
    chosen = Settings(public_url="https://captions.example.org/")
    assert for_venue(chosen, local=False, address="192.168.1.20").public_url == "https://captions.example.org"
    assert exposure_notes(Settings()) == []
    found = lan_address()
    assert found is None or not is_loopback(found)


def test_ingest_open_to_the_network_without_a_key_is_called_out() -> None:
    open_ingest = Settings(host="0.0.0.0")
    assert any("without WSP_API_KEY" in note for note in exposure_notes(open_ingest))
    keyed = Settings(host="0.0.0.0", api_key="k" * 20)
    assert not any("without WSP_API_KEY" in note for note in exposure_notes(keyed))


@pytest.mark.parametrize("bad", ["captions.example.org", "ftp://x", "http://x/?a=1", "http://"])
def test_a_public_url_that_is_not_one_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="WSP_PUBLIC_URL"):
        load_settings(public_url=bad)


def test_ids_and_tokens_may_begin_with_a_dash() -> None:
    parser = build_parser()
    options = {o for a in parser._actions for o in a.option_strings} | set(SECRET_VALUED) | {"--url"}
    argv = ["simulate", "x.wav", "--url", "http://h:1", "--session", "-Ab_c", "--token", "--x-Y"]
    args = parser.parse_args(glue_dashed_values(argv, options))
    assert (args.session, args.token) == ("-Ab_c", "--x-Y")
    # a forgotten value is still an error, not a token named like an option
    assert glue_dashed_values(["--token", "--url", "u"], options) == ["--token", "--url", "u"]


def test_the_wsp_command_takes_a_dashed_token(capsys: pytest.CaptureFixture[str]) -> None:
    # it gets as far as reading the file: the token was taken as the token
    argv = ["simulate", "/nonexistent.wav", "--url", "http://127.0.0.1:9", "--session", "s", "--token", "-t"]
    code = main(argv)
    assert code == 2 and "expected one argument" not in capsys.readouterr().err


@pytest.mark.redis
def test_one_embedded_redis_per_data_folder(tmp_path: Path) -> None:
    first = EmbeddedRedis(directory=tmp_path, persistent=True, fsync="everysec")
    try:
        with pytest.raises(DataDirInUse, match="WSP_REDIS_DATA_DIR"):
            EmbeddedRedis(directory=tmp_path, persistent=True)
    finally:
        first.close()
    EmbeddedRedis(directory=tmp_path, persistent=True).close()  # free again once the first stopped


class Up:
    """``wsp up`` as a process (scripted engine), started and stopped like an operator would."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.ingest = f"http://127.0.0.1:{env['WSP_INGEST_PORT']}"
        self.publisher = f"http://127.0.0.1:{env['WSP_PUBLISHER_PORT']}"

    def start(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wsp.cli", "up"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        banner = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            banner.append(line)
            if not line or "Ctrl-C" in line:
                break
        return "".join(banner)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc = None


def _finals(captions_url: str, expected: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    import json

    finals: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    with connect(captions_url, open_timeout=10) as ws:
        while time.monotonic() < deadline and len(finals) < expected:
            try:
                event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            except (TimeoutError, ConnectionClosed):
                break
            if event["type"] == "final":
                finals.append(event)
    return finals


@pytest.mark.redis
def test_sessions_survive_a_restart_of_wsp_up(scripted_env: dict[str, str]) -> None:  # noqa: F811
    env = scripted_env
    words = ScriptedTranscriber.from_text(WORDS)
    up = Up(env)
    pcm = float_to_pcm16(np.zeros(round((words[-1].end + 1.5) * SAMPLE_RATE), dtype=np.float32))
    half = len(pcm) // 2 // 3200 * 3200
    try:
        banner = up.start()
        assert env["WSP_REDIS_DATA_DIR"] in banner and "survive a restart" in banner
        session = httpx.post(up.ingest + "/v1/sessions", json={"language": "ja"}).json()
        # half the audio, and the connection drops (the laptop's wsp up is stopped mid-talk)
        with connect(session["audio_url"]) as ws:
            ws.send('{"type": "start", "sample_rate": 16000}')
            ws.recv(timeout=10)
            for at in range(0, half, 3200):  # at the pace of speech: agreement needs audio after a word
                ws.send(pcm[at : at + 3200])
                time.sleep(0.1)
        before = _finals(session["captions_url"], 2)
        assert before, "no caption before the restart"
        up.stop()

        up.start()
        url = f"{up.ingest}/v1/sessions/{session['id']}"
        state = httpx.get(url, params={"token": session["audio_token"]})
        assert state.status_code == 200, state.text  # the token still opens the session
        assert state.json()["samples"] == half // 2
        pushed = asyncio.run(push_audio(session["audio_url"], pcm[half:], 6400, realtime=False))
        assert pushed.samples == len(pcm) // 2  # the audio went on where it stood
        after = _finals(session["captions_url"], 99, timeout_s=20)
        text = "".join(f["text"] for f in after)
        assert [f["seq"] for f in after] == list(range(1, len(after) + 1))
        assert text == "".join(WORDS.split())  # nothing lost or repeated across the restart
    finally:
        up.stop()
