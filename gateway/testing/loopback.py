"""Runs an aiohttp application on 127.0.0.1 in a thread with its own event loop.

Tests drive the gateway with blocking clients (the official SDKs) while loopback peers (the upstream,
the OTLP receiver) answer from their own loop; this is the one place that threading lives.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Self

from aiohttp import web


class LoopbackServer:
    def __init__(self, app: web.Application, tls: ssl.SSLContext | None = None) -> None:
        self.port = 0
        self._app = app
        self._tls = tls  # serve HTTPS with this context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._tls)
        await site.start()
        # The site's listening socket: the port the OS picked for port 0.
        sockets = getattr(site._server, "sockets", None)
        assert sockets
        self.port = int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
