"""A client that leaves a stream mid-way: the gateway stops relaying and lets the upstream go."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

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


def test_a_client_hanging_up_halfway_through_its_body_is_not_an_error_of_the_gateway(
    basic_gateway: GatewayServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps({**BODY, "stream": False}).encode()
    port = int(basic_gateway.url.rsplit(":", 1)[1])

    async def half_a_request() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {MASTER_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        await writer.drain()
        writer.close()  # gone before the rest of the body
        await writer.wait_closed()
        return await reader.read()  # until the gateway closes its side: it has handled the request

    with caplog.at_level(logging.INFO):
        asyncio.run(half_a_request())
        with httpx.Client(timeout=10) as http:  # and it keeps serving
            after = http.post(f"{basic_gateway.url}/v1/chat/completions", json={**BODY, "stream": False},
                              headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert after.status_code == 200
    # It was logged as an unexpected error with a traceback, once per such client.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
