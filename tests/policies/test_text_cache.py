"""The scan cache keeps what it was given, within its bounds, oldest out first."""

from __future__ import annotations

from gateway.policies.text_cache import TextCache


def test_entries_and_characters_are_bounded_and_the_oldest_go_first() -> None:
    cache: TextCache[int] = TextCache(max_entries=3, max_chars=9, longest=6)
    for i, text in enumerate(["aa", "bb", "cc", "dd"]):
        cache.put(text, i)
    assert len(cache) == 3 and cache.get("aa") is None and cache.get("dd") == 3
    cache.put("eeeeee", 4)  # 2 + 2 + 2 + 6 characters > 9: the oldest go until it fits
    assert cache.get("bb") is None and cache.get("cc") is None and cache.get("eeeeee") == 4
    cache.put("toolongtext", 5)  # longer than `longest`: not kept at all
    assert cache.get("toolongtext") is None and cache.get("dd") == 3
    cache.put("dd", 9)  # a text already kept keeps its first result (scans are pure)
    assert cache.get("dd") == 3
