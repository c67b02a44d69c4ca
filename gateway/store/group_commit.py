"""Group commit: concurrent calls of one process share one store round trip.

While a batch is in flight the next one collects; when the first returns, everything that arrived
meanwhile goes in a single call. Under load this turns N round trips (and N times the client
library's per-call cost) into about one per batch; an idle caller waits for nothing extra. Each
item is still processed on its own (the script loops), so atomicity per item is unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], max_batch: int = 256) -> None:
        self._run = run
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._draining = False

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                try:
                    results = await self._run([item for item, _ in batch])
                except BaseException as exc:  # every caller of the batch sees the store's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # its caller may have given up (cancelled)
                        future.set_result(result)
        finally:
            self._draining = False
