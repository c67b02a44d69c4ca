"""Session state is durable: it survives the agent's restart and the gateway's, and replicas share it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from lockgate_sdk import Gateway, StateConflict

from tests.conftest import GatewayFactory
from tests.sdk.conftest import AGENT_KEY, fake_config

REDIS_URL = "redis://127.0.0.1:6379/0"


def _agent(url: str, session_id: str, body: str) -> str:
    """Run an agent as its own process (so nothing survives in memory) and return what it printed."""
    script = textwrap.dedent(
        f"""
        from lockgate_sdk import Gateway
        with Gateway({url!r}, {AGENT_KEY!r}) as gateway, gateway.session(id={session_id!r}) as session:
        """
    ) + textwrap.indent(textwrap.dedent(body), "    ")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_state_survives_agent_restart_and_gateway_restart(gateway_factory: GatewayFactory, store_url: str) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    first = gateway_factory(fake_config(store_url))
    _agent(first.url, session_id, """
        session.state["plan"] = ["search", "book", "pay"]
        session.state["step"] = 1
        """)
    first.stop()  # the gateway goes away; so did the agent process

    second = gateway_factory(fake_config(store_url))
    out = _agent(second.url, session_id, """
        print(session.state["plan"], session.state["step"])
        session.state.update("step", lambda step: step + 1)
        print(session.state["step"])
        """)
    assert out.splitlines() == ["['search', 'book', 'pay'] 1", "2"]


@pytest.fixture
def redis_store() -> Iterator[str]:
    prefix = "lgtest-sdk-" + uuid.uuid4().hex
    yield f"{REDIS_URL}?prefix={prefix}"
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_replicas_on_one_redis_share_state_and_refuse_stale_writes(
    gateway_factory: GatewayFactory, redis_store: str
) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    one = gateway_factory(fake_config(redis_store))
    two = gateway_factory(fake_config(redis_store))
    a, b = Gateway(one.url, AGENT_KEY), Gateway(two.url, AGENT_KEY)
    with a, b, a.session(id=session_id) as via_one, b.session(id=session_id) as via_two:
        via_one.state["owner"] = "one"
        assert via_two.state["owner"] == "one"
        via_two.state["owner"] = "two"
        with pytest.raises(StateConflict) as caught:
            via_one.state["owner"] = "stale"
        assert caught.value.current_version == via_two.state.version("owner")
        via_one.state.refresh()
        assert via_one.state["owner"] == "two"


def test_concurrent_increments_through_two_gateways_lose_nothing(
    gateway_factory: GatewayFactory, redis_store: str
) -> None:
    """Writers race on one key (and on other keys of the session); every increment lands."""
    session_id = f"ses-{uuid.uuid4()}"
    urls = [gateway_factory(fake_config(redis_store)).url for _ in range(2)]

    def writer(index: int) -> None:
        with Gateway(urls[index % 2], AGENT_KEY) as gateway, gateway.session(id=session_id) as session:
            for _ in range(10):
                session.state.update("count", lambda n: n + 1, default=0, attempts=100)
                session.state.update(f"mine-{index}", lambda n: n + 1, default=0, attempts=100)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(writer, range(4)))
    with Gateway(urls[0], AGENT_KEY) as gateway, gateway.session(id=session_id) as session:
        state = session.state.to_dict()
    assert state == {"count": 40, "mine-0": 10, "mine-1": 10, "mine-2": 10, "mine-3": 10}
