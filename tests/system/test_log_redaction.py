"""No secret in any log line: a full run of every service as a real process (embedded Redis, ingest,
publisher, a worker on the scripted engine, JSON logs as compose writes them), every endpoint that takes a
token used with one, then every log file searched for the tokens and the API key."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx

from asr_worker.transcribers.factory import write_script
from asr_worker.transcribers.scripted import ScriptedTranscriber
from wsp.bench.processes import Display, LocalPipeline, audio_for, stream
from wsp.bench.venue import visit_every_door

WORDS = ScriptedTranscriber.from_text("one two three four five.")


def test_no_log_line_of_a_full_run_carries_a_token_or_the_key(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(24)
    script = tmp_path / "script.json"
    write_script(script, WORDS)
    env = {"WSP_API_KEY": key, "WSP_LOG_FORMAT": "json"}
    with LocalPipeline(tmp_path, script, lease_ttl_s=1.5, worker_capacity=2, extra_env=env) as pipeline:
        pipeline.start(workers=1)
        issued = asyncio.run(session_through_every_door(pipeline, key))
    logs = {path.name: path.read_text(errors="replace") for path in tmp_path.glob("*.log")}
    assert {"ingest.log", "publisher.log", "worker-1.log"} <= set(logs)
    for secret in [key, *issued]:
        hits = [name for name, text in logs.items() if secret in text]
        assert not hits, f"a secret is in {hits}"
    assert "token=***" in logs["ingest.log"] and "token=***" in logs["publisher.log"]  # access lines were on


async def session_through_every_door(pipeline: LocalPipeline, key: str) -> list[str]:
    """Create a session, stream it, watch it, export it, with a token on every URL; the secrets used."""
    keyed = {"Authorization": f"Bearer {key}"}
    ingest, publisher = pipeline.ingest_url, pipeline.publisher_url
    async with httpx.AsyncClient(timeout=10) as http:
        created = (await http.post(f"{ingest}/v1/sessions", json={"language": "en"}, headers=keyed)).json()
        sid, audio_token, read_token = created["id"], created["audio_token"], created["read_token"]
        listed = (await http.get(f"{ingest}/v1/sessions", headers=keyed)).json()
        assert [s["id"] for s in listed["sessions"]] == [sid]
        display = Display(created["captions_url"])
        watching = asyncio.create_task(display.run())
        await asyncio.wait_for(display.connected.wait(), 10)
        await stream(created["audio_url"], audio_for(WORDS))
        await asyncio.wait_for(watching, 30)
        assert display.finals(), "the display got no caption"
        await visit_every_door(pipeline, created)  # the pages and exports, with the read token
        wrong = secrets.token_urlsafe(24)
        for token in (key, wrong):  # the key where a token goes, and a token that opens nothing
            await http.get(f"{ingest}/v1/sessions/{sid}", params={"token": token})
            await http.get(f"{publisher}/v1/sessions/{sid}/captions.vtt", params={"token": token})
    return [audio_token, read_token, wrong]
