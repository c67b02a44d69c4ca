"""A client that leaves a stream mid-way: the gateway stops relaying and lets the upstream go."""

from __future__ import annotations

import httpx

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY

BODY = {
    "model": "gpt-4o",
    "stream": True,
    "messages": [{"role": "user", "content": "tell me a long story please"}],
}


def test_client_leaving_a_stream_closes_the_upstream_and_the_gateway_keeps_serving(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    # About twenty chunks a second apart: without the disconnect reaching the upstream, it would
    # keep writing happily for ~20 s and `abandoned` would stay unset.
    upstream.upstream.script(Fault(chunk_delay=1.0))
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(timeout=10) as http:
        with http.stream(
            "POST", f"{basic_gateway.url}/v1/chat/completions", json=BODY, headers=headers
        ) as response:
            assert response.status_code == 200
            first = next(response.iter_bytes())
            assert first.startswith(b"data: ")
        # Leaving the `with` closed the connection mid-stream.

        assert upstream.upstream.abandoned.wait(8), "the upstream never saw the gateway let go of the stream"

        after = http.post(
            f"{basic_gateway.url}/v1/chat/completions", json={**BODY, "stream": False}, headers=headers
        )
    assert after.status_code == 200
    assert after.json()["choices"][0]["finish_reason"] == "stop"


def test_complete_streams_end_with_done_and_are_not_mistaken_for_a_disconnect(
    basic_gateway: GatewayServer, upstream: UpstreamServer
) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(timeout=10) as http:
        for _ in range(3):  # several on one keep-alive connection
            response = http.post(f"{basic_gateway.url}/v1/chat/completions", json=BODY, headers=headers)
            assert response.status_code == 200
            assert response.text.endswith("data: [DONE]\n\n")
            assert '"finish_reason":"stop"' in response.text
    assert not upstream.upstream.abandoned.is_set()
