"""A real upstream on loopback: speaks OpenAI's chat/embeddings API and Anthropic's Messages API.

Tests and the benchmark point deployments at it. Answers come from the fake provider's deterministic
builders; faults are scripted per request (a queue consumed in order, then the default), globally or per
upstream model name (so one server can stand in for several deployments), and every request
received is recorded with its arrival time, so a test can assert how many attempts an upstream got
and when. A stream whose client went away is recorded in `closed`, so a test can prove that the
gateway hung up on the upstream. Run standalone with `python -m gateway.testing.upstream --port 9000`.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.providers.fake import (
    build_chunks,
    build_completion,
    build_embeddings,
    count_tokens,
    invalid_request,
)
from gateway.testing.loopback import LoopbackServer


@dataclass(frozen=True, slots=True)
class Fault:
    """What the upstream does with one request. The default answers correctly."""

    status: int = 200
    retry_after: float | None = None
    retry_after_ms: float | None = None
    # Raw body to send instead of the real answer (garbage, or a provider's error JSON).
    body: bytes | None = None
    # Seconds before the response headers.
    delay: float = 0.0
    # Streams: seconds between headers and the first chunk, and between chunks.
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0
    # Streams: after this many chunks, stall for `stall` seconds, or cut the connection.
    after_chunks: int | None = None
    stall: float = 0.0
    cut: bool = False
    # Streams: drop the finish reason (and [DONE]); send a malformed chunk at `after_chunks`.
    no_finish: bool = False
    malformed: bool = False
    # Close the connection without any response.
    drop: bool = False
    # Extra headers on a successful JSON chat answer (e.g. a Set-Cookie).
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def error(cls, status: int, message: str = "upstream error", code: str | None = None, **kw: Any) -> Fault:
        body = orjson.dumps({"error": {"message": message, "type": "server_error", "param": None, "code": code}})
        return cls(status=status, body=body, **kw)

    @classmethod
    def context_length(cls) -> Fault:
        return cls.error(
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
            code="context_length_exceeded",
        )


@dataclass(slots=True)
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class Upstream:
    """The server's state: scripted faults, the default behaviour, and what it received."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.default = Fault()
        self.faults: deque[Fault] = deque()
        # Per upstream model name: a queue, then a default, before the global ones.
        self.model_faults: dict[str, deque[Fault]] = {}
        self.model_default: dict[str, Fault] = {}
        self.received: list[Received] = []
        # Streams the client hung up on: (model, monotonic time noticed).
        self.closed: list[tuple[str, float]] = []
        self._closed_signal = threading.Condition()
        self.record = True
        # Set when a client (the gateway) leaves a stream before its end: tests wait on it.
        self.abandoned = threading.Event()

    def script(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def script_for(self, model: str, *faults: Fault) -> None:
        """Faults for requests naming this upstream model, in order, before anything global."""
        self.model_faults.setdefault(model, deque()).extend(faults)

    def reset(self) -> None:
        self.faults.clear()
        self.model_faults.clear()
        self.model_default.clear()
        self.received.clear()
        self.closed.clear()
        self.default = Fault()
        self.abandoned.clear()

    def _next(self, model: str = "") -> Fault:
        queue = self.model_faults.get(model)
        if queue:
            return queue.popleft()
        if model in self.model_default:
            return self.model_default[model]
        return self.faults.popleft() if self.faults else self.default

    def count(self, path_suffix: str = "") -> int:
        return sum(1 for r in self.received if r.path.endswith(path_suffix))

    def arrivals(self, model: str) -> list[float]:
        """Monotonic arrival times of the requests that named this upstream model."""
        return [r.at for r in self.received if r.body.get("model") == model]

    def wait_closed(self, model: str, timeout: float = 5.0) -> bool:
        """Block until a stream for this upstream model was hung up on by its client (or the timeout passes)."""
        with self._closed_signal:
            return self._closed_signal.wait_for(lambda: any(m == model for m, _ in self.closed), timeout)

    def _note_closed(self, model: str) -> None:
        with self._closed_signal:
            self.closed.append((model, time.monotonic()))
            self._closed_signal.notify_all()

    # ------------------------------------------------------------------ handlers

    async def _begin(self, request: web.Request) -> tuple[dict[str, Any], Fault]:
        raw = await request.read()
        body = orjson.loads(raw) if raw else {}
        if self.record:
            self.received.append(Received(request.path, body, dict(request.headers)))
        fault = self._next(str(body.get("model", "")))
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        return body, fault

    def _error_response(self, fault: Fault) -> web.StreamResponse | None:
        if fault.status == 200 and fault.body is None:
            return None
        headers = {}
        if fault.retry_after is not None:
            headers["retry-after"] = str(fault.retry_after)
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        return web.Response(
            status=fault.status, body=fault.body or b"", headers=headers, content_type="application/json"
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._begin(request)
        if fault.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        error = self._error_response(fault)
        if error is not None:
            return error
        problem = invalid_request(body)
        if problem is not None:  # as OpenAI answers it
            return web.json_response(
                {"error": {"message": problem, "type": "invalid_request_error", "param": None, "code": None}}, status=400
            )
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(build_completion(body, body.get("model", "?"))),
                                content_type="application/json", headers=dict(fault.headers))
        options = body.get("stream_options") or {}
        chunks = [b"data: " + orjson.dumps(c) + b"\n\n" for c in build_chunks(body, body.get("model", "?"), options.get("include_usage") is True)]
        if fault.no_finish:
            chunks = [c for c in chunks if b'"finish_reason":"' not in c]
        else:
            chunks.append(b"data: [DONE]\n\n")
        return await self._stream(request, chunks, fault, str(body.get("model", "")))

    async def _stream(
        self, request: web.Request, chunks: list[bytes], fault: Fault, model: str = ""
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        try:
            await response.prepare(request)
            await self._write_chunks(request, response, chunks, fault)
        except ConnectionError:
            # The client (the gateway) hung up mid-stream: what a disconnect test waits for.
            self._note_closed(model)
        except asyncio.CancelledError:
            self._note_closed(model)
            raise
        return response

    async def _write_chunks(
        self, request: web.Request, response: web.StreamResponse, chunks: list[bytes], fault: Fault
    ) -> None:
        if fault.first_chunk_delay:
            await asyncio.sleep(fault.first_chunk_delay)
        for index, chunk in enumerate(chunks):
            if fault.after_chunks is not None and index == fault.after_chunks:
                if fault.malformed:
                    await response.write(b'data: {"id": "broken", "choices": [\n\n')
                if fault.stall:
                    await asyncio.sleep(fault.stall)
                if fault.cut:
                    assert request.transport is not None
                    request.transport.close()
                    return
            if fault.chunk_delay and index:
                await asyncio.sleep(fault.chunk_delay)
            try:
                await response.write(chunk)
            except ConnectionResetError:
                self.abandoned.set()
                raise
        await response.write_eof()

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._begin(request)
        error = self._error_response(fault)
        if error is not None:
            return error
        return web.Response(body=orjson.dumps(build_embeddings(body, body.get("model", "?"))), content_type="application/json")

    async def models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": []})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages API, JSON and streaming, text and tool use."""
        body, fault = await self._begin(request)
        error = self._error_response(fault)
        if error is not None:
            return error
        openai_body = {"messages": _anthropic_to_openai_messages(body), "tools": _anthropic_tools(body)}
        completion = build_completion(openai_body, body.get("model", "?"))
        message = completion["choices"][0]["message"]
        usage = {"input_tokens": count_tokens(openai_body), "output_tokens": completion["usage"]["completion_tokens"]}
        content: list[dict[str, Any]] = []
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            content.append({"type": "tool_use", "id": "toolu_" + call["id"][5:], "name": call["function"]["name"],
                            "input": orjson.loads(call["function"]["arguments"])})
            stop = "tool_use"
        else:
            content.append({"type": "text", "text": message["content"]})
            stop = "end_turn"
        msg = {"id": "msg_" + completion["id"][9:], "type": "message", "role": "assistant", "model": body.get("model"),
               "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(msg), content_type="application/json")
        return await self._stream(request, _anthropic_events(msg), fault)


def _anthropic_to_openai_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in body.get("messages") or ():
        content = m.get("content")
        if isinstance(content, list):
            if any(b.get("type") == "tool_result" for b in content if isinstance(b, dict)):
                result = next(b for b in content if b.get("type") == "tool_result")
                inner = result.get("content")
                text = inner if isinstance(inner, str) else " ".join(b.get("text", "") for b in inner or ())
                out.append({"role": "tool", "content": text})
                continue
            content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
        out.append({"role": m.get("role"), "content": content})
    return out


def _anthropic_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t["name"], "parameters": t.get("input_schema") or {}}}
            for t in body.get("tools") or ()]


