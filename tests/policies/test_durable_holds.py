"""Holds survive a gateway restart (SQLite), and two gateways share holds through one Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url

PAY = ask("pay the invoice")
REDIS_URL = "redis://127.0.0.1:6379/0"


def test_after_a_restart_the_retried_request_gets_the_approval_without_a_second_model_call(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    text = hold_config(upstream, sqlite_url(tmp_path), hold_window=0)
    before = gateway_factory(text)
    first = client(before).chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE])
    assert "awaiting human approval" in (first.choices[0].message.content or "")
    before.stop()

    after = gateway_factory(text)
    admin = Admin(after)
    [pending] = admin.pending()
    assert admin.decide(pending["id"], "approve", by="erin").status_code == 200
    again = client(after).chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE])
    assert [t.function.name for t in again.choices[0].message.tool_calls or ()] == ["wire_money"]
    assert upstream.upstream.count("/chat/completions") == 1


@pytest.fixture
def redis_store() -> Iterator[str]:
    prefix = "lgtest-" + uuid.uuid4().hex
    yield f"{REDIS_URL}?prefix={prefix}"
    connection = redis.Redis.from_url(REDIS_URL)
    keys = list(connection.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.mark.parametrize("stream", [False, True])
def test_hold_on_one_gateway_approved_through_another_on_the_same_redis(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, redis_store: str, stream: bool
) -> None:
    text = hold_config(upstream, redis_store)
    holding, other = gateway_factory(text), gateway_factory(text)
    admin = Admin(other)

    def run() -> list[str]:
        c = client(holding)
        if not stream:
            reply = c.chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE])
            return [t.function.name for t in reply.choices[0].message.tool_calls or ()]
        names = []
        for chunk in c.chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE], stream=True):
            if chunk.choices:
                names += [t.function.name or "" for t in chunk.choices[0].delta.tool_calls or () if t.function]
        return names

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run)
        [pending] = admin.wait_for_pending()
        assert admin.decide(pending["id"], "approve", by="frank").status_code == 200
        assert future.result(10) == ["wire_money"]
    assert upstream.upstream.count("/chat/completions") == 1
