"""Loop detection: an agent calling the same tool with the same arguments again and again.

The gateway sees the whole conversation on every request, so the history is read from the
`messages` themselves: each assistant tool call with its arguments, paired with the result the tool
returned. Two shapes count as a loop, looking back from the newest call:

- a repeat: the same tool, same arguments, and the same result (an error repeats too) in a row;
- a ping-pong: two different calls alternating (A, B, A, B, ...), counted in A-B rounds.

The longer of the two is the loop's length; the engine escalates on it (note, hold, deny).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Step:
    tool: str
    arguments: str
    # The tool's result (see `_result_key`); None while the call has no result in the conversation yet.
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


class History:
    """The conversation's tool calls, newest first, read from the end only as far as detection looks.

    Detection walks back from the newest call and stops where the repetition does, nearly always
    after two or three calls: reading the whole conversation and canonicalising every call's
    arguments (a JSON parse and encode each) was most of the rule's cost for a long-running agent.
    `at(k)` is the k-th newest call (0: the newest) within the last `window`, or None.

    A call's result is the content of the last tool message with its id anywhere in the
    conversation: walking back, the first one met after the call; only for a call with none after
    it are the messages before it read (once) for one.
    """

    __slots__ = ("_before", "_messages", "_next", "_results", "_steps", "_window")

    def __init__(self, messages: list[Any], window: int) -> None:
        self._messages = messages
        self._window = window
        self._next = len(messages) - 1  # the next message to read, walking back
        self._results: dict[str, Any] = {}  # tool_call_id -> content, from the messages read so far
        self._before: dict[str, Any] | None = None  # the same for the messages not read yet
        self._steps: list[Step] = []  # newest first

    def at(self, k: int) -> Step | None:
        steps, messages, results = self._steps, self._messages, self._results
        while len(steps) <= k and len(steps) < self._window and self._next >= 0:
            message = messages[self._next]
            self._next -= 1
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            if role == "tool":
                results.setdefault(str(message.get("tool_call_id") or ""), message.get("content"))
            elif role == "assistant" and message.get("tool_calls"):
                calls = [call for call in message["tool_calls"] if isinstance(call, dict)]
                for call in reversed(calls):
                    function = call.get("function") or {}
                    steps.append(Step(str(function.get("name") or ""), _canonical(function.get("arguments")),
                                      self._result(str(call.get("id") or ""))))
        return steps[k] if k < len(steps) and k < self._window else None

    def _result(self, call_id: str) -> str | None:
        results = self._results
        if call_id in results:
            return _result_key(results[call_id])
        if self._before is None:
            self._before = {}
            for message in self._messages[: self._next + 1]:
                if isinstance(message, dict) and message.get("role") == "tool":
                    self._before[str(message.get("tool_call_id") or "")] = message.get("content")
        return _result_key(self._before[call_id]) if call_id in self._before else None


def history(messages: Any, window: int) -> History:
    """The conversation's tool calls, at most the last `window` (read lazily, from the newest)."""
    return History(messages if isinstance(messages, list) else [], window)


def detect(steps: History | list[Step]) -> Loop | None:
    """The longest loop ending at the newest call, if any call repeats at all (`steps` as a list:
    oldest first)."""
    at = steps.at if isinstance(steps, History) else _from_the_end(steps)
    last, before = at(0), at(1)
    if last is None or before is None:
        return None
    run = 1
    while (step := at(run)) is not None and step.same_call(last):
        run += 1
    best = Loop("repeat", run, (last.tool,), last.arguments) if run > 1 else None
    # Ping-pong: period two, the two calls different.
    a, b = last, before
    if not a.same_call(b):
        length = 2
        while (step := at(length)) is not None and step.same_call(a if length % 2 == 0 else b):
            length += 1
        rounds = length // 2
        if rounds > 1 and (best is None or rounds > best.length):
            best = Loop("ping_pong", rounds, (b.tool, a.tool), a.arguments)
    return best


def _from_the_end(steps: list[Step]) -> Callable[[int], Step | None]:
    return lambda k: steps[-1 - k] if k < len(steps) else None


def _canonical(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return str(arguments)
    canonical: str = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
    return canonical


def _result_key(content: Any) -> str:
    """A tool result, to compare with others: the text itself, or its JSON with sorted keys."""
    if isinstance(content, str):
        return content
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()
