"""A webhook endpoint on 127.0.0.1 for tests: records what is posted to it, and can misbehave.

It can answer its first posts with 503 (retries must deliver anyway) or never answer at all (a hung
receiver must not hold up the gateway).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
from aiohttp import web

from gateway.testing.loopback import LoopbackServer


class WebhookReceiver(LoopbackServer):
    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        app = web.Application()
        app.router.add_post("/{hook}", self._handle)
        super().__init__(app)
        self.posts: list[tuple[str, dict[str, Any]]] = []  # (path, body) of each post taken
        self.attempts = 0
        self._fail_first = fail_first
        self._hang = hang
        self._released = asyncio.Event()  # a hung receiver answers (503) only when it stops
        self._changed = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        with self._changed:
            self.attempts += 1
            self._changed.notify_all()
        if self._hang:
            await self._released.wait()
            return web.Response(status=503)
        if self.attempts <= self._fail_first:
            return web.Response(status=503)
        body = orjson.loads(await request.read())
        with self._changed:
            self.posts.append((request.path, body))
            self._changed.notify_all()
        return web.Response(text="ok")

    def wait_for(self, count: int, timeout: float = 20) -> list[tuple[str, dict[str, Any]]]:
        """The posts taken, once there are at least `count` of them."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.posts) >= count, timeout), self.posts
            return list(self.posts)

    def wait_for_attempts(self, count: int, timeout: float = 20) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.attempts >= count, timeout), self.attempts

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._released.set)
        super().stop()
