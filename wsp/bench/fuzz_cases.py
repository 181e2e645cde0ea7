"""Fuzz cases for the ingest protocol, and how an answer is judged. Pure: no sockets, no Redis.

:func:`generate` turns a seed into cases: malformed JSON, binary garbage, frames too large for the protocol
or for the WebSocket layer, messages in the wrong order, audio after the end, injecting session ids,
missing, wrong and borrowed tokens, odd-length frames, wrong sample rates, junk ``POST`` bodies, and a few
well-formed streams as controls. :mod:`wsp.bench.fuzz` sends them to a live service; :func:`judge` says
whether each answer was a clear refusal (a JSON error and a 4xxx close / 4xx status), the expected
success, an unclear answer, or a crash (a 5xx, a 1011 close, no answer at all).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import quote

START = json.dumps({"type": "start", "sample_rate": 16000})
END = json.dumps({"type": "end"})

CLOSE_OK = 1000
CLOSE_TOO_BIG = 1009
URI_TOO_LONG = 414
"""What the WebSocket layer itself answers to a message over its size limit (RFC 6455)."""
CLOSE_SERVER_ERROR = 1011

INJECTED_IDS = (
    "a}:x",
    "{sid}",
    "wsp:{x}:audio",
    "*",
    "a b",
    "x" * 65,
    "セッション",
    "a\x00b",
    "..",
    "a\nb",
    "$(reboot)",
    "'; DROP TABLE x; --",
    "%7B%7D",
)
"""Session ids that must never reach a Redis key (each is URL-quoted into the path)."""


class Verdict(Enum):
    CLEAR = "clear"
    """The expected answer: a JSON error then a 4xxx close / 4xx status, or the success a control expects."""
    CLEAR_CLOSE_ONLY = "clear_close_only"
    """Refused by the protocol layer before the service sees it, with the standard code that names the
    problem and no JSON: a frame over the WebSocket layer's size limit (1009 close), a request line over
    the HTTP layer's limit (414, whose plain-text body depends on the server library's version)."""
    UNEXPECTED_CODE = "unexpected_code"
    """A clear JSON error, but with another code than the case expects."""
    UNCLEAR = "unclear"
    CRASH = "crash"


@dataclass(frozen=True)
class WsCase:
    """One connection to ``/v1/sessions/{sid}/audio``: ``messages`` sent in order, then read to the close."""

    kind: str
    messages: tuple[bytes | str, ...]
    expect: frozenset[int]
    """Close codes that answer the case correctly (1000: the stream must end with ``ended``)."""
    session: str = "fresh"
    """fresh: a new session; ended: a session whose audio has ended; literal: ``path_sid`` as given."""
    path_sid: str = ""
    token: str = "audio"
    """audio | read | key | none | other (another session's audio token) | a literal ``=value``."""
    reconnect: bool = False
    """Drop the connection after the messages, reconnect, check ``ready`` resumes, then end."""


@dataclass(frozen=True)
class HttpCase:
    kind: str
    method: str
    path: str
    """``{sid}`` is replaced by a fresh session's id."""
    body: bytes | None
    auth: str
    """key | none | wrong | read | audio | other: what ``Authorization``/``?token=`` carries."""
    expect: frozenset[int]


Case = WsCase | HttpCase


@dataclass
class Outcome:
    """What the service answered: JSON messages (or raw text), the close code or HTTP status."""

    messages: list[Any] = field(default_factory=list)
    close_code: int | None = None
    status: int | None = None
    failure: str = ""
    """Set when the client could not even get an answer (refused connection, timeout)."""
    note: str = ""
    """Set when the answer was clear but wrong (e.g. a reconnect that did not resume where it should)."""


def _is_error(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("type") == "error"
        and isinstance(message.get("code"), str)
        and isinstance(message.get("message"), str)
        and bool(message["message"].strip())
    )


def judge(case: Case, outcome: Outcome) -> Verdict:
    if outcome.failure:
        return Verdict.CRASH
    if outcome.note:
        return Verdict.UNCLEAR
    if isinstance(case, HttpCase):
        status = outcome.status or 0
        if status >= 500:
            return Verdict.CRASH
        body = outcome.messages[-1] if outcome.messages else None
        clear = 200 <= status < 300 or (400 <= status < 500 and _is_error(body))
        if not clear:
            return Verdict.UNCLEAR
        return Verdict.CLEAR if status in case.expect else Verdict.UNEXPECTED_CODE
    if outcome.close_code is None and outcome.status is not None:  # the handshake itself was refused
        status = outcome.status
        if status >= 500:
            return Verdict.CRASH
        if status == URI_TOO_LONG:
            return Verdict.CLEAR_CLOSE_ONLY if status in case.expect else Verdict.UNEXPECTED_CODE
        if not (400 <= status < 500 and _is_error(outcome.messages[-1] if outcome.messages else None)):
            return Verdict.UNCLEAR
        return Verdict.CLEAR if status in case.expect else Verdict.UNEXPECTED_CODE
    code = outcome.close_code
    if code == CLOSE_SERVER_ERROR or (code is not None and code != CLOSE_TOO_BIG and 1011 <= code < 4000):
        return Verdict.CRASH
    last = outcome.messages[-1] if outcome.messages else None
    if code == CLOSE_OK:
        clear = isinstance(last, dict) and last.get("type") == "ended"
    elif code == CLOSE_TOO_BIG:
        return Verdict.CLEAR_CLOSE_ONLY if CLOSE_TOO_BIG in case.expect else Verdict.UNEXPECTED_CODE
    else:
        clear = code is not None and 4000 <= code < 5000 and _is_error(last)
    if not clear:
        return Verdict.UNCLEAR
    return Verdict.CLEAR if code in case.expect else Verdict.UNEXPECTED_CODE


# -- generation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int
    ws_max_size: int


def _junk_text(rng: random.Random) -> str:
    choices: list[Callable[[], str]] = [
        lambda: "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 200))),
        lambda: START[: rng.randrange(0, len(START))],  # truncated JSON
        lambda: json.dumps(rng.choice([[], [1, 2], 3, None, "start", True, {"type": 5}])),
        lambda: "[" * rng.randrange(100, 5000),  # deep nesting
        lambda: json.dumps({"type": "start", "x": "y" * rng.randrange(1000, 100_000)}),
        lambda: "\ufeff" + START,  # byte-order mark
        lambda: START.replace('"', "'"),
        lambda: json.dumps({"type": "ack"}),
    ]
    return rng.choice(choices)()


def _bad_start(rng: random.Random) -> str:
    changes: list[dict[str, Any]] = [
        {"sample_rate": rng.choice([8000, 22050, 44100, 48000, 0, -16000, 10**12, "16000", 16000.5, None])},
        {"format": rng.choice(["f32le", "mp3", "", 1])},
        {"channels": rng.choice([0, 2, -1, "1"])},
        {"type": rng.choice(["START", "end", "", None, 1])},
        {"surprise": True},
    ]
    body: dict[str, Any] = {"type": "start", "sample_rate": 16000}
    body.update(rng.choice(changes))
    if rng.random() < 0.2:
        body.pop("type")
    return json.dumps(body)


def _pcm(rng: random.Random, samples: int) -> bytes:
    return rng.randbytes(samples * 2)


def _frames(rng: random.Random, most: int = 4) -> tuple[bytes, ...]:
    return tuple(_pcm(rng, rng.randrange(1, 1600)) for _ in range(rng.randrange(0, most)))


def _ws(rng: random.Random, limits: Limits) -> WsCase:
    bad, too_large, conflict, unknown, denied = map(frozenset, ([4400], [4413], [4409], [4404], [4401]))
    kind = rng.choice(WS_KINDS)
    frames = _frames(rng)
    if kind == "start_junk_text":
        return WsCase(kind, (_junk_text(rng),), bad)
    if kind == "start_wrong_fields":
        return WsCase(kind, (_bad_start(rng),), bad)
    if kind == "binary_before_start":
        return WsCase(kind, (rng.randbytes(rng.randrange(0, 4000)), START), bad)
    if kind == "end_before_start":
        return WsCase(kind, (END, *frames), bad)
    if kind == "odd_frame":
        return WsCase(kind, (START, *frames, rng.randbytes(2 * rng.randrange(0, 800) + 1)), bad)
    if kind == "frame_too_large":
        size = 2 * rng.randrange(limits.max_frame_bytes // 2 + 1, limits.ws_max_size // 2)
        return WsCase(kind, (START, *frames, rng.randbytes(size)), too_large)
    if kind == "frame_over_ws_limit":
        size = limits.ws_max_size + 2 * rng.randrange(1, limits.ws_max_size // 2)
        return WsCase(kind, (START, *frames, bytes(size)), frozenset([4413, CLOSE_TOO_BIG]))
    if kind == "text_junk_after_start":
        return WsCase(kind, (START, *frames, _junk_text(rng)), bad)
    if kind == "second_start":
        return WsCase(kind, (START, *frames, START), bad)
    if kind == "audio_after_end":
        return WsCase(kind, (START, *frames, END), conflict, session="ended")
    if kind == "injected_session_id":
        sid = quote(rng.choice(INJECTED_IDS), safe="")
        return WsCase(kind, (START, *frames, END), bad, session="literal", path_sid=sid, token="key")
    if kind == "path_with_slash":
        sid = rng.choice(["a/b", "", "a%2Fb/c"])  # does not match the audio route at all
        return WsCase(kind, (START,), unknown, session="literal", path_sid=sid, token="key")
    if kind == "unknown_session_with_key":
        sid = "nosuch" + rng.randbytes(6).hex()
        return WsCase(kind, (START, END), unknown, session="literal", path_sid=sid, token="key")
    if kind in ("no_token", "wrong_token", "other_session_token", "read_token_sends_audio"):
        token = {"no_token": "none", "other_session_token": "other", "read_token_sends_audio": "read"}.get(
            kind, "=" + rng.choice([rng.randbytes(24).hex(), "x" * 10_000, "トークン", "%00", "a b"])
        )
        first: bytes | str = START if rng.random() < 0.5 else _pcm(rng, 100)
        if len(token) > 8000:  # a URL over the handshake's line limit: refused before the WebSocket opens
            denied = frozenset([URI_TOO_LONG])
        return WsCase(kind, (first, *frames, END), denied, token=token)
    if kind == "garbage_audio_stream":  # any even-length bytes are valid PCM: accepted, then ended
        token = rng.choice(["audio", "key"])
        return WsCase(kind, (START, *frames, b"", _pcm(rng, 3000), END), frozenset([CLOSE_OK]), token=token)
    if kind == "drop_and_reconnect":
        return WsCase(kind, (START, *frames), frozenset([CLOSE_OK]), reconnect=True)
    raise AssertionError(kind)


WS_KINDS = (
    "start_junk_text",
    "start_wrong_fields",
    "binary_before_start",
    "end_before_start",
    "odd_frame",
    "frame_too_large",
    "frame_over_ws_limit",
    "text_junk_after_start",
    "second_start",
    "audio_after_end",
    "injected_session_id",
    "path_with_slash",
    "unknown_session_with_key",
    "no_token",
    "wrong_token",
    "other_session_token",
    "read_token_sends_audio",
    "garbage_audio_stream",
    "drop_and_reconnect",
)


def _junk_body(rng: random.Random, max_body: int) -> tuple[bytes, frozenset[int]]:
    invalid = frozenset([422])
    options: list[Callable[[], tuple[bytes, frozenset[int]]]] = [
        lambda: (b"\xff" + rng.randbytes(rng.randrange(0, 2000)), invalid),
        lambda: ((_junk_text(rng) or "!").encode(), frozenset([413, 422])),  # junk text can be 100 kB
        lambda: (
            json.dumps({"language": rng.choice([5, None, "xx", "", "ja" * 50, ["ja"]])}).encode(),
            invalid,
        ),
        lambda: (
            json.dumps({"tracks": rng.choice([[], [{"name": "EN"}], "ja", [{"name": "ja"}] * 9])}).encode(),
            invalid,
        ),
        lambda: (json.dumps({"title": "t" * rng.randrange(201, 5000)}).encode(), invalid),
        lambda: (json.dumps({"glossary": ["w"] * rng.randrange(101, 300)}).encode(), invalid),
        lambda: (json.dumps({"language": "ja", "owner": "me"}).encode(), invalid),
        lambda: (b"{" * rng.randrange(1000, 20_000), invalid),
        lambda: (b" " * (max_body + rng.randrange(1, 100_000)), frozenset([413])),
    ]
    return rng.choice(options)()


def _http(rng: random.Random, max_body: int) -> HttpCase:
    kind = rng.choice(HTTP_KINDS)
    if kind == "post_junk_body":
        body, expect = _junk_body(rng, max_body)
        return HttpCase(kind, "POST", "/v1/sessions", body, "key", expect)
    if kind in ("post_without_key", "post_wrong_key"):
        body = rng.choice([b'{"language": "ja"}', rng.randbytes(100), b""])
        auth = "none" if kind == "post_without_key" else "wrong"
        return HttpCase(kind, "POST", "/v1/sessions", body, auth, frozenset([401]))
    if kind == "get_injected_id":
        path = "/v1/sessions/" + quote(rng.choice(INJECTED_IDS[:-1]), safe="")
        return HttpCase(kind, "GET", path, None, rng.choice(["key", "none"]), frozenset([400, 404]))
    if kind == "get_without_valid_token":
        auth = rng.choice(["none", "wrong", "other"])
        return HttpCase(kind, "GET", "/v1/sessions/{sid}", None, auth, frozenset([401]))
    if kind == "get_with_read_token":
        return HttpCase(kind, "GET", "/v1/sessions/{sid}", None, "read", frozenset([200]))
    if kind == "wrong_method":
        method, path = rng.choice(
            [("PUT", "/v1/sessions"), ("DELETE", "/v1/sessions/{sid}"), ("GET", "/v1/x")]
        )
        return HttpCase(kind, method, path, None, "key", frozenset([404, 405]))
    raise AssertionError(kind)


HTTP_KINDS = (
    "post_junk_body",
    "post_without_key",
    "post_wrong_key",
    "get_injected_id",
    "get_without_valid_token",
    "get_with_read_token",
    "wrong_method",
)


def generate(count: int, seed: int, limits: Limits, max_body: int) -> list[Case]:
    """``count`` cases, the same ones for the same seed: about three WebSocket cases to one HTTP case."""
    rng = random.Random(seed)
    return [_ws(rng, limits) if rng.random() < 0.75 else _http(rng, max_body) for _ in range(count)]
