"""Embeddings and the model list through the gateway, checked against the spec."""

from __future__ import annotations

import openai
import orjson
import pytest

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, GatewayFactory, openai_model
from tests.openapi import assert_matches


def sdk(gateway: GatewayServer, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def test_embeddings_match_the_spec(basic_gateway: GatewayServer, upstream: UpstreamServer) -> None:
    raw = sdk(basic_gateway).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["first text", "second"]
    )
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 16
    assert result.data[0].embedding != result.data[1].embedding
    assert_matches("CreateEmbeddingResponse", orjson.loads(raw.content))
    assert upstream.upstream.received[-1].body["model"] == "text-embedding-3-small-upstream"


def test_embeddings_need_input(basic_gateway: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(basic_gateway).embeddings.create(model="text-embedding-3-small", input="")
    assert caught.value.param == "input"


def test_models_list_and_retrieve_match_the_spec(basic_gateway: GatewayServer) -> None:
    client = sdk(basic_gateway)
    raw = client.models.with_raw_response.list()
    assert_matches("ListModelsResponse", orjson.loads(raw.content))
    assert sorted(m.id for m in raw.parse()) == ["gpt-4o", "text-embedding-3-small"]
    model = client.models.retrieve("gpt-4o")
    assert model.id == "gpt-4o" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_a_static_key_sees_and_uses_only_its_models(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(
        "model_list:\n"
        + openai_model("gpt-4o", upstream)
        + openai_model("gpt-4o-mini", upstream)
        + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + "keys:\n  - {name: intern, key: sk-intern-key-0001, models: [gpt-4o-mini]}\n"
    )
    intern = sdk(gateway, "sk-intern-key-0001")
    assert [m.id for m in intern.models.list()] == ["gpt-4o-mini"]
    assert intern.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices
    with pytest.raises(openai.PermissionDeniedError) as caught:
        intern.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_allowed"
    assert UPSTREAM_KEY not in caught.value.response.text
    with pytest.raises(openai.NotFoundError):
        intern.models.retrieve("gpt-4o")