def _anthropic_events(msg: dict[str, Any]) -> list[bytes]:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    start = {**msg, "content": [], "stop_reason": None, "usage": {"input_tokens": msg["usage"]["input_tokens"], "output_tokens": 1}}
    events = [event("message_start", {"type": "message_start", "message": start})]
    block = msg["content"][0]
    if block["type"] == "text":
        events.append(event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
        for i, word in enumerate(block["text"].split(" ")):
            delta = {"type": "text_delta", "text": (" " if i else "") + word}
            events.append(event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    else:
        head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        events.append(event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": head}))
        delta = {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}
        events.append(event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    events.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(event("message_delta", {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                                          "usage": {"output_tokens": msg["usage"]["output_tokens"]}}))
    events.append(event("message_stop", {"type": "message_stop"}))
    return events


def build_app(upstream: Upstream) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", upstream.chat)
        app.router.add_post(f"{prefix}/embeddings", upstream.embeddings)
        app.router.add_get(f"{prefix}/models", upstream.models)
    app.router.add_post("/v1/messages", upstream.messages)
    return app


class UpstreamServer(LoopbackServer):
    """Runs an `Upstream` on 127.0.0.1 in a thread of its own, with its own event loop."""

    def __init__(self, upstream: Upstream | None = None) -> None:
        self.upstream = upstream or Upstream()
        super().__init__(build_app(self.upstream))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description="Lockgate's loopback test upstream (OpenAI and Anthropic APIs).")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every response")
    args = parser.parse_args()
    upstream = Upstream(latency=args.latency)
    upstream.record = False  # a long benchmark run must not grow memory
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(build_app(upstream), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
