"""An OpenAI Responses API request, read into the chat body every other stage of the gateway speaks.

`POST /v1/responses` serves clients that use OpenAI's newer API (the OpenAI Agents SDK does by
default). As for Anthropic's API (`anthropic_request`), the request becomes a chat body here, so
every stage treats it as a chat completion, and `responses_reply` turns the answer back.

What maps: `input` (a string, or items: messages with text and image parts, `function_call` and
`function_call_output` items), `instructions`, function `tools`, `tool_choice`, `parallel_tool_calls`,
`max_output_tokens`, `temperature`, `top_p`, `user`, `text.format` (JSON schema or JSON object output),
`reasoning.effort`, `stream`. Reasoning items an agent sends back are dropped (a chat upstream cannot
take them). The gateway keeps no responses: `previous_response_id` and item references are a 400
saying to send the whole conversation, as are built-in tools (web search, file search...), which run
at OpenAI. Other fields (`store`, `include`, `truncation`, `metadata`...) are accepted and left out.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest

Body = dict[str, Any]

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_DROPPED_ITEMS = frozenset({"reasoning"})


def chat_body(request: Body) -> Body:
    """The OpenAI chat body for a Responses API request (validated; errors name the field)."""
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    if request.get("previous_response_id") is not None:
        raise InvalidRequest(
            "This gateway keeps no responses: send the whole conversation as 'input' instead of "
            "'previous_response_id'.", param="previous_response_id",
        )
    messages: list[Body] = []
    instructions = request.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("Invalid type for 'instructions': expected a string.", param="instructions")
        messages.append({"role": "system", "content": instructions})
    messages += _input(request.get("input"))
    if not messages:
        raise InvalidRequest("'input' must not be empty.", param="input")
    body: Body = {"model": model, "messages": messages}

    limit = request.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequest("Invalid 'max_output_tokens': expected an integer of at least 1.",
                                 param="max_output_tokens")
        # The chat API's current name for it: OpenAI's reasoning models refuse `max_tokens` (a 400), and
        # litellm maps this one for other providers. Both count reasoning tokens, as max_output_tokens does.
        body["max_completion_tokens"] = limit
    for name in ("temperature", "top_p"):
        value = request.get(name)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise InvalidRequest(f"Invalid type for '{name}': expected a number.", param=name)
            body[name] = value
    parallel = request.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise InvalidRequest("Invalid type for 'parallel_tool_calls': expected a boolean.",
                                 param="parallel_tool_calls")
        body["parallel_tool_calls"] = parallel
    user = request.get("user")
    if isinstance(user, str) and user:
        body["user"] = user
    tools = request.get("tools")
    if tools is not None:
        converted = _tools(tools)
        if converted:
            body["tools"] = converted
    choice = request.get("tool_choice")
    if choice is not None:
        body["tool_choice"] = _tool_choice(choice)
    _text_format(request.get("text"), body)
    reasoning = request.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        body["reasoning_effort"] = reasoning["effort"]
    stream = request.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("Invalid type for 'stream': expected a boolean.", param="stream")
    if stream:
        # `response.completed` reports usage, which a chat stream gives only when asked.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _input(given: object) -> list[Body]:
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    if not isinstance(given, list):
        raise InvalidRequest("Invalid 'input': expected a string or an array of input items.", param="input")
    out: list[Body] = []
    for index, item in enumerate(given):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"Invalid '{where}': expected an object.", param=where)
        kind = _kind(item, "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            _function_call(item, where, out)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(f"Missing required parameter: '{where}.call_id'.", param=f"{where}.call_id")
            out.append({"role": "tool", "tool_call_id": call_id, "content": _output_text(item.get("output"), where)})
        elif kind == "item_reference":
            raise InvalidRequest(
                f"'{where}' is an item reference: this gateway keeps no items; send the item itself.", param=where
            )
        elif kind not in _DROPPED_ITEMS:
            raise InvalidRequest(f"Unsupported '{where}.type': '{kind}' items are not supported by this gateway.",
                                 param=f"{where}.type")
    return out


def _kind(item: Body, default: str = "") -> str:
    """An item's or part's `type`; anything but a string reads as no known type (a set lookup of a
    list would raise: found by sending mutated requests)."""
    kind = item.get("type", default)
    return kind if isinstance(kind, str) else ""


def _message(item: Body, where: str) -> Body:
    given_role = item.get("role")
    role = _ROLES.get(given_role) if isinstance(given_role, str) else None
    if role is None:
        raise InvalidRequest(
            f"Invalid '{where}.role': expected one of 'user', 'assistant', 'system' or 'developer'.",
            param=f"{where}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"Invalid '{where}.content': expected a string or an array of content parts.",
                             param=f"{where}.content")
    parts: list[Body] = []
    for index, given in enumerate(content):
        at = f"{where}.content[{index}]"
        part: Body = given if isinstance(given, dict) else {}
        kind, text, image = _kind(part), part.get("text"), part.get("image_url")
        if kind in _TEXT_PARTS and isinstance(text, str):
            parts.append({"type": "text", "text": text})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and role == "user" and isinstance(image, str):
            detail = part.get("detail")
            parts.append({"type": "image_url", "image_url": {"url": image, **({"detail": detail} if detail else {})}})
        else:
            raise InvalidRequest(
                f"Unsupported '{at}': this gateway carries text parts, and images given by 'image_url' from the user.",
                param=at,
            )
    if role != "user" or all(part["type"] == "text" for part in parts):
        # Only a user message takes parts in every chat upstream; the others take their text.
        return {"role": role, "content": "".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _function_call(item: Body, where: str, out: list[Body]) -> None:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise InvalidRequest(f"Missing required parameter: '{where}' needs a 'call_id' and a 'name'.", param=where)
    if not isinstance(arguments, str):
        raise InvalidRequest(f"Invalid type for '{where}.arguments': expected a string.", param=f"{where}.arguments")
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = out[-1] if out else None
    # Calls made in one turn arrive as consecutive items; the chat shape holds them in one message.
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        out.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output_text(output: object, where: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for index, part in enumerate(output):
            if not isinstance(part, dict) or _kind(part) not in _TEXT_PARTS or not isinstance(part.get("text"), str):
                raise InvalidRequest(f"Unsupported '{where}.output[{index}]': only text is carried in a tool's output.",
                                     param=f"{where}.output[{index}]")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidRequest(f"Invalid type for '{where}.output': expected a string.", param=f"{where}.output")


def _tools(tools: object) -> list[Body]:
    if not isinstance(tools, list):
        raise InvalidRequest("Invalid type for 'tools': expected an array.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise InvalidRequest(
                f"Unsupported '{where}.type': only function tools can be routed through this gateway "
                f"(built-in tools run at OpenAI).", param=f"{where}.type",
            )
        assert isinstance(tool, dict)
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"Missing required parameter: '{where}.name'.", param=f"{where}.name")
        function: Body = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: object) -> object:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest(
        "Invalid 'tool_choice': expected 'auto', 'none', 'required' or {'type': 'function', 'name': ...}.",
        param="tool_choice",
    )


def _text_format(text: object, body: Body) -> None:
    if text is None:
        return
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        body["response_format"] = {"type": "json_object"}
        return
    if kind == "json_schema" and isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
        schema: Body = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if isinstance(fmt.get("strict"), bool):
            schema["strict"] = fmt["strict"]
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
        return
    raise InvalidRequest("Invalid 'text.format': expected a 'text', 'json_object' or 'json_schema' format.",
                         param="text.format")
