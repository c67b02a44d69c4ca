"""Helpers for governance tests: gateway YAML with a store, and an admin client."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, openai_model


def governed_yaml(upstream: UpstreamServer, store_url: str, extra: str = "", model_params: str = "") -> str:
    params = dict(p.split("=", 1) for p in model_params.split(",") if p)
    return (
        "model_list:\n"
        + openai_model("gpt-4o", upstream, **params)
        + openai_model("gpt-4o-mini", upstream)
        + f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        + f"store: '{store_url}'\n"
        + extra
    )


class Admin:
    def __init__(self, base_url: str, master_key: str = MASTER_KEY) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {master_key}"}, timeout=30)

    def create_key(self, **fields: Any) -> dict[str, Any]:
        reply = self.http.post("/admin/keys", json={"name": "test-key", **fields})
        assert reply.status_code == 201, reply.text
        return reply.json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()
