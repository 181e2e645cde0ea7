"""Which sessions each client created (``keys.client_sessions``): the only code reading or writing it.

Ingest bounds the sessions one client address may have open at once. A client is named by a digest of
its address (:func:`client_id`), so Redis keeps no address. A session counts while it is in the active
set; the ones that have left it are pruned whenever the client is counted, so nothing else has to
remember to remove them, and the key expires once the client has created nothing for a while.
"""

from __future__ import annotations

import hashlib
from typing import Any

from common.contract import keys
from common.contract.scripts import text

CLIENT_DIGEST_CHARS = 32
"""Hex characters of the digest that names a client."""


def client_id(address: str) -> str:
    """The name of a client address in Redis: a digest, not the address."""
    return hashlib.sha256(address.encode("utf-8", "surrogatepass")).hexdigest()[:CLIENT_DIGEST_CHARS]


async def open_sessions(redis: Any, client: str) -> int:
    """How many sessions ``client`` created that are still open (ended ones are pruned on the way)."""
    name = keys.client_sessions(client)
    sids = [text(sid) for sid in await redis.zrange(name, 0, -1)]
    if not sids:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.zscore(keys.sessions_active(), sid)
        scores = await pipe.execute()
    gone = [sid for sid, score in zip(sids, scores, strict=True) if score is None]
    if gone:
        await redis.zrem(name, *gone)
    return len(sids) - len(gone)


async def remember(redis: Any, client: str, sid: str, created_at: float, keep_ms: int) -> None:
    """Count session ``sid`` as ``client``'s; the record expires ``keep_ms`` after its last session."""
    name = keys.client_sessions(client)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(name, {sid: created_at})
        pipe.pexpire(name, keep_ms)
        await pipe.execute()
