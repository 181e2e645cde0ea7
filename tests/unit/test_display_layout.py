"""The display's line layout (publisher/static/layout.js) under node: the rules a reader relies on.

Pure JavaScript with no DOM, so it runs here without a browser; tests/test_screens_browser.py checks the
same rules on screen.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

LAYOUT = Path(__file__).resolve().parents[2] / "publisher" / "static" / "layout.js"

RUNNER = """
const L = require(process.argv[1]);
const input = JSON.parse(process.argv[2]);
const out = {};
if (input.finals) {
  const c = new L.LineComposer(input.language, {});
  if (input.width) c.setWidth(input.width);
  const lines = [];
  for (const f of input.finals) {
    c.add(f, f.at);
    for (const line of c.take(f.at)) lines.push({ ...line, shownAt: f.at });
  }
  for (const line of c.take(input.endAt, true)) lines.push({ ...line, shownAt: input.endAt });
  out.lines = lines;
}
if (input.pair) out.pair = input.pair.lines.map((l) => L.pairIndex(input.pair.sentences, l[0], l[1]));
if (input.pace) {
  const p = new L.Pacer(input.pace.interval, 5000, 600);
  const released = [];
  input.pace.items.forEach((item) => p.push(item, 0));
  for (let now = 0; now <= input.pace.until; now += 100) {
    for (const item of p.release(now)) released.push([item, now]);
  }
  out.released = released;
}
process.stdout.write(JSON.stringify(out));
"""


def layout(**given: Any) -> dict[str, Any]:
    if shutil.which("node") is None:
        pytest.skip("needs node")
    done = subprocess.run(
        ["node", "-e", RUNNER, str(LAYOUT), json.dumps(given)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def finals(*pieces: tuple[str, float, float], every_ms: int = 800) -> list[dict[str, Any]]:
    return [{"text": t, "start": s, "end": e, "at": i * every_ms} for i, (t, s, e) in enumerate(pieces)]


def texts(out: dict[str, Any]) -> list[str]:
    return [line["text"] for line in out["lines"]]


def test_a_sentence_end_closes_a_line_and_its_tail_never_stands_alone() -> None:
    pieces = finals(
        ("本日はご来場いただき", 0.0, 2.0),
        ("まことにありがとうございま", 2.0, 4.0),
        ("す。", 4.0, 4.3),
        ("開演に先立ちましてご案内を申し上げます。", 4.5, 7.5),
    )
    lines = texts(layout(language="ja", finals=pieces, endAt=10_000))
    assert "".join(lines) == "".join(p[0] for p in [(f["text"],) for f in pieces])
    assert all(len(line) <= 20 for line in lines), lines
    assert all(len(line) > 3 for line in lines), lines  # no 「す。」 line
    assert any(line.endswith("ございます。") for line in lines), lines


def test_without_punctuation_lines_break_at_phrase_boundaries_not_inside_words() -> None:
    first = "携帯電話など音の出る機器の電源はお切りになるかマナーモードに設定してください"
    text = first + "演奏中の写真撮影はお断りしております"
    pieces = [
        {"text": text[i : i + 6], "start": i / 5, "end": (i + 6) / 5, "at": i * 200}
        for i in range(0, len(text), 6)
    ]
    lines = texts(layout(language="ja", finals=pieces, endAt=60_000))
    assert "".join(lines) == text
    assert all(6 <= len(line) <= 20 for line in lines), lines
    for line in lines[1:]:
        assert line[0] not in "、。ーぁぃぅぇぉっゃゅょ", lines  # nothing a line may not start with
    assert not any(line.endswith(("ご", "お", "ござ", "くだ")) for line in lines), (
        lines
    )  # never ご|案内, ござ|います


def test_a_pause_between_finals_ends_a_line() -> None:
    pieces = finals(("皆様こんばんは", 0.0, 1.4), ("本日はようこそお越しくださいました", 3.0, 6.0))
    lines = texts(layout(language="ja", finals=pieces, endAt=10_000))
    assert lines[0] == "皆様こんばんは", lines


def test_english_joins_punctuation_and_breaks_before_a_phrase() -> None:
    pieces = finals(
        ("The", 0.0, 0.2),
        (".", 0.2, 0.3),
        ("Everyone 's here tonight and we would like to thank you for coming to the concert", 0.4, 5.0),
    )
    lines = texts(layout(language="en", finals=pieces, endAt=10_000))
    assert lines[0].startswith("The. Everyone's here"), lines
    assert all(len(line) <= 46 for line in lines), lines


def test_lines_never_exceed_what_fits_the_width() -> None:
    pieces = finals(
        ("本日のプログラムは前半がモーツァルトの交響曲第四十番後半がドヴォルザークの交響曲第九番です。", 0, 9)
    )
    lines = texts(layout(language="ja", width=12, finals=pieces, endAt=10_000))
    assert all(len(line) <= 12 for line in lines) and len(lines) >= 4, lines


def test_an_english_line_pairs_with_the_sentence_it_overlaps_most() -> None:
    sentences = [{"start": 0.0, "end": 4.0}, {"start": 4.0, "end": 9.0}, {"start": 9.0, "end": 12.0}]
    lines = [[3.5, 8.0], [0.0, 1.0], [12.5, 13.0], [8.5, 11.0]]
    assert layout(pair={"sentences": sentences, "lines": lines})["pair"] == [1, 0, 2, 2]


def test_the_pacer_releases_one_line_per_interval_and_catches_up_when_far_behind() -> None:
    out = layout(pace={"interval": 1500, "items": ["a", "b", "c"], "until": 4000})
    assert out["released"] == [["a", 0], ["b", 1500], ["c", 3000]]
    late = layout(pace={"interval": 4000, "items": list("abcd"), "until": 9000})["released"]
    assert late[:2] == [["a", 0], ["b", 4000]] and late[2][1] < 8000  # past 5 s waiting: faster
