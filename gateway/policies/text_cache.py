"""A small bounded cache of what scanning a text found, keyed by the text itself.

Agents send their whole conversation on every turn, so a request's messages are mostly texts the
gateway scanned on the previous turns. Keeping each text's result lets a turn pay for the scan of its
new texts only. The key is the text (equal content, equal result: the scans are pure functions of
it), so a hit can never be a wrong answer, only a saved scan.

Bounded in entries and in characters kept (the keys are the texts), in two generations of plain
dicts: new entries go into the young one; when it is full, the old one is dropped and the young one
takes its place. A hit in the old generation is copied into the young one, so a text in use (a system
prompt) stays, and one nobody sends again is gone after two generations. Every operation is a dict
operation or two: a cache in strict insertion order (an OrderedDict, popping the oldest entry on each
put) cost ~1 us a put, ~4 us in a loaded gateway, against ~0.2 us here.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class TextCache(Generic[V]):
    __slots__ = ("_chars", "_longest", "_max_chars", "_max_entries", "_old", "_young")

    def __init__(self, max_entries: int = 8192, max_chars: int = 4_000_000, longest: int = 65_536) -> None:
        # Each generation holds up to half of the bounds.
        self._max_entries = max(1, max_entries // 2)
        self._max_chars = max(1, max_chars // 2)
        # Longer texts are not kept: one could push out everything else for a single later hit.
        self._longest = longest
        self._young: dict[str, V] = {}
        self._old: dict[str, V] = {}
        self._chars = 0  # in the young generation

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, text: str) -> V | None:
        value = self._young.get(text)
        if value is None:
            value = self._old.get(text)
            if value is not None:
                self._keep(text, value)
        return value

    def put(self, text: str, value: V) -> None:
        if len(text) <= self._longest and text not in self._young:
            self._keep(text, value)

    def _keep(self, text: str, value: V) -> None:
        if len(self._young) >= self._max_entries or self._chars + len(text) > self._max_chars:
            self._old, self._young, self._chars = self._young, {}, 0
        self._young[text] = value
        self._chars += len(text)
