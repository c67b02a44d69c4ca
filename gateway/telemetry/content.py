"""Message content in the GenAI conventions' format, for operators who opt in to capturing it.

`gen_ai.input.messages`, `gen_ai.output.messages` and `gen_ai.system_instructions` are JSON strings
of role + parts (`text`, `tool_call`, `tool_call_response`). Input comes from the parsed request
body; output is collected from the bytes sent to the client (a JSON completion, or SSE chunks
assembled by choice), so nothing in the providers changes for it. Only runs when capture is on.
"""

from __future__ import annotations

from typing import Any

import orjson

Part = dict[str, Any]


def _parts(content: Any) -> list[Part]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[Part] = []
    if isinstance(content, list):
        for item in content:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "text":
                parts.append({"type": "text", "content": item.get("text", "")})
            elif item.get("type") == "image_url":
                url = (item.get("image_url") or {}).get("url", "")
                # Inline images are not copied onto spans: only that there was one.
                parts.append({"type": "uri", "modality": "image", "uri": url} if not url.startswith("data:")
                             else {"type": "blob", "modality": "image"})
            else:
                parts.append({"type": str(item.get("type", "unknown"))})
    return parts


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    return raw


def _tool_calls(calls: Any) -> list[Part]:
    parts: list[Part] = []
    for call in calls or ():
        if isinstance(call, dict):
            function = call.get("function") or {}
            parts.append(
                {"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                 "arguments": _arguments(function.get("arguments"))}
            )
    return parts


def input_messages(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(`gen_ai.input.messages`, `gen_ai.system_instructions`) as JSON strings, from a chat body."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None, None
    out: list[dict[str, Any]] = []
    system: list[Part] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content")))
        elif role == "tool":
            out.append({"role": "tool", "parts": [
                {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": message.get("content")}
            ]})
        else:
            parts = _parts(message.get("content")) + _tool_calls(message.get("tool_calls"))
            out.append({"role": role, "parts": parts})
    return orjson.dumps(out).decode(), (orjson.dumps(system).decode() if system else None)


class OutputCollector:
    """Reads the response bytes as they go to the client and assembles the output messages."""

    def __init__(self, stream: bool) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._choices: dict[int, dict[str, Any]] = {}

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self._stream:
            self._drain_events()

    def _drain_events(self) -> None:
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return
            event = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            for line in event.split(b"\n"):
                if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                    try:
                        self._read_chunk(orjson.loads(line[5:]))
                    except orjson.JSONDecodeError:
                        continue

    def _read_chunk(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        for choice in chunk.get("choices") or ():
            state = self._choices.setdefault(choice.get("index", 0), {"text": [], "calls": {}, "finish": None})
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                state["text"].append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = state["calls"].setdefault(call.get("index", 0), {"id": None, "name": "", "arguments": ""})
                function = call.get("function") or {}
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                state["finish"] = choice["finish_reason"]

    def output_messages(self) -> str | None:
        """`gen_ai.output.messages` as a JSON string, or None if nothing could be read."""
        if not self._stream:
            return self._from_completion()
        out = []
        for _, state in sorted(self._choices.items()):
            parts: list[Part] = [{"type": "text", "content": "".join(state["text"])}] if state["text"] else []
            for _, call in sorted(state["calls"].items()):
                parts.append({"type": "tool_call", "id": call["id"], "name": call["name"],
                              "arguments": _arguments(call["arguments"])})
            out.append({"role": "assistant", "parts": parts, "finish_reason": state["finish"]})
        return orjson.dumps(out).decode() if out else None

    def _from_completion(self) -> str | None:
        try:
            body = orjson.loads(self._buffer)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            return None
        out = []
        for choice in body["choices"]:
            message = choice.get("message") or {}
            parts = _parts(message.get("content")) + _tool_calls(message.get("tool_calls"))
            out.append({"role": message.get("role", "assistant"), "parts": parts,
                        "finish_reason": choice.get("finish_reason")})
        return orjson.dumps(out).decode()
