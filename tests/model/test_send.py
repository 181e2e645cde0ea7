"""`wsp send` to captions with the real model: a live source (FFmpeg on the loopback as an RTMP server, the
stream OBS or vMix sends, its audio through a lossy codec) reaches the displays about as well as the same
audio sent from the file, through Redis, ingest, the publisher and a worker running as processes.

The other live kinds (SRT, HLS) are shown to deliver the same audio, whole and in order, by the system tier
(tests/system/test_send.py); what reaches the model from them is that audio.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.send_helpers import ROOT, Stage, needs_ffmpeg
from wsp.bench.live_sources import SendProcess
from wsp.bench.processes import Display, LocalPipeline
from wsp.bench.scoring import error_rate

# -- to captions, with the real model ----------------------------------------------------------------------
EXCERPT_END_S = 20.8
"""The concert sample's first four sentences: they end in a pause (20.45-21.05 s of silence)."""
LIVE_KIND = "rtmp"
CER_MARGIN = 0.06
"""A live source may do this much worse than the same audio sent from the file: its frames arrive at other
moments, so the steps fall elsewhere and a few of the excerpt's ~105 characters come out otherwise."""
CER_BOUND = 0.2
"""What either may reach at worst on this clean excerpt."""
ARTIFACTS = ROOT / "test-artifacts" / "send"


@pytest.fixture(scope="module")
def model_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    """Redis, ingest, the publisher and one worker with the bundled model, as processes."""
    pipeline = LocalPipeline(tmp_path_factory.mktemp("send-model"), None, lease_ttl_s=3.0, worker_capacity=1)
    try:
        pipeline.start(workers=1)
        yield pipeline
    finally:
        pipeline.close()


def captions_of(sender: SendProcess) -> Display:
    """A display of the sender's session, reading in a thread of its own until the session ends."""
    display = Display(sender.printed("captions"))
    thread = threading.Thread(target=asyncio.run, args=(display.run(),), daemon=True)
    thread.start()
    display.thread = thread  # type: ignore[attr-defined]
    return display


@needs_ffmpeg
def test_a_live_stream_reaches_the_displays_about_as_well_as_the_file(
    model_pipeline: LocalPipeline,
    excerpt: object,
    stage: Stage,
) -> None:
    path = excerpt(0.0, EXCERPT_END_S)  # type: ignore[operator]
    reference = "".join(
        s + "。" for s in (ROOT / "common/samples/ja_concert.txt").read_text().split("。")[:4]
    )
    rates: dict[str, float] = {}
    texts: dict[str, str] = {}
    for kind in ("file", LIVE_KIND):
        if kind == "file":
            sender = stage.send(str(path), "--url", model_pipeline.ingest_url)
            display = captions_of(sender)
        else:
            source = stage.source(kind, path)
            source.play()
            sender = stage.send(source.url, "--url", model_pipeline.ingest_url)
            display = captions_of(sender)
            source.wait(EXCERPT_END_S + 20)
            time.sleep(2.0)
            sender.interrupt()
        assert sender.wait(EXCERPT_END_S + 30) == 0, sender.err[-5:]
        display.thread.join(60)  # type: ignore[attr-defined]
        texts[kind] = "".join(e.text for e in display.finals("ja"))
        rates[kind] = round(error_rate(reference, texts[kind], "ja"), 4)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "cer.json").write_text(
        json.dumps({"cer": rates, "captions": texts}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    assert rates["file"] <= CER_BOUND, texts["file"]
    assert rates[LIVE_KIND] <= min(CER_BOUND, rates["file"] + CER_MARGIN), (rates, texts)
