"""Deny patterns skip the regex search when a text lacks a literal every match contains: never a miss."""

from __future__ import annotations

import random
import re
import sys

import pytest

from gateway.policies.literals import Haystack, LiteralFilter

PATTERNS = [
    r"drop\s+table", r"ignore (all )?previous instructions", r"(?i)Rm -rF /", r"(abc)d|x", r"ab(cd)ef",
    r"caf[eé] ?K", r"(?-i:SeCrEt)\s*key", r"(?x) pass  word \d+ # verbose", r"\bkill\b", r"a(?=bc)bc",
    r"ſtop|İnput", r"[a-z]+@corp", r"x{2,}yz", r"\x41\tB", r"(?:sk|pk)-live",
]
ALPHABET = list("abcdefgiklnoprstwxyzABCDEIKLNOPRSTWXYZ @-/_\t\n0123456789") + ["\u0130", "\u0131", "\u017f", "\u212a", "é", "É"]
WORDS = ["drop", "TABLE", "table", "ignore", "previous", "instructions", "all", "rm -rf /", "abcd", "cdef", "café",
         "secret", "SECRET", "key", "password", "kill", "stop", "input", "corp", "xxyz", "sk-live", "A\tB"]


def texts(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        parts = [rng.choice(WORDS) if rng.random() < 0.5 else rng.choice(ALPHABET) for _ in range(rng.randint(0, 10))]
        out.append("".join(p.upper() if rng.random() < 0.2 else p for p in parts))
    return out


@pytest.mark.parametrize("ignore_case", [True, False])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_text_ruled_out_never_holds_a_match(pattern: str, ignore_case: bool) -> None:
    regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    check = LiteralFilter(regex)
    ruled_out = 0
    for text in texts(random.Random(pattern), 3_000):
        if not check.may_match(Haystack(text)):
            ruled_out += 1
            assert regex.search(text) is None, (pattern, text)
    if check.literals:
        assert ruled_out > 0  # the filter does rule texts out


def test_literals_come_from_the_pattern_sequence_only() -> None:
    assert set(LiteralFilter(re.compile(r"drop\s+table", re.IGNORECASE)).literals) == {"drop", "table"}
    assert set(LiteralFilter(re.compile(r"ignore (all )?previous", re.IGNORECASE)).literals) == {"ignore ", "previous"}
    assert LiteralFilter(re.compile(r"(abc)d|x")).literals == ()  # an alternation: nothing is required
    assert set(LiteralFilter(re.compile(r"caf[eé]\d", re.IGNORECASE)).literals) == {"caf"}
    assert set(LiteralFilter(re.compile(r"(?-i:AB)cd", re.IGNORECASE)).literals) == {"cd"}  # a group with its own flags
    assert LiteralFilter(re.compile(r"Drop Table")).literals == ("Drop Table",)  # case kept when it counts


def test_folding_covers_every_character_ignorecase_equates_with_an_ascii_one() -> None:
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    for code in range(32, 127):
        char = chr(code)
        for match in re.finditer(re.escape(char), everything, re.IGNORECASE):
            assert Haystack(match.group()).folded() == char.lower(), (char, hex(ord(match.group())))
