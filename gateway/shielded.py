"""Work a cancelled request must not cut in half, whose failure is still seen.

`asyncio.shield` keeps the work going when the awaiting request is cancelled (a client hanging up),
but on Python 3.11 it then drops the work's outcome: a failure after the request left was logged as
"Task exception was never retrieved", with a traceback, as if unhandled (a soak run during a Redis
outage: a hold that could not be stored after its streaming client had gone). `shielded` settles
the outcome itself: an expected failure (a `GatewayError`: the store was unreachable, the request
refused) is already on the request's record and is dropped; anything else is logged as the bug it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from gateway.errors import GatewayError
from gateway.store import StoreError

log = logging.getLogger("lockgate")

T = TypeVar("T")


def shielded(work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """`work` as a task that runs to its end even if the awaiting request is cancelled."""
    task = asyncio.ensure_future(work)
    awaited = asyncio.shield(task)

    def settle(done: asyncio.Future[T]) -> None:
        if awaited.cancelled():
            settle_orphaned(done, "shielded work")
        elif not done.cancelled():
            done.exception()  # retrieved here; the request still awaiting gets it through the shield

    task.add_done_callback(settle)
    return awaited


def settle_orphaned(done: asyncio.Future[Any], what: str) -> None:
    """The outcome of work whose request is gone: an expected failure (a `GatewayError`, a
    `StoreError`) is already on the request's record and is dropped; anything else is logged as the
    bug it is. Either way it is retrieved, so asyncio does not report it as never retrieved."""
    if done.cancelled():
        return
    failure = done.exception()
    if failure is not None and not isinstance(failure, (GatewayError, StoreError)):
        log.error("%s failed after its request was gone", what, exc_info=failure)
