"""Shared fixtures: a loopback upstream, and a factory for real gateway servers built from YAML."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.testing.server import GatewayServer
from gateway.testing.tcp_proxy import TcpProxy
from gateway.testing.upstream import UpstreamServer

MASTER_KEY = "sk-test-master-0123456789"
UPSTREAM_KEY = "sk-upstream-secret-abcdef0123456789"


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[UpstreamServer]:
    server = UpstreamServer().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(upstream_server: UpstreamServer) -> Iterator[UpstreamServer]:
    """The session's upstream, with its script and its record cleared for this test."""
    upstream_server.upstream.reset()
    yield upstream_server
    upstream_server.upstream.reset()


GatewayFactory = Callable[[str], GatewayServer]


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start real gateways from YAML text; every one is stopped when the test ends.

    Without a `store:` section each test's gateways share a fresh SQLite file in the test's own
    directory, so no test sees another's keys, budgets or holds, and nothing lands in the checkout.
    """
    started: list[GatewayServer] = []

    def start(yaml_text: str) -> GatewayServer:
        if not any(line.startswith("store:") for line in yaml_text.splitlines()):
            yaml_text += f"\nstore: sqlite:///{tmp_path / 'lockgate.db'}\n"
        server = GatewayServer(parse_config(yaml_text)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def openai_model(name: str, upstream: UpstreamServer, upstream_model: str | None = None, **params: object) -> str:
    """A `model_list` entry (YAML) for an OpenAI-compatible deployment on the loopback upstream."""
    extra = "".join(f", {k}: {v}" for k, v in params.items())
    return (
        f"  - model_name: {name}\n"
        f"    litellm_params: {{model: openai/{upstream_model or name + '-upstream'}, "
        f"api_base: '{upstream.url}', api_key: {UPSTREAM_KEY}{extra}}}\n"
    )


@pytest.fixture
def basic_gateway(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> GatewayServer:
    """gpt-4o and an embedding model on the loopback upstream, guarded by the master key."""
    return gateway_factory(
        "model_list:\n"
        + openai_model("gpt-4o", upstream)
        + openai_model("text-embedding-3-small", upstream)
        + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + "routing: {retry_backoff: 0.01, max_backoff: 0.05}\n"  # retries stay quick in tests
    )


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the real Redis at 127.0.0.1:6379, its keys deleted afterwards."""
    import uuid

    import redis

    prefix = "lgtest-" + uuid.uuid4().hex
    yield prefix
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def proxied_redis(redis_prefix: str) -> Iterator[tuple[TcpProxy, str]]:
    """The real Redis behind a proxy the test can cut (`down`) and restore (`up`): (proxy, store URL)."""
    proxy = TcpProxy("127.0.0.1", 6379).start()
    try:
        yield proxy, f"redis://127.0.0.1:{proxy.port}/0?prefix={redis_prefix}"
    finally:
        proxy.stop()
