"""Helpers for the resilience tests: deployments on loopback upstreams, fast retry settings, SDK clients."""

from __future__ import annotations

import socket
from typing import Any

import openai
import pytest

from gateway.routing.breakers import BreakerTransition
from gateway.routing.router import Router
from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import UPSTREAM_KEY

MESSAGES: list[Any] = [{"role": "user", "content": "hello there"}]
# Tens of milliseconds everywhere, so waits are real but the suite stays fast.
FAST = (
    "routing: {retry_backoff: 0.02, max_backoff: 0.08}\n"
    "breakers: {failure_threshold: 3, reset_timeout: 0.25}\n"
)


def deployment(
    group: str, upstream: UpstreamServer | str, upstream_model: str, id: str, info: str = "", **params: object
) -> str:
    """A `model_list` entry (YAML) with an explicit deployment id (and more `model_info` in `info`)."""
    base = upstream if isinstance(upstream, str) else upstream.url
    extra = "".join(f", {k}: {v}" for k, v in params.items())
    return (
        f"  - model_name: {group}\n"
        f"    litellm_params: {{model: openai/{upstream_model}, api_base: '{base}', api_key: {UPSTREAM_KEY}{extra}}}\n"
        f"    model_info: {{id: {id}{info}}}\n"
    )


def config(*deployments: str, router: str = "num_retries: 2, timeout: 5", extra: str = FAST) -> str:
    return "model_list:\n" + "".join(deployments) + f"router_settings: {{{router}}}\n" + extra


def sdk(gateway: GatewayServer) -> openai.OpenAI:
    """The official client with its own retries off, so what it sees is what the gateway answered."""
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=10)


def router_of(gateway: GatewayServer) -> Router:
    router = gateway.app.state.router
    assert isinstance(router, Router)
    return router


def watch_breakers(gateway: GatewayServer) -> list[BreakerTransition]:
    """Every breaker transition from now on, as the telemetry layer would receive them."""
    seen: list[BreakerTransition] = []
    router_of(gateway).breakers.listeners.append(seen.append)
    return seen


@pytest.fixture
def refused_url() -> str:
    """A loopback address where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
