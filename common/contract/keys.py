"""Every Redis key and channel name, in one place.

Each key of a session carries the session id as a Redis Cluster hash tag (``{sid}``), so one session's
keys live on one shard and a MULTI/EXEC or script may touch all of them.
"""

from __future__ import annotations

import re

PREFIX = "wsp"

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What a session id may look like: no braces, colons or spaces can reach a key name."""

TRACK_NAME = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})?$")
"""A track is named by its output language, e.g. ``ja`` or ``en``."""

LINK_CODE = re.compile(r"^[a-z0-9]{4,32}$")
"""What the code of a short display link may look like (lower case letters and digits)."""


CLIENT_ID = re.compile(r"^[0-9a-f]{16,64}$")
"""What names a client in a key: a hex digest of its address, never the address itself."""


class InvalidId(ValueError):
    """A session id or track name that must not become part of a key."""


def check_session_id(sid: str) -> str:
    if not SESSION_ID.fullmatch(sid):
        raise InvalidId(f"invalid session id {sid[:80]!r}: use 1-64 letters, digits, '-' or '_'")
    return sid


def check_track(track: str) -> str:
    if not TRACK_NAME.fullmatch(track):
        raise InvalidId(f"invalid track name {track[:40]!r}")
    return track


def _session_key(sid: str, *parts: str) -> str:
    return ":".join((PREFIX, "{" + check_session_id(sid) + "}", *parts))


def session(sid: str) -> str:
    """Hash: the session record (config JSON, status, tokens' hashes, owner)."""
    return _session_key(sid, "session")


def audio(sid: str) -> str:
    """Stream: the session's audio chunks in order, then an end marker."""
    return _session_key(sid, "audio")


def captions(sid: str) -> str:
    """Stream: every final caption of every track, the record that displays replay from."""
    return _session_key(sid, "captions")


def state(sid: str, track: str) -> str:
    """String: the serialised processor state of one track."""
    return _session_key(sid, "state", check_track(track))


def seq(sid: str) -> str:
    """Hash: track -> last final caption sequence number."""
    return _session_key(sid, "seq")


def lease(sid: str) -> str:
    """String with a TTL: the id of the worker that owns the session."""
    return _session_key(sid, "lease")


def epoch(sid: str) -> str:
    """Integer: the fencing token, incremented on every takeover."""
    return _session_key(sid, "epoch")


def live(sid: str) -> str:
    """Pub/sub channel: final and partial caption events as they happen."""
    return _session_key(sid, "live")


def live_pattern() -> str:
    """PSUBSCRIBE pattern matching every session's live channel (monitoring and benchmarks)."""
    return f"{PREFIX}:*:live"


def sid_of_live(channel: str) -> str:
    """The session id in a live channel's name (the inverse of :func:`live`)."""
    return channel.partition("{")[2].partition("}")[0]


def sessions_active() -> str:
    """Sorted set: session ids that want a worker (score: creation time)."""
    return f"{PREFIX}:sessions:active"


def workers() -> str:
    """Sorted set: worker id -> last heartbeat (unix seconds)."""
    return f"{PREFIX}:workers"


def worker(worker_id: str) -> str:
    """Hash: one worker's capacity, owned sessions count, host."""
    return f"{PREFIX}:worker:{worker_id}"


def client_sessions(client_id: str) -> str:
    """Sorted set: the sessions one client created (score: creation time), pruned as they end."""
    if not CLIENT_ID.fullmatch(client_id):
        raise InvalidId(f"invalid client id {client_id[:80]!r}")
    return f"{PREFIX}:client:{client_id}"


def short_link(code: str) -> str:
    """String with a TTL: where the short display link ``/d/<code>`` leads (:mod:`common.contract.links`)."""
    if not LINK_CODE.fullmatch(code):
        raise InvalidId(f"invalid link code {code[:40]!r}")
    return f"{PREFIX}:link:{code}"


def session_keys(sid: str, tracks: list[str]) -> list[str]:
    """The keys of a session's data (given its track names): what expires once the session has ended.

    Not the lease: its worker deletes it.
    """
    return [session(sid), audio(sid), captions(sid), seq(sid), epoch(sid), *(state(sid, t) for t in tracks)]
