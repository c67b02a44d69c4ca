"""Reading and rewriting the text of chat messages and completions, for the policy rules.

Only text is touched: string contents and `{"type": "text"}` parts. A rewrite copies what it
changes and leaves the rest shared, so the caller re-encodes the body only when something changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Rewrite = Callable[[str], str]


def message_texts(messages: Any) -> Iterator[str]:
    """Every text in a `messages` array, in order."""
    if not isinstance(messages, list):
        return
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]


def rewrite_messages(messages: list[Any], rewrite: Rewrite) -> list[Any] | None:
    """A copy of `messages` with every text rewritten; None when nothing changed."""
    out: list[Any] = []
    changed = False
    for message in messages:
        new = message
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, str):
                text = rewrite(content)
                if text != content:
                    new = {**message, "content": text}
            elif isinstance(content, list):
                parts = [_rewrite_part(p, rewrite) for p in content]
                if any(a is not b for a, b in zip(parts, content, strict=True)):
                    new = {**message, "content": parts}
        changed = changed or new is not message
        out.append(new)
    return out if changed else None


def _rewrite_part(part: Any, rewrite: Rewrite) -> Any:
    if isinstance(part, dict) and isinstance(part.get("text"), str):
        text = rewrite(part["text"])
        if text != part["text"]:
            return {**part, "text": text}
    return part


def completion_text(completion: dict[str, Any]) -> str:
    """The text of a chat.completion's choices, joined."""
    texts = []
    for choice in completion.get("choices") or ():
        content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
        if isinstance(content, str):
            texts.append(content)
    return "\n".join(texts)


def rewrite_completion(completion: dict[str, Any], rewrite: Rewrite) -> bool:
    """Rewrite each choice's text in place; True when something changed."""
    changed = False
    for choice in completion.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            text = rewrite(message["content"])
            if text != message["content"]:
                message["content"] = text
                changed = True
    return changed
