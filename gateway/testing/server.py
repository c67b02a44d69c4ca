"""Runs the real gateway app under uvicorn on 127.0.0.1, in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import threading
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.config.runtime import RuntimeConfig, StoreConfig


class GatewayServer:
    def __init__(self, config: RuntimeConfig, span_exporter: Any = None) -> None:
        # A config that leaves the store at its default (./lockgate.db) gets a private temp store:
        # a test gateway never writes into the working directory, nor shares state with another.
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if config.store == StoreConfig():
            self._tmp = tempfile.TemporaryDirectory(prefix="lockgate-test-")
            config = dataclasses.replace(config, store=StoreConfig(url=f"sqlite:///{self._tmp.name}/lockgate.db"))
        self.config = config
        self.app = create_app(config, span_exporter=span_exporter)
        self.port = 0
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=0, loop="asyncio", http="httptools",
                access_log=False, log_level="warning", lifespan="on",
            )
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        serving = asyncio.create_task(self._server.serve())
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.005)
        if self._server.started:
            self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self._ready.set()
        await serving

    def start(self) -> GatewayServer:
        self._thread.start()
        # 60 s: a config with litellm deployments imports litellm at startup, slow on a busy machine.
        if not self._ready.wait(60) or not self.port:
            raise RuntimeError("the gateway did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        if self._tmp is not None:
            self._tmp.cleanup()
