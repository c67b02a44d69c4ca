"""The built-in fake provider through the gateway: the demo's models behave as the demo says."""

from __future__ import annotations

import dataclasses
from importlib import resources

import openai
import pytest

from gateway.config import load_config
from gateway.config.runtime import StoreConfig
from gateway.providers.fake import Behaviour
from gateway.testing.server import GatewayServer

DEMO_KEY = "lockgate-demo-key"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> openai.OpenAI:
    config = load_config(str(resources.files("gateway.config").joinpath("demo.yaml")))
    store = StoreConfig(url=f"sqlite:///{tmp_path_factory.mktemp('demo') / 'lockgate.db'}")
    config = dataclasses.replace(config, store=store)
    server = GatewayServer(config).start()
    yield openai.OpenAI(base_url=f"{server.url}/v1", api_key=DEMO_KEY, max_retries=0)  # type: ignore[misc]
    server.stop()


def test_behaviour_is_read_from_the_model_name() -> None:
    assert Behaviour.from_model("slow-250ms-drip-10ms") == Behaviour(first_token_delay=0.25, chunk_delay=0.01)
    assert Behaviour.from_model("error-503").error_status == 503
    assert Behaviour.from_model("flaky-30").fail_percent == 30
    assert Behaviour.from_model("ratelimit-2s").rate_limit_after == 2.0
    assert Behaviour.from_model("gpt-4o-mini") == Behaviour()


def test_down_model_falls_back(demo: openai.OpenAI) -> None:
    raw = demo.chat.completions.with_raw_response.create(model="down-model", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-lockgate-deployment"] == "gpt-4o-mini#0"
    assert raw.headers["x-lockgate-attempts"] == "2"
    assert raw.parse().choices[0].message.content == "This is Lockgate's fake provider. You said: hi"


def test_flaky_model_always_answers(demo: openai.OpenAI) -> None:
    attempts = [
        int(demo.chat.completions.with_raw_response.create(
            model="flaky-model", messages=[{"role": "user", "content": f"n{i}"}]).headers["x-lockgate-attempts"])
        for i in range(12)
    ]
    assert max(attempts) == 2, "some calls hit the flaky deployment first and were rerouted"


def test_max_tokens_truncates_with_length(demo: openai.OpenAI) -> None:
    reply = demo.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "This is Lockgate's"


def test_embeddings_are_deterministic(demo: openai.OpenAI) -> None:
    first = demo.embeddings.create(model="text-embedding-3-small", input="same text").data[0].embedding
    second = demo.embeddings.create(model="text-embedding-3-small", input="same text").data[0].embedding
    assert first == second and abs(sum(v * v for v in first) - 1) < 1e-3
