"""Budget alerts reach real local webhook receivers once per threshold, with retries."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.governance.test_budgets import KEY, ask, budget_yaml


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails its first `fail_first` posts with 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0
        self._fail_first = fail_first
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.attempts <= self._fail_first:
            return web.Response(status=503)
        with self._changed:
            self.posts.append((request.path, orjson.loads(await request.read())))
            self._changed.notify_all()
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{hook}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def wait_for(self, count: int, timeout: float = 20) -> list[tuple[str, dict[str, Any]]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.posts) >= count, timeout), self.posts
            return list(self.posts)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def receiver() -> Any:
    server = Receiver(fail_first=2).start()
    yield server
    server.stop()


def test_thresholds_fire_once_each_to_slack_and_json_webhooks(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, receiver: Receiver, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{receiver.port}"
    budgets = (
        "{teams: {eng: [{limit_usd: 0.0015, period: daily}]}, alerts: {thresholds: [0.5, 1.0], "
        f"backoff_seconds: 0.01, webhooks: [{{url: '{base}/slack', format: slack}}, {{url: '{base}/json'}}]}}}}"
    )
    gateway = gateway_factory(budget_yaml(upstream, f"sqlite:///{tmp_path / 'db'}", budgets))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    ask(client)  # 33%: nothing
    ask(client)  # 67%: crosses 50%
    posts = receiver.wait_for(2)
    ask(client)  # 100%
    posts = receiver.wait_for(4)

    slack = [p for path, p in posts if path == "/slack"]
    generic = [p for path, p in posts if path == "/json"]
    assert [p["threshold"] for p in generic] == [0.5, 1.0]
    assert generic[0]["scope"] == {"kind": "team", "id": "eng"} and generic[0]["period"] == "daily"
    assert generic[1]["spent_usd"] == 0.0015 and generic[1]["limit_usd"] == 0.0015
    assert "team 'eng' reached 50% of its daily budget" in slack[0]["text"]
    assert receiver.attempts == 6  # two 503s were retried
