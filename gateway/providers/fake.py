"""The built-in fake provider: deterministic answers, scripted tool calls, behaviour by model name.

Used by `lockgate demo` and by tests, with no network and no key. A deployment's model
`fake/<name>` picks its behaviour from dash-separated words in the name:

- `slow-300ms` / `slow-2s`: wait that long before the first token.
- `drip-50ms`: wait that long between stream chunks.
- `error-503`: always fail with that HTTP status.
- `flaky-50`: fail that percentage of calls with 503 (a seeded, repeatable sequence).
- `ratelimit-2s`: always answer 429 with that `retry-after`.
- `down`: behave like an unreachable host.

Answers are deterministic: the reply names the last user message. When the request offers tools and
the last message is not a tool result, the reply calls the first tool (or the one `tool_choice`
names) with arguments built from its JSON schema; after a tool result it reports that result.
The response builders are shared with the loopback test upstream in `gateway.testing`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import UpstreamFailure
from gateway.providers.base import DONE_EVENT, JsonReply, Summary, UpstreamCall, Usage

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")


@dataclass(frozen=True, slots=True)
class Behaviour:
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    error_status: int | None = None
    fail_percent: int = 0
    rate_limit_after: float | None = None
    down: bool = False

    @classmethod
    def from_model(cls, name: str) -> Behaviour:
        words = name.split("-")
        found: dict[str, Any] = {}
        for word, value in zip(words, [*words[1:], ""], strict=True):
            if word == "slow" and (seconds := _duration(value)) is not None:
                found["first_token_delay"] = seconds
            elif word == "drip" and (seconds := _duration(value)) is not None:
                found["chunk_delay"] = seconds
            elif word == "error" and value.isdigit():
                found["error_status"] = int(value)
            elif word == "flaky" and value.isdigit():
                found["fail_percent"] = min(100, int(value))
            elif word == "ratelimit" and (seconds := _duration(value)) is not None:
                found["rate_limit_after"] = seconds
            elif word == "down":
                found["down"] = True
        return cls(**found)


def _duration(text: str) -> float | None:
    match = _DURATION.match(text)
    if not match:
        return None
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


class FakeProvider:
    """In-process provider; each deployment's behaviour is parsed once and cached."""

    def __init__(self, seed: int = 7) -> None:
        self._behaviours: dict[str, Behaviour] = {}
        self._random = random.Random(seed)

    async def aclose(self) -> None:
        return None

    def _behaviour(self, call: UpstreamCall) -> Behaviour:
        name = call.deployment.upstream_model
        behaviour = self._behaviours.get(name)
        if behaviour is None:
            behaviour = self._behaviours[name] = Behaviour.from_model(name)
        return behaviour

    async def _misbehave(self, behaviour: Behaviour) -> None:
        if behaviour.down:
            raise UpstreamFailure("connect", "cannot connect (fake provider is down)")
        if behaviour.rate_limit_after is not None:
            raise UpstreamFailure(
                "status", "fake rate limit reached", status=429, retry_after=behaviour.rate_limit_after
            )
        if behaviour.error_status is not None:
            raise UpstreamFailure("status", "fake provider error", status=behaviour.error_status)
        if behaviour.fail_percent and self._random.randrange(100) < behaviour.fail_percent:
            raise UpstreamFailure("status", "fake provider flaked", status=503)
        if behaviour.first_token_delay:
            await asyncio.sleep(behaviour.first_token_delay)

    async def chat(self, call: UpstreamCall) -> JsonReply:
        await self._misbehave(self._behaviour(call))
        _refuse_invalid(call.body)
        completion = build_completion(call.body, call.deployment.upstream_model)
        summary = Summary()
        summary.read_completion(completion)
        return JsonReply(orjson.dumps(completion), summary)

    async def chat_stream(self, call: UpstreamCall) -> FakeStream:
        behaviour = self._behaviour(call)
        await self._misbehave(behaviour)
        _refuse_invalid(call.body)
        return FakeStream(call, behaviour)

    async def embeddings(self, call: UpstreamCall) -> JsonReply:
        await self._misbehave(self._behaviour(call))
        body = build_embeddings(call.body, call.deployment.upstream_model)
        return JsonReply(
            orjson.dumps(body),
            Summary(response_model=body["model"], usage=Usage(input_tokens=body["usage"]["prompt_tokens"])),
        )


class FakeStream:
    def __init__(self, call: UpstreamCall, behaviour: Behaviour) -> None:
        self.summary = Summary()
        self._call = call
        self._behaviour = behaviour

    async def aclose(self) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        chunks = build_chunks(self._call.body, self._call.deployment.upstream_model, include_usage=True)
        for chunk in chunks:
            self.summary.read_chunk(chunk)
            if not chunk["choices"] and not self._call.include_usage:
                continue
            if self._behaviour.chunk_delay:
                await asyncio.sleep(self._behaviour.chunk_delay)
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield DONE_EVENT


