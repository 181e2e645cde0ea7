"""The display links of a session as the microphone page offers them: one per kind of screen a venue
uses, each with its full link, a short link a person can type on a phone and a QR code of it.

The links are built on the publisher's public address (``WSP_PUBLIC_URL``, else the address the page
was opened on with the publisher's port) and carry the session's read token, never the audio token.
A short link's code is derived from the read token and the kind of display, so asking again (a reload)
gives the same codes; its record (:mod:`common.contract.links`) lives as long as a session may.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import segno

from common.contract import links
from common.schemas import DisplayLink, SessionRecord
from common.settings import Settings

log = logging.getLogger(__name__)

CODE_CHARS = 8
"""Characters of a short link's code (40 bits: out of reach of guessing over HTTP)."""

KEYED_PAGE_S = 30 * 24 * 3600.0
"""How long a short link lives when sessions never idle out (``WSP_SESSION_IDLE_S=0``)."""


@dataclass(frozen=True)
class DisplayKind:
    """A kind of screen: what the microphone page calls it, and the display options it opens with."""

    kind: str
    label: str
    options: dict[str, str]


def display_kinds(record: SessionRecord) -> list[DisplayKind]:
    """The stage screen (every track), each track alone when there are several, phones, OBS."""
    names = [t.name for t in record.tracks]
    kinds = [DisplayKind("stage", "Stage screen" + (": " + " + ".join(names) if len(names) > 1 else ""), {})]
    if len(names) > 1:
        kinds += [DisplayKind(f"stage-{n}", f"Stage screen: {n} only", {"tracks": n}) for n in names]
    phone = {"mode": "phone", "theme": "light"}
    kinds.append(DisplayKind("phone", "Phones in the audience (scrolls back)", phone))
    kinds.append(
        DisplayKind(
            "obs",
            "OBS browser source (transparent, outlined)",
            {"theme": "transparent", "lines": "2", "indicator": "0", "controls": "0"},
        )
    )
    return kinds


def short_code(read_token: str, sid: str, kind: str) -> str:
    """Eight lower-case letters and digits, the same for the same session, token and kind."""
    digest = hmac.new(read_token.encode(), f"{sid}:{kind}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:CODE_CHARS]


def readable(code: str) -> str:
    """``k7m4qx9p`` as a person reads it aloud or types it: ``k7m4-qx9p`` (the dash is optional)."""
    return f"{code[:4]}-{code[4:]}"


def link_ttl_s(settings: Settings) -> float:
    """A short link lives as long as its session may: the longest idle wait and audio, then retention."""
    idle = settings.session_idle_s or KEYED_PAGE_S
    return idle + settings.max_session_s + settings.session_retention_s


def qr_svg(url: str) -> str:
    """A QR code of ``url`` as an inline SVG (scales with its box; dark on white, quiet zone included)."""
    code = segno.make(url, error="m")
    svg: str = code.svg_inline(scale=1, border=3, omitsize=True, dark="#000", light="#fff", title=url)
    return svg


async def build_links(
    redis: Any, settings: Settings, base: str, record: SessionRecord, read_token: str
) -> list[DisplayLink]:
    """Every display link of the session on the publisher at ``base``; stores their short links."""
    out = []
    for kind in display_kinds(record):
        query = urlencode({"token": read_token, **kind.options})
        code = short_code(read_token, record.id, kind.kind)
        await links.save(redis, code, links.LinkTarget(record.id, query), link_ttl_s(settings))
        short = f"{base}/d/{readable(code)}"
        out.append(
            DisplayLink(
                kind=kind.kind,
                label=kind.label,
                url=f"{base}/v1/sessions/{record.id}/display?{query}",
                short_url=short,
                qr_svg=qr_svg(short),
            )
        )
    return out
