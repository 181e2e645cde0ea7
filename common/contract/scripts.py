"""How the contract's Lua scripts are written and run.

A script names the fields it touches through ``$NAME`` placeholders filled from the Python constants that
own those names (:func:`lua`), so a field name is spelled once, in Python, even inside Lua. Each script
is a module-level :class:`Script` of the module that owns its data; none is written twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Template
from typing import Any


def lua(template: str, **names: str) -> str:
    """``template`` with every ``$NAME`` replaced by the Lua string literal of ``names[NAME]``.

    The names are identifiers of this contract (field names, kinds, verdicts): no quoting is needed
    beyond the surrounding single quotes. A placeholder without a name is an error.
    """
    return Template(template).substitute({name: f"'{value}'" for name, value in names.items()})


class Script:
    """One Lua script; runs by its SHA1 (EVALSHA), loading it into the server when it is unknown there."""

    def __init__(self, source: str) -> None:
        self.source = source

    async def __call__(self, redis: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run on ``redis`` (a ``redis.asyncio`` client, or a pipeline: then it is queued)."""
        return await redis.register_script(self.source)(keys=list(keys), args=list(args))


def text(value: Any) -> str:
    """A Redis reply (bytes from a client without ``decode_responses``, or str) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def optional_text(value: Any) -> str | None:
    """Like :func:`text`, keeping a missing value (nil) as None."""
    return None if value is None else text(value)
