"""What a venue needs around its screens: links that open on other devices (public address, short links,
QR codes), the session record a display shows its title from, `wsp up` open to the local network and
keeping its sessions across a restart, and session ids and tokens that begin with '-'."""

from __future__ import annotations

import asyncio

import fakeredis
import httpx
import pytest
from fastapi import FastAPI

from common.contract import links
from common.errors import ConfigError
from common.schemas import SessionRecord, TrackSpec
from common.settings import Settings, load_settings
from ingest.displays import build_links
from publisher.pages import add_short_links
from tests.waiting import async_wait_until
from wsp.cli import SECRET_VALUED, build_parser, glue_dashed_values, main
from wsp.network import exposure_notes, for_venue, is_loopback, lan_address


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


# -- short links (fakeredis: Redis semantics without a server) ------------------------------------
def test_a_short_link_opens_its_display_until_it_expires() -> None:
    base = "http://192.0.2.10:8001"
    record = SessionRecord(
        id="s-talk", language="ja", tracks=[TrackSpec(name="ja"), TrackSpec(name="en")], created_at=0.0
    )

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        app = FastAPI()
        add_short_links(app, redis)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base) as phone:
            made = await build_links(redis, Settings(), base, record, "read-token")
            assert [
                link.short_url for link in await build_links(redis, Settings(), base, record, "read-token")
            ] == [link.short_url for link in made]  # a reload of the microphone page offers the same codes
            for link in made:
                code = link.short_url.rsplit("/", 1)[1]
                typed = f"/d/{code.upper()}"  # read aloud, typed in capitals
                opened = await phone.get(typed)
                assert opened.status_code == 302, typed
                assert base + opened.headers["location"] == link.url
            assert (await phone.get("/d/zzzz-zzzz")).status_code == 404

            await links.save(redis, "brief0001", links.LinkTarget("s-talk", "token=read-token"), ttl_s=0.05)
            assert (await phone.get("/d/brief-0001")).status_code == 302

            async def gone() -> bool:
                return (await phone.get("/d/brief-0001")).status_code == 404

            await async_wait_until(gone, 5, "the short link to expire")
        await redis.aclose()

    asyncio.run(scenario())