def _refuse_invalid(body: dict[str, Any]) -> None:
    problem = invalid_request(body)
    if problem is not None:
        raise UpstreamFailure("status", problem, status=400)


def invalid_request(body: dict[str, Any]) -> str | None:
    """What OpenAI would refuse with a 400 in the parts of a chat request the builders read, or None.

    The fake answered a malformed `tools` with a crash (a 500), which the gateway rightly took for
    a broken upstream; a real one answers 400 (found by sending random malformed requests).
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return "Invalid 'messages': expected an array of objects."
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "Invalid 'tools': expected an array."
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                return f"Invalid 'tools[{i}]': expected a function with a name."
            schema = function.get("parameters", {})
            if not isinstance(schema, dict) or not isinstance(schema.get("properties", {}), dict) \
                    or not isinstance(schema.get("required", []), list):
                return f"Invalid 'tools[{i}].function.parameters': expected a JSON schema object."
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, str) and not (
        isinstance(choice, dict) and isinstance(choice.get("function", {}), dict)
    ):
        return "Invalid 'tool_choice'."
    return None


# ---------------------------------------------------------------- deterministic response builders


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def count_tokens(body: dict[str, Any]) -> int:
    """A stable stand-in for a tokenizer: words plus a few per message."""
    total = 0
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            total += 3 + len(_text_of(message.get("content")).split())
    return max(total, 1)


def _example_value(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "integer" or kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return "example"


def _tool_to_call(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    messages = body.get("messages") or [{}]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or (isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"):
        return None
    tool = tools[0]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        tool = next((t for t in tools if t["function"].get("name") == wanted), tool)
    function = tool.get("function") or {}
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    arguments = {name: _example_value(properties.get(name) or {}) for name in required}
    digest = hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]
    return {"id": f"call_{digest}", "name": function.get("name", "tool"), "arguments": orjson.dumps(arguments).decode()}


def _reply_words(body: dict[str, Any]) -> list[str]:
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        text = f"The tool returned: {_text_of(last.get('content'))[:200]}"
    else:
        user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        asked = " ".join(_text_of(user.get("content")).split()[:12]) or "nothing"
        text = f"This is Lockgate's fake provider. You said: {asked}"
    return text.split(" ")


def _max_output(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if isinstance(value, int) and value > 0 else None


def _response_id(body: dict[str, Any]) -> str:
    return "chatcmpl-" + hashlib.sha256(orjson.dumps(body.get("messages"))).hexdigest()[:24]


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def build_completion(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A whole `chat.completion` object answering `body`."""
    call = _tool_to_call(body)
    prompt_tokens = count_tokens(body)
    if call is not None:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}],
        }
        finish, completion_tokens = "tool_calls", 8
    else:
        words = _reply_words(body)
        limit = _max_output(body)
        finish = "stop"
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        message = {"role": "assistant", "content": " ".join(words), "refusal": None}
        completion_tokens = len(words)
    return {
        "id": _response_id(body),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_lockgate_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(prompt_tokens, completion_tokens),
    }


def build_chunks(body: dict[str, Any], model: str, include_usage: bool) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a stream answering `body`, usage chunk last."""
    base = {"id": _response_id(body), "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_lockgate_fake"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    call = _tool_to_call(body)
    chunks = [chunk({"role": "assistant", "content": ""})]
    if call is not None:
        head = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": ""}}
        chunks.append(chunk({"tool_calls": [head]}))
        arguments = call["arguments"]
        for start in range(0, len(arguments), 8):
            piece = {"index": 0, "function": {"arguments": arguments[start : start + 8]}}
            chunks.append(chunk({"tool_calls": [piece]}))
        chunks.append(chunk({}, "tool_calls"))
        completion_tokens = 8
    else:
        words = _reply_words(body)
        limit = _max_output(body)
        finish = "stop"
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        chunks.extend(chunk({"content": (" " if i else "") + word}) for i, word in enumerate(words))
        chunks.append(chunk({}, finish))
        completion_tokens = len(words)
    if include_usage:
        chunks.append({**base, "choices": [], "usage": _usage(count_tokens(body), completion_tokens)})
    return chunks


def build_embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A `list` of deterministic unit vectors, one per input."""
    raw_input = body.get("input")
    inputs = raw_input if isinstance(raw_input, list) and raw_input and not isinstance(raw_input[0], int) else [raw_input]
    requested = body.get("dimensions")
    dimensions = requested if isinstance(requested, int) and requested > 0 else 16
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else orjson.dumps(item).decode()
        tokens += max(1, len(text.split()))
        data.append({"object": "embedding", "index": index, "embedding": _vector(text, dimensions)})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _vector(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(seed + struct.pack(">I", counter)).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    values = values[:dimensions]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]
