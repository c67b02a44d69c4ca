"""The benchmark's upstream: a minimal OpenAI-compatible HTTP/1.1 server that answers canned bytes.

Why not `gateway.testing.upstream` (aiohttp)? It builds every answer with the fake provider and
runs aiohttp's full server stack, which tops out at a few thousand requests/s on this machine: as
the *direct* baseline it would measure the stub, not the gateway. This one is a raw asyncio
`Protocol` on uvloop that parses only what it must (the header block, Content-Length, whether the
body asks for a stream and for usage) and writes pre-built responses, so it is far faster than the
gateway and the comparison measures the gateway's overhead.

Answers are valid OpenAI bodies: a `chat.completion` for JSON, and for `"stream": true` a chunked
`text/event-stream` of ~20 `chat.completion.chunk` events (plus the usage chunk when the body asks
for `include_usage`) and `data: [DONE]`. `--latency S` delays each response by S seconds (a real
provider's pace) without blocking other connections; `--jitter J` spreads that delay uniformly over
S-J..S+J, as real providers' response times vary.

Run: `python bench/stub.py --port 9100 --latency 0.2`
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any, cast

import orjson

MODEL = "gpt-4o-mini"
_WORDS = (
    "The quick brown fox jumps over the lazy dog while the gateway relays every token back to the agent"
).split(" ")


def _completion() -> bytes:
    text = " ".join(_WORDS)
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": len(_WORDS),
                "total_tokens": 12 + len(_WORDS),
            },
        }
    )


def _stream(include_usage: bool) -> bytes:
    base: dict[str, Any] = {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "system_fingerprint": "fp_bench",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": (" " if i else "") + w}) for i, w in enumerate(_WORDS)]
    chunks.append(chunk({}, "stop"))
    if include_usage:
        chunks.append(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": 12,
                    "completion_tokens": len(_WORDS),
                    "total_tokens": 12 + len(_WORDS),
                },
            }
        )
    events = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    # One HTTP chunk per SSE event would be more realistic on the wire but costs the stub, not the
    # gateway; a single HTTP chunk still makes the gateway parse every event.
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(events), events)


def _json_response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: keep-alive\r\n\r\n%s"
    ) % (len(body), body)


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)


class Canned:
    def __init__(self) -> None:
        self.json = _json_response(_completion())
        self.stream = _STREAM_HEAD + _stream(False)
        self.stream_usage = _STREAM_HEAD + _stream(True)
        self.not_found = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"

    def answer(self, head: bytes, body: bytes) -> bytes:
        if not head.startswith(b"POST ") or b"/chat/completions " not in head[:64]:
            return self.not_found
        if b'"stream":true' in body or b'"stream": true' in body:
            return (
                self.stream_usage
                if b'"include_usage":true' in body or b'"include_usage": true' in body
                else self.stream
            )
        return self.json


class StubProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, in order; enough of the protocol for wrk, aiohttp and httpx."""

    def __init__(self, canned: Canned, latency: float, jitter: float) -> None:
        self._canned = canned
        self._latency = latency
        self._jitter = jitter
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check here.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            length = _content_length(head)
            if len(buffer) < end + 4 + length:
                break
            body = buffer[end + 4 : end + 4 + length]
            buffer = buffer[end + 4 + length :]
            reply = self._canned.answer(head, body)
            if self._latency:
                # Clients here send one request at a time per connection (no pipelining), so a
                # jittered delay cannot reorder replies on a connection.
                delay = (
                    self._latency + random.uniform(-self._jitter, self._jitter)
                    if self._jitter
                    else self._latency
                )
                self._loop.call_later(delay, self._write, reply)
            else:
                self._write(reply)
        self._buffer = buffer

    def _write(self, reply: bytes) -> None:
        if self._transport is not None:
            self._transport.write(reply)


def _content_length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = lower.find(b"\r\n", at + 2)
    return int(lower[at + 17 : end if end > 0 else None].strip())


async def serve(port: int, latency: float, jitter: float = 0.0) -> None:
    canned = Canned()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StubProtocol(canned, latency, jitter), "127.0.0.1", port, backlog=2048
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="Lockgate benchmark upstream: canned OpenAI answers, fast.")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every response")
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="spread the delay uniformly over latency +/- jitter seconds (same mean)",
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the stub still works, just slower
        pass
    try:
        asyncio.run(serve(args.port, args.latency, args.jitter))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
