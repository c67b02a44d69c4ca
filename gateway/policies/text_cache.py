"""A small bounded cache of what scanning a text found, keyed by the text itself.

Agents send their whole conversation on every turn, so a request's messages are mostly texts the
gateway scanned on the previous turns. Keeping each text's result lets a turn pay for the scan of its
new texts only. The key is the text (equal content, equal result: the scans are pure functions of
it), so a hit can never be a wrong answer, only a saved scan.

Bounded both in entries and in characters kept (the keys are the texts): when either bound is
passed, the oldest entries go first. Insertion order, not use order: a text that stays in use is
simply scanned again once it has aged out, which costs one scan. An `OrderedDict`, because taking
the oldest key of a plain dict (`next(iter(d))`) walks over every slot deleted before it: under
steady eviction that cost ~4 us a put in a loaded gateway, against ~0.4 us.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class TextCache(Generic[V]):
    __slots__ = ("_chars", "_entries", "_longest", "_max_chars", "_max_entries")

    def __init__(self, max_entries: int = 8192, max_chars: int = 4_000_000, longest: int = 65_536) -> None:
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._chars = 0
        self._max_entries = max_entries
        self._max_chars = max_chars
        # Longer texts are not kept: one could push out everything else for a single later hit.
        self._longest = longest

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: str) -> V | None:
        return self._entries.get(text)

    def put(self, text: str, value: V) -> None:
        size = len(text)
        if size > self._longest or text in self._entries:
            return
        entries = self._entries
        entries[text] = value
        self._chars += size
        while len(entries) > self._max_entries or self._chars > self._max_chars:
            oldest, _ = entries.popitem(last=False)
            self._chars -= len(oldest)
