"""Shielded work outlives a cancelled request, and its failure is neither lost nor misreported."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from gateway.shielded import shielded
from gateway.store import StoreUnavailable


async def _cancel_then_fail(failure: Exception, caplog: pytest.LogCaptureFixture) -> list[str]:
    go, finished = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        try:
            await go.wait()
            raise failure
        finally:
            finished.set()

    with caplog.at_level(logging.ERROR):
        request = asyncio.ensure_future(shielded(work()))
        await asyncio.sleep(0)  # the request is now awaiting the work
        request.cancel()  # the client hung up
        with pytest.raises(asyncio.CancelledError):
            await request
        go.set()
        await finished.wait()
        await asyncio.sleep(0)  # the work's done callbacks run
        gc.collect()  # an unretrieved task failure is reported when the task is collected
    return [r.getMessage() for r in caplog.records]


async def test_an_expected_failure_after_the_request_left_is_not_reported_as_unhandled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # asyncio.shield alone, on Python 3.11: "Task exception was never retrieved" and a traceback.
    assert await _cancel_then_fail(StoreUnavailable("Redis store: connection refused"), caplog) == []


async def test_an_unexpected_failure_after_the_request_left_is_logged_as_a_bug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await _cancel_then_fail(RuntimeError("a bug"), caplog) == ["shielded work failed after its request was gone"]


async def test_the_awaiting_request_still_gets_the_result_or_the_failure_and_it_is_not_logged_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise RuntimeError("the request's own to handle")

    with caplog.at_level(logging.ERROR):
        assert await shielded(answer()) == 42
        with pytest.raises(RuntimeError):
            await shielded(fail())
        await asyncio.sleep(0)
    assert caplog.records == []
