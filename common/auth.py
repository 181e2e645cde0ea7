"""Who may do what with a session: per-session tokens and the deployment-wide API key.

Every session gets two random tokens when it is created: an **audio** token, which may send the session's
audio (and read its captions), and a **read** token, which may only read captions (the display page, the
captions WebSocket, the SRT/VTT exports, the session's status). Redis keeps only their SHA-256, in the
session hash (:func:`common.contract.sessions.token_hashes`), so a copy of the database grants nothing.
When ``WSP_API_KEY`` is set, creating a session needs it (``Authorization: Bearer <key>``), and it is
accepted wherever a token is.

Checks are pure functions over the presented secret and the stored hashes; every comparison is
constant-time (:func:`hmac.compare_digest` over digests of equal length).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote

from common.contract import sessions

TOKEN_BYTES = 24
"""Random bytes per token (32 URL-safe characters)."""

MAX_TOKEN_CHARS = 512
"""A presented token longer than this is refused without being hashed."""

AUDIO_HASH_FIELD = sessions.AUDIO_TOKEN_SHA256
READ_HASH_FIELD = sessions.READ_TOKEN_SHA256
"""The fields of the session hash that hold the tokens' SHA-256 (hex): the keys of the stored mappings."""

UNAUTHORIZED = "unauthorized"
"""The error code of every refusal for a missing or wrong token or key."""
CLOSE_UNAUTHORIZED = 4401
"""WebSocket close code of such a refusal (HTTP: 401)."""


class Scope(Enum):
    """What a request wants to do with a session."""

    AUDIO = "audio"
    """Send the session's audio."""
    READ = "read"
    """Read the session: captions, exports, status."""


@dataclass(frozen=True)
class SessionTokens:
    """The two secrets of a new session, shown once to whoever created it."""

    audio: str
    read: str

    def hashes(self) -> dict[str, str]:
        """The session-hash fields that let the services check the tokens later."""
        return {AUDIO_HASH_FIELD: token_hash(self.audio), READ_HASH_FIELD: token_hash(self.read)}


@dataclass(frozen=True)
class Denied:
    """Why a request was refused, as a sentence for the client (never says whether the session exists)."""

    message: str


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def issue() -> SessionTokens:
    """Fresh, independent tokens for a new session."""
    return SessionTokens(audio=new_token(), read=new_token())


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _same(presented_hash: str, stored: str | None) -> bool:
    if not stored or len(stored) != len(presented_hash):
        return False
    return hmac.compare_digest(presented_hash, stored)


def is_api_key(presented: str | None, api_key: str | None) -> bool:
    """Whether ``presented`` is the deployment's API key (always False when no key is configured)."""
    if not api_key or not presented or len(presented) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(token_hash(presented), token_hash(api_key))


def check(
    presented: str | None, scope: Scope, stored: Mapping[str, str | None], api_key: str | None
) -> Denied | None:
    """None when ``presented`` grants ``scope`` on the session whose hash fields are ``stored``.

    ``stored`` may be empty (no such session): the answer is then the same as for a wrong token, so a
    refusal never tells whether a session exists.
    """
    what = "the audio token" if scope is Scope.AUDIO else "the read token (or the audio token)"
    if not presented:
        return Denied(f"this needs {what} of the session: add ?token=... to the URL")
    if is_api_key(presented, api_key):
        return None
    if len(presented) <= MAX_TOKEN_CHARS:
        digest = token_hash(presented)
        allowed = [AUDIO_HASH_FIELD] if scope is Scope.AUDIO else [READ_HASH_FIELD, AUDIO_HASH_FIELD]
        if any([_same(digest, stored.get(field)) for field in allowed]):  # a list: compare every one
            return None
    return Denied(f"the token is not valid for this: it needs {what} of this session")


def is_read_token(presented: str | None, stored: Mapping[str, str | None]) -> bool:
    """Whether ``presented`` is exactly the session's read token (not the audio token, not the key):
    what a link given to an audience may carry."""
    if not presented or len(presented) > MAX_TOKEN_CHARS:
        return False
    return _same(token_hash(presented), stored.get(READ_HASH_FIELD))


def bearer(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <secret>`` header, if there is one."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def presented_token(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The secret a request carries: ``?token=`` (what browsers can send), else a Bearer header."""
    return query.get("token") or bearer(headers.get("authorization"))


async def authorize(
    presented: str | None,
    scope: Scope,
    api_key: str | None,
    lookup: Callable[[], Awaitable[Mapping[str, str | None]]],
) -> Denied | None:
    """:func:`check`, reading the session's stored hashes with ``lookup()`` only when a token needs them."""
    if is_api_key(presented, api_key) or not presented:
        return check(presented, scope, {}, api_key)
    return check(presented, scope, await lookup(), api_key)


def with_token(url: str, token: str) -> str:
    """``url`` with ``token=`` added to its query."""
    return f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}"
