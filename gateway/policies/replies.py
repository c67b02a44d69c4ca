"""What a client receives for a held response: the decision, or word that it is still awaited.

Decisions become ordinary chat completions: approved and edited calls are ordinary `tool_calls`;
a denied call is removed and explained in the assistant's text, never replaced by an invented tool.
For streams the same content is written as `chat.completion.chunk` events.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.policies.approvals import Approval

DONE = b"data: [DONE]\n\n"
KEEP_ALIVE = b": keep-alive\n\n"


def decided_parts(approval: Approval) -> tuple[str, list[dict[str, Any]]]:
    """The explanation text for denied calls, and the tool calls that go to the agent."""
    notes, calls = [], []
    for call in approval.calls:
        decision = call["decision"]
        if decision["action"] == "deny":
            who = "it expired unreviewed" if decision["by"] == "lockgate" else f"{decision['by']} denied it"
            why = f" ({decision['reason']})" if decision.get("reason") and decision["by"] != "lockgate" else ""
            notes.append(
                f"The call to `{call['name']}` was not carried out: {who}{why}. "
                "Do not retry it; continue without it or tell the user."
            )
            continue
        arguments = decision.get("arguments") if decision["action"] == "edit" else None
        calls.append({
            "id": call["id"], "type": "function",
            "function": {"name": call["name"], "arguments": arguments if arguments is not None else call["arguments"]},
        })
    return " ".join(notes), calls


def awaiting_text(approval: Approval) -> str:
    names = ", ".join(f"`{c['name']}`" for c in approval.calls if not c.get("decision"))
    return (
        f"The action {names} is awaiting human approval (approval id {approval.id}). "
        + ("The decision will be delivered on this session's next request."
           if approval.value.get("session_id") else "Send the same request again to receive the decision.")
    )


def completion(approval: Approval, *, decided: bool, text_sent: bool = False) -> dict[str, Any]:
    """The held response rewritten for the client: with the decision, or saying it is awaited."""
    held = approval.value["response"]
    original = "" if text_sent else (held.get("content") or "")
    if decided:
        extra, calls = decided_parts(approval)
    else:
        extra, calls = awaiting_text(approval), []
    content = " ".join(t for t in (original, extra) if t) or None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": held.get("id") or f"chatcmpl-{approval.id}",
        "object": "chat.completion",
        "created": int(approval.value["created_at"]),
        "model": held.get("model") or approval.value["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if calls else "stop"}],
        **({"usage": held["usage"]} if held.get("usage") else {}),
    }


def as_chunks(body: dict[str, Any], *, with_role: bool = True) -> list[bytes]:
    """A completion as stream events (role, text, one event per tool call, finish), `[DONE]` last."""
    base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"]}
    choice = body["choices"][0]
    message = choice["message"]

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    events = [event({"role": "assistant", "content": ""})] if with_role else []
    if message.get("content"):
        events.append(event({"content": message["content"]}))
    for index, call in enumerate(message.get("tool_calls") or ()):
        events.append(event({"tool_calls": [{"index": index, **call}]}))
    events.append(event({}, choice["finish_reason"]))
    events.append(DONE)
    return events
