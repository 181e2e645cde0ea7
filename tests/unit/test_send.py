"""`wsp send`'s parts on their own: the level meter's warnings, the channel choice and the redaction of
secrets from what it prints (the sources themselves are tested in the system and model tiers)."""

from __future__ import annotations

import numpy as np
import pytest

from common.audio import float_to_pcm16
from wsp.send.device import parse_channels
from wsp.send.media import redact
from wsp.send.meter import SILENCE_WARN_S, LevelWatch


# -- the parts on their own --------------------------------------------------------------------------
def test_the_meter_warns_of_silence_and_clipping_once_each_and_when_they_end() -> None:
    watch = LevelWatch()
    speech = float_to_pcm16(0.1 * np.sin(np.linspace(0, 200 * np.pi, 1600)))
    quiet = bytes(3200)
    clipped = float_to_pcm16(np.clip(3 * np.sin(np.linspace(0, 200 * np.pi, 1600)), -1, 1))
    said: list[str] = []
    now = 0.0
    for _ in range(10):
        said += watch.feed(speech, now := now + 0.1)
    assert said == []
    while now < 1.0 + SILENCE_WARN_S + 0.5:
        said += watch.feed(quiet, now := now + 0.1)
    assert len(said) == 1 and said[0].startswith("silence")
    said += watch.feed(speech, now := now + 0.1)
    assert said[-1] == "signal is back"
    said += watch.feed(clipped, now := now + 0.1)
    assert said[-1].startswith("clipping")
    assert watch.reading().clipping and watch.reading().peak_dbfs > -0.1
    for _ in range(30):
        said += watch.feed(speech, now := now + 0.1)
    assert said[-1] == "no more clipping" and len(said) == 4


def test_channels_count_from_one_and_secrets_stay_off_the_screen() -> None:
    assert parse_channels("2") == (2,)
    assert parse_channels("1,2") == parse_channels("1+2") == (1, 2)
    for bad in ("0", "x", "1,1", ""):
        with pytest.raises(Exception, match="--channel"):
            parse_channels(bad)
    shown = redact("srt://enc:9000?mode=caller&passphrase=hunter22secret&streamid=x")
    assert "hunter22" not in shown and "mode=caller" in shown and "streamid=x" in shown
    assert "pw" not in redact("rtmp://user:pw@host/live/key")
    assert redact("/srv/talk.wav") == "/srv/talk.wav"
