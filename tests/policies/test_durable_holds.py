"""Holds survive a gateway restart (SQLite), two gateways share holds through one Redis, and a hold
that cannot be stored (the store is down) is refused, never released."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import redis

from gateway.testing.tcp_proxy import TcpProxy
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url

PAY = ask("pay the invoice")


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll a condition another thread makes true (the loopback upstream offers no event for it)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.01)
REDIS_URL = "redis://127.0.0.1:6379/0"


def test_after_a_restart_the_retried_request_gets_the_approval_without_a_second_model_call(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    text = hold_config(upstream, sqlite_url(tmp_path), hold_window=0)
    before = gateway_factory(text)
    first = client(before).chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE])
    assert "awaiting human approval" in (first.choices[0].message.content or "")
    # No session: the same request sent again is what re-attaches to the hold.
    assert "Send the same request again to receive the decision." in (first.choices[0].message.content or "")
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


@pytest.mark.parametrize("stream", [False, True])
def test_a_hold_that_cannot_be_stored_is_refused_with_a_retryable_503_and_the_call_never_released(
    proxied_redis: tuple[TcpProxy, str], upstream: UpstreamServer, gateway_factory: GatewayFactory, stream: bool
) -> None:
    proxy, store = proxied_redis
    gateway = gateway_factory(hold_config(upstream, store))
    upstream.upstream.script(Fault(delay=1.0))

    def ask_to_pay() -> None:
        if stream:
            for _ in client(gateway).chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE], stream=True):
                pass
        else:
            client(gateway).chat.completions.create(model="gpt-4o", messages=PAY, tools=[WIRE])

    with ThreadPoolExecutor(1) as pool, pytest.raises(openai.APIError) as refused:
        asked = pool.submit(ask_to_pay)
        wait_until(lambda: upstream.upstream.count("/chat/completions") == 1)  # admitted, at the model
        proxy.down()  # the store goes away; the model then answers with a call that needs a human
        asked.result(10)
    assert "needs a human's approval, and the gateway cannot store the hold right now" in refused.value.message
    assert "'wire_money'" in refused.value.message
    if not stream:  # a stream's error arrives after its first byte, as an event
        assert isinstance(refused.value, openai.InternalServerError) and refused.value.status_code == 503
        assert refused.value.body["code"] == "approvals_store_unavailable"  # type: ignore[index]
    assert upstream.upstream.count("/chat/completions") == 1

    proxy.up()  # back: the retry is held as usual
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client(gateway).chat.completions.create, model="gpt-4o", messages=PAY, tools=[WIRE])
        admin = Admin(gateway)
        [pending] = admin.wait_for_pending()
        assert admin.decide(pending["id"], "approve").status_code == 200
        [call] = future.result(10).choices[0].message.tool_calls or []
    assert call.function.name == "wire_money"
