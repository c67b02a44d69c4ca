"""Honest streaming: fallback until the first byte, an error event after it, never a clean false end."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import GatewayFactory
from tests.routing.conftest import MESSAGES, config, deployment, router_of, sdk


def collect(client: openai.OpenAI, model: str = "gpt") -> tuple[str, list[str | None]]:
    """The streamed text and the finish reasons, as an agent would read them."""
    text, finishes = "", list[str | None]()
    for chunk in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finishes.append(choice.finish_reason)
    return text, finishes


def test_slow_first_token_falls_back_before_anything_reaches_the_client(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "slow", "slow", weight=1000, first_token_timeout=0.15),
            deployment("gpt", upstream, "quick", "quick", weight=0.001),
        )
    )
    upstream.upstream.model_default["slow"] = Fault(first_chunk_delay=3.0)

    text, finishes = collect(sdk(gateway))

    assert text and finishes[-1] == "stop"
    assert len(upstream.upstream.arrivals("slow")) == 1
    assert len(upstream.upstream.arrivals("quick")) == 1
    assert router_of(gateway).breakers.failures("slow") == 1


def test_slow_response_headers_count_against_the_first_token_timeout(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "slow", "slow", weight=1000, first_token_timeout=0.15),
            deployment("gpt", upstream, "quick", "quick", weight=0.001),
        )
    )
    upstream.upstream.model_default["slow"] = Fault(delay=3.0)

    with sdk(gateway).chat.completions.with_streaming_response.create(
        model="gpt", messages=MESSAGES, stream=True
    ) as raw:
        assert raw.headers["x-lockgate-deployment"] == "quick"
        assert raw.headers["x-lockgate-attempts"] == "2"


@pytest.mark.parametrize(
    ("fault", "what"),
    [
        # chunk_delay: the first chunk reaches the gateway on its own, so the client has it first.
        (Fault(after_chunks=2, stall=3.0, chunk_delay=0.02), "stalled"),
        (Fault(after_chunks=2, cut=True, chunk_delay=0.02), "broke"),
        (Fault(no_finish=True, chunk_delay=0.02), "before a finish reason"),
        (Fault(after_chunks=2, malformed=True, chunk_delay=0.02), "not JSON"),
    ],
    ids=["stall", "cut", "no-finish", "malformed"],
)
def test_failure_after_the_first_byte_is_an_error_the_sdk_raises(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, fault: Fault, what: str
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "flaky", "flaky", weight=1000, idle_timeout=0.15),
            deployment("gpt", upstream, "other", "other", weight=0.001),
        )
    )
    upstream.upstream.script_for("flaky", fault)
    received: list[str] = []

    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk(gateway).chat.completions.create(model="gpt", messages=MESSAGES, stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)

    assert received, "the client had the start of the answer: too late to fall back"
    assert what in caught.value.message
    assert "flaky" in caught.value.message
    assert len(upstream.upstream.arrivals("flaky")) == 1
    assert upstream.upstream.arrivals("other") == [], "no fallback after the first byte"
    assert router_of(gateway).breakers.failures("flaky") == 1


def test_the_error_event_is_the_last_thing_on_the_wire(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo", idle_timeout=0.15)))
    upstream.upstream.script_for("solo", Fault(after_chunks=2, cut=True, chunk_delay=0.02))

    with httpx.Client() as http:
        body = http.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "gpt", "messages": MESSAGES, "stream": True},
        ).text

    events = [e for e in body.split("\n\n") if e]
    assert events[-1].startswith('data: {"error":')
    assert "[DONE]" not in body


def test_stream_without_finish_before_any_content_falls_back(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            deployment("gpt", upstream, "empty", "empty", weight=1000),
            deployment("gpt", upstream, "full", "full", weight=0.001),
        )
    )
    # Cut before the first chunk: nothing reached the client, so another deployment can serve it.
    upstream.upstream.script_for("empty", Fault(after_chunks=0, cut=True))

    text, finishes = collect(sdk(gateway))

    assert text and finishes[-1] == "stop"
    assert len(upstream.upstream.arrivals("full")) == 1


def test_client_disconnect_cancels_the_upstream_request(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(deployment("gpt", upstream, "solo", "solo")))
    upstream.upstream.script_for("solo", Fault(chunk_delay=0.05))
    router = router_of(gateway)

    with sdk(gateway).chat.completions.create(model="gpt", messages=MESSAGES, stream=True) as stream:
        first = next(iter(stream))
        assert first.choices
    # The client hung up after one chunk: the gateway must hang up on the upstream too.

    assert upstream.upstream.wait_closed("solo", timeout=5), "the upstream never saw its connection closed"
    assert router.stats.in_flight["solo"] == 0, "nothing keeps running for a gone client"
    assert router.breakers.failures("solo") == 0, "a client hanging up is not the upstream's failure"


ANTHROPIC = (
    "  - model_name: {group}\n"
    "    litellm_params: {{model: anthropic/claude-3-5-sonnet-20241022, api_base: 'http://127.0.0.1:{port}',"
    " api_key: sk-ant-test-abcdefghijkl, first_token_timeout: {first}, idle_timeout: 0.3}}\n"
    "    model_info: {{id: {group}}}\n"
)


def test_litellm_streams_have_first_token_and_idle_timeouts_too(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        config(
            ANTHROPIC.format(group="claude-idle", port=upstream.port, first=20),
            ANTHROPIC.format(group="claude-first", port=upstream.port, first=1.5),
            router="num_retries: 0, timeout: 30",
        )
    )
    client = sdk(gateway)

    # First (litellm's first call is slow to set up): a stall mid-stream, past the idle timeout.
    upstream.upstream.script(Fault(after_chunks=10, stall=3.0, chunk_delay=0.01))
    with pytest.raises(openai.APIError) as stalled:
        for _ in client.chat.completions.create(model="claude-idle", messages=MESSAGES, stream=True):
            pass
    assert "stalled waiting for the next chunk" in stalled.value.message

    upstream.upstream.script(Fault(first_chunk_delay=6.0))
    with pytest.raises(openai.APIStatusError) as slow:
        client.chat.completions.create(model="claude-first", messages=MESSAGES, stream=True)
    assert slow.value.status_code == 504 and "first token" in slow.value.message
