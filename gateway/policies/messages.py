"""Reading and rewriting the text of chat messages and completions, for the policy rules.

Only text is touched: string contents and `{"type": "text"}` parts. A rewrite copies what it
changes and leaves the rest shared, so the caller re-encodes the body only when something changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Rewrite = Callable[[str], str]


class MessageTexts:
    """A `messages` array's texts, found once, with where each one is (for rewriting a few of them).

    The request-side rules (deny patterns, PII) read the same texts: one walk of the conversation
    serves them all, and a redaction copies only the messages it changes.
    """

    __slots__ = ("_joined", "messages", "places", "texts")

    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages
        self.texts: list[str] = []
        # Per text: its message's index, and its part's index in the content list (-1: the content).
        self.places: list[tuple[int, int]] = []
        self._joined: str | None = None
        texts, places = self.texts, self.places
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                places.append((i, -1))
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        texts.append(part["text"])
                        places.append((i, j))

    def joined(self) -> str:
        """The texts joined by newlines (what deny patterns search)."""
        if self._joined is None:
            self._joined = "\n".join(self.texts)
        return self._joined

    def replaced(self, new: Mapping[int, str]) -> list[Any]:
        """A copy of the messages with text number i replaced by `new[i]`; the others are shared."""
        out = list(self.messages)
        copied: set[int] = set()
        for n, text in new.items():
            i, j = self.places[n]
            if i not in copied:
                copied.add(i)
                out[i] = {**out[i]}
                if j >= 0:
                    out[i]["content"] = list(out[i]["content"])
            if j < 0:
                out[i]["content"] = text
            else:
                out[i]["content"][j] = {**out[i]["content"][j], "text": text}
        return out


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
