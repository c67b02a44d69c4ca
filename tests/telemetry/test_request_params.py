"""`gen_ai.request.*` span attributes from the parameters a client sent."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.telemetry.attributes import request_params


def params(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    request_params(operation, body, attrs)
    return attrs


def test_chat_parameters_become_their_attributes() -> None:
    body = {"model": "m", "messages": [], "temperature": 0.2, "top_p": 1, "seed": 7, "presence_penalty": -0.5,
            "frequency_penalty": True, "top_k": "3", "stop": "\n", "n": 2, "response_format": {"type": "json_schema"}}
    assert params("chat", body) == {
        "gen_ai.request.temperature": 0.2, "gen_ai.request.top_p": 1, "gen_ai.request.seed": 7,
        "gen_ai.request.presence_penalty": -0.5, "gen_ai.request.stop_sequences": ("\n",),
        "gen_ai.request.choice.count": 2, "gen_ai.output.type": "json",
    }  # a bool or a string where a number belongs is not a parameter's value


@pytest.mark.parametrize("order", [("max_tokens", "max_completion_tokens"), ("max_completion_tokens", "max_tokens")])
def test_max_completion_tokens_wins_over_max_tokens_in_either_order(order: tuple[str, str]) -> None:
    values = {"max_tokens": 10, "max_completion_tokens": 20}
    assert params("chat", {key: values[key] for key in order}) == {"gen_ai.request.max_tokens": 20}
    assert params("chat", {"max_tokens": 10, "max_completion_tokens": None}) == {"gen_ai.request.max_tokens": 10}


def test_embeddings_parameters() -> None:
    assert params("embeddings", {"encoding_format": "base64", "dimensions": 256, "temperature": 1.0}) == {
        "gen_ai.request.encoding_formats": ("base64",), "gen_ai.embeddings.dimension.count": 256,
    }
