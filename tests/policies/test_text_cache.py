"""The scan cache keeps what it was given within its bounds: what is in use stays, the rest ages out."""

from __future__ import annotations

from gateway.policies.text_cache import TextCache


def test_entries_are_bounded_and_texts_in_use_stay() -> None:
    cache: TextCache[int] = TextCache(max_entries=4, max_chars=1000)  # generations of 2 entries
    cache.put("system", 0)
    for i in range(1, 50):
        cache.put(f"new {i}", i)
        assert cache.get("system") == 0  # asked for on every turn: it never ages out
        assert len(cache) <= 4
    assert cache.get("new 1") is None and cache.get("new 49") == 49


def test_characters_are_bounded_and_long_texts_are_not_kept() -> None:
    cache: TextCache[int] = TextCache(max_entries=100, max_chars=20, longest=8)  # 10 characters a generation
    for i, text in enumerate(["aaaa", "bbbb", "cccc", "dddd", "eeee"]):
        cache.put(text, i)
    assert cache.get("aaaa") is None and cache.get("eeee") == 4
    cache.put("toolongtext", 5)
    assert cache.get("toolongtext") is None
    cache.put("eeee", 9)  # a text already kept keeps its first result (scans are pure)
    assert cache.get("eeee") == 4
