"""Shared bits for the policy tests: config text, clients, tools."""

from __future__ import annotations

from typing import Any

import openai

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, openai_model

INTERN_KEY = "sk-intern-key-0123456789"
OPS_KEY = "sk-ops-key-0123456789"


def config(upstream: UpstreamServer, policies: str, extra: str = "") -> str:
    """gpt-4o and gpt-4o-mini on the loopback upstream, a master key, two team keys, and `policies`."""
    return (
        "model_list:\n"
        + openai_model("gpt-4o", upstream)
        + openai_model("gpt-4o-mini", upstream)
        + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + "keys:\n"
        + f"  - {{name: intern, key: {INTERN_KEY}, team: interns, user: ivy}}\n"
        + f"  - {{name: ops, key: {OPS_KEY}, team: ops}}\n"
        + "policies:\n"
        + "".join(f"  {line}\n" for line in policies.strip("\n").split("\n"))
        + extra
    )


def client(gateway: GatewayServer, key: str = MASTER_KEY, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, default_headers=headers or None
    )


def tool(name: str, **properties: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"the {name} tool",
            "parameters": {
                "type": "object",
                "properties": {p: {"type": t} for p, t in properties.items()},
                "required": list(properties),
            },
        },
    }


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]
