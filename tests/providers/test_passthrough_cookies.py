"""The pass-through client keeps no cookies: what one upstream answer sets never reaches the next request."""

from __future__ import annotations

import openai

from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, GatewayFactory


def test_a_cookie_set_by_the_upstream_is_not_sent_on_later_requests(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    # A host name, not an IP: aiohttp's default jar ignores cookies from IP addresses, so only a name
    # shows whether the gateway keeps a jar at all.
    base = upstream.url.replace("127.0.0.1", "localhost")
    gateway = gateway_factory(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        f"    litellm_params: {{model: openai/gpt-4o, api_base: '{base}', api_key: {UPSTREAM_KEY}}}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
    )
    upstream.upstream.script(Fault(headers=(("Set-Cookie", "tenant=alice; Path=/"),)))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]

    first = client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    second = client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]

    assert first.choices[0].finish_reason == second.choices[0].finish_reason == "stop"
    assert len(upstream.upstream.received) == 2
    assert "Cookie" not in upstream.upstream.received[1].headers
