"""A worker asked to stop always stops, even when one of its tasks will not end."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from asr_worker.service import worker
from common.settings import Settings


async def _stubborn(release: asyncio.Event) -> None:
    """A task whose library swallows the cancellation and carries on (until the test lets it go)."""
    while not release.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            continue


def test_a_task_that_ignores_its_cancellation_is_left_behind_and_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(worker, "CANCEL_DEADLINE_S", 0.2)

    async def scenario() -> tuple[bool, bool]:
        polite = asyncio.create_task(asyncio.sleep(60))
        release = asyncio.Event()
        stubborn = asyncio.create_task(_stubborn(release))
        await asyncio.sleep(0)
        await asyncio.wait_for(worker._cancel_all("w-test", [polite, stubborn]), timeout=5)
        done = polite.cancelled(), stubborn.done()
        release.set()
        await stubborn
        return done

    polite_cancelled, stubborn_done = asyncio.run(scenario())
    assert polite_cancelled and not stubborn_done
    assert "did not stop within" in caplog.text and "_stubborn" in caplog.text


class _ClosingLeases:
    """Redis as the client library shows it to a cancelled call: the connection is closed under it and
    the call fails with a connection error instead of the cancellation."""

    async def unowned_sessions(self, owned: object) -> list[object]:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server.") from None
        return []


class _SwallowingLeases:
    """A call that returns through the cancellation (a library that swallowed it)."""

    async def unowned_sessions(self, owned: object) -> list[object]:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        return []


@pytest.mark.parametrize("leases", [_ClosingLeases, _SwallowingLeases], ids=["connection-error", "swallowed"])
def test_a_cancelled_claim_loop_stops_whatever_the_redis_client_makes_of_the_cancellation(
    leases: type,
) -> None:
    # A worker cancelled at shutdown (or killed in a test) must stop claiming sessions: the loop retries
    # connection errors, and must not mistake its own cancellation for one, nor go on when a call
    # swallowed it.
    one = worker.Worker(Settings(worker_id="w-test"), lambda _: None, vad=False)  # type: ignore[arg-type,return-value]

    async def scenario() -> bool:
        loop = asyncio.create_task(one._claim_loop(leases(), lambda _: None))
        await asyncio.sleep(0.05)
        loop.cancel()
        await asyncio.wait({loop}, timeout=2)
        stopped = loop.done()
        if not stopped:
            one.stop()
            await loop
        return stopped and loop.cancelled()

    assert asyncio.run(scenario())
