"""An Anthropic Messages API request, read into the chat body every other stage of the gateway speaks.

`POST /v1/messages` serves clients written against Anthropic's API (the `anthropic` SDK, Claude-based
agent frameworks). Rather than a second pipeline, the request becomes an OpenAI chat body here, so
routing, fallbacks, budgets, policies, holds and traces treat it exactly like a chat completion; the
answer is turned back by `anthropic_reply`. Both directions are plain functions over dicts.

What maps: `system` (a string or text blocks), text and image blocks, `tool_use` and `tool_result`
blocks (a tool result becomes a `tool` message, as OpenAI places them), `tools` and `tool_choice`
(`disable_parallel_tool_use` too), `max_tokens`, `stop_sequences`, `temperature`, `top_p`,
`metadata.user_id`, `stream`. What a chat upstream has no equivalent for is left out: `top_k`,
`thinking`, `service_tier`, `cache_control` marks, thinking blocks an agent sends back. What cannot be
carried without changing its meaning (documents, server tools, images inside a tool result) is a 400
naming the field, as is every malformed field: a client learns at once rather than from a model
that never saw part of its request.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequest

Body = dict[str, Any]

# Block types an agent sends back from an earlier answer that a chat upstream cannot take: dropped.
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def chat_body(request: Body) -> Body:
    """The OpenAI chat body for an Anthropic Messages request (validated; errors name the field)."""
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required (a non-empty string).", param="model")
    max_tokens = request.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required (an integer of at least 1).", param="max_tokens")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: Field required (a non-empty array of messages).", param="messages")

    out: list[Body] = []
    system = request.get("system")
    if system is not None:
        out.append({"role": "system", "content": _system_text(system)})
    for index, message in enumerate(messages):
        out += _messages(message, f"messages.{index}")
    # As `max_completion_tokens`, the chat API's current name: a Claude client routed to one of OpenAI's
    # reasoning models would get a 400 for `max_tokens`; litellm maps it back for Anthropic.
    body: Body = {"model": model, "messages": out, "max_completion_tokens": max_tokens}

    for name in ("temperature", "top_p"):
        value = request.get(name)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise InvalidRequest(f"{name}: Input should be a number.", param=name)
            body[name] = value
    stops = request.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest("stop_sequences: Input should be an array of strings.", param="stop_sequences")
        if stops:
            body["stop"] = stops
    tools = request.get("tools")
    if tools is not None:
        body["tools"] = _tools(tools)
    choice = request.get("tool_choice")
    if choice is not None:
        _tool_choice(choice, body)
    metadata = request.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidRequest("metadata: Input should be an object.", param="metadata")
        user = metadata.get("user_id")
        if isinstance(user, str) and user:
            body["user"] = user
    stream = request.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean.", param="stream")
    if stream:
        # The closing `message_delta` reports usage, which a chat stream gives only when asked.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _system_text(system: object) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        texts = []
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise InvalidRequest(f"system.{index}: Input should be a text block.", param=f"system.{index}")
            texts.append(block["text"])
        return "\n\n".join(texts)
    raise InvalidRequest("system: Input should be a string or an array of text blocks.", param="system")


def _messages(message: object, path: str) -> list[Body]:
    """One Anthropic message as one or more chat messages (tool results become `tool` messages)."""
    if not isinstance(message, dict):
        raise InvalidRequest(f"{path}: Input should be an object.", param=path)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise InvalidRequest(f"{path}.role: Input should be 'user' or 'assistant'.", param=f"{path}.role")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{path}.content: Input should be a string or an array of content blocks.", param=f"{path}.content"
        )
    if role == "assistant":
        return [_assistant(content, f"{path}.content")]
    return _user(content, f"{path}.content")


def _assistant(blocks: list[Any], path: str) -> Body:
    texts: list[str] = []
    calls: list[Body] = []
    for index, block in enumerate(blocks):
        where = f"{path}.{index}"
        kind = _block_type(block, where)
        if kind == "text":
            texts.append(_text(block, where))
        elif kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise InvalidRequest(f"{where}: a tool_use block needs an 'id' and a 'name'.", param=where)
            arguments = block.get("input", {})
            calls.append({
                "id": call_id, "type": "function",
                "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
            })
        elif kind not in _DROPPED_BLOCKS:
            raise InvalidRequest(f"{where}.type: '{kind}' blocks are not supported in assistant messages.",
                                 param=f"{where}.type")
    message: Body = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[Any], path: str) -> list[Body]:
    results: list[Body] = []
    parts: list[Body] = []
    for index, block in enumerate(blocks):
        where = f"{path}.{index}"
        kind = _block_type(block, where)
        if kind == "tool_result":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(f"{where}.tool_use_id: Field required.", param=f"{where}.tool_use_id")
            text = _tool_result_text(block.get("content"), f"{where}.content")
            if block.get("is_error") is True:
                text = f"Error: {text}" if text else "Error"
            results.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind == "text":
            parts.append({"type": "text", "text": _text(block, where)})
        elif kind == "image":
            parts.append(_image(block, where))
        elif kind not in _DROPPED_BLOCKS:
            raise InvalidRequest(f"{where}.type: '{kind}' blocks are not supported by this gateway.",
                                 param=f"{where}.type")
    out = results
    if parts:
        one_text = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if one_text else parts})
    if not out:
        raise InvalidRequest(f"{path}: a user message needs at least one block.", param=path)
    return out


def _block_type(block: object, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise InvalidRequest(f"{where}: Input should be a content block with a 'type'.", param=where)
    return block["type"]  # type: ignore[no-any-return]


def _text(block: Body, where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}.text: Input should be a string.", param=f"{where}.text")
    return text


def _image(block: Body, where: str) -> Body:
    source = block.get("source")
    if isinstance(source, dict):
        if source.get("type") == "base64" and isinstance(source.get("media_type"), str) \
                and isinstance(source.get("data"), str):
            return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise InvalidRequest(
        f"{where}.source: an image needs a base64 source (media_type, data) or a url source.", param=f"{where}.source"
    )


def _tool_result_text(content: object, where: str) -> str:
    """A tool result's content as the text a `tool` message carries."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, block in enumerate(content):
            kind = _block_type(block, f"{where}.{index}")
            if kind != "text":
                raise InvalidRequest(
                    f"{where}.{index}.type: only text can be carried in a tool result through this gateway.",
                    param=f"{where}.{index}.type",
                )
            texts.append(_text(block, f"{where}.{index}"))
        return "\n\n".join(texts)
    raise InvalidRequest(f"{where}: Input should be a string or an array of text blocks.", param=where)


def _tools(tools: object) -> list[Body]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be an array of tools.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"{where}.name: Field required.", param=f"{where}.name")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise InvalidRequest(
                f"{where}.type: server tools ('{kind}') run at Anthropic and cannot be routed through this gateway.",
                param=f"{where}.type",
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise InvalidRequest(f"{where}.input_schema: Field required (a JSON schema object).",
                                 param=f"{where}.input_schema")
        function: Body = {"name": tool["name"], "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: object, body: Body) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise InvalidRequest(
            "tool_choice: Input should be {'type': 'auto' | 'any' | 'none'} or {'type': 'tool', 'name': ...}.",
            param="tool_choice",
        )
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True and kind != "none":
        body["parallel_tool_calls"] = False
