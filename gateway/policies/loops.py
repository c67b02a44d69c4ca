"""Loop detection: an agent calling the same tool with the same arguments again and again.

The gateway sees the whole conversation on every request, so the history is read from the
`messages` themselves: each assistant tool call with its arguments, paired with the result the tool
returned. Two shapes count as a loop, looking back from the newest call:

- a repeat: the same tool, same arguments, and the same result (an error repeats too) in a row;
- a ping-pong: two different calls alternating (A, B, A, B, ...), counted in A-B rounds.

The longer of the two is the loop's length; the engine escalates on it (note, hold, deny).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Step:
    tool: str
    arguments: str
    # A digest of the tool's result; None while the call has no result in the conversation yet.
    result: str | None

    def same_call(self, other: Step) -> bool:
        if self.tool != other.tool or self.arguments != other.arguments:
            return False
        return self.result is None or other.result is None or self.result == other.result


@dataclass(frozen=True, slots=True)
class Loop:
    kind: str  # "repeat" or "ping_pong"
    length: int
    tools: tuple[str, ...]
    arguments: str

    def describe(self) -> str:
        if self.kind == "repeat":
            return (
                f"the tool '{self.tools[0]}' has been called {self.length} times in a row with the same "
                f"arguments {self.arguments} and the same result each time"
            )
        return (
            f"the calls '{self.tools[0]}' and '{self.tools[1]}' have alternated {self.length} times "
            "with the same arguments and results"
        )


def history(messages: Any, window: int) -> list[Step]:
    """The conversation's tool calls, oldest first, at most the last `window`."""
    if not isinstance(messages, list):
        return []
    calls: list[tuple[str, str, str]] = []  # (id, tool, canonical arguments)
    results: dict[str, str] = {}
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict):
                    function = call.get("function") or {}
                    calls.append((str(call.get("id") or ""), str(function.get("name") or ""),
                                  _canonical(function.get("arguments"))))
        elif role == "tool":
            results[str(message.get("tool_call_id") or "")] = _digest(message.get("content"))
    return [Step(tool, args, results.get(cid)) for cid, tool, args in calls[-window:]]


def detect(steps: list[Step]) -> Loop | None:
    """The longest loop ending at the newest call, if any call repeats at all."""
    if len(steps) < 2:
        return None
    last = steps[-1]
    run = 1
    for step in reversed(steps[:-1]):
        if not step.same_call(last):
            break
        run += 1
    best = Loop("repeat", run, (last.tool,), last.arguments) if run > 1 else None
    # Ping-pong: period two, the two calls different.
    a, b = steps[-1], steps[-2]
    if not a.same_call(b):
        length = 2
        while length < len(steps) and steps[-1 - length].same_call(steps[-1 - (length % 2)]):
            length += 1
        rounds = length // 2
        if rounds > 1 and (best is None or rounds > best.length):
            best = Loop("ping_pong", rounds, (b.tool, a.tool), a.arguments)
    return best


def _canonical(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return str(arguments)
    canonical: str = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
    return canonical


def _digest(content: Any) -> str:
    raw = content.encode() if isinstance(content, str) else orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=12).hexdigest()
