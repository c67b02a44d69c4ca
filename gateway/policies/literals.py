"""Skipping regex searches that cannot match: the literal text every match of a pattern contains.

Deny patterns are searched in a request's whole conversation (and in each response) on every
request. Case-insensitive, a search costs ~7 us per KB of text (the regex engine tries the pattern
at every position), while most patterns hold words that any match must contain (`drop\\s+table`:
"drop" and "table"). Testing for those words with `in` costs ~0.3 us per KB, rules the search out
for nearly every text, and when they are all there the pattern is searched as before: a verdict
cannot change, only the work done to reach "no match".

The words are read from the pattern's parse tree (Python's own regex parser): a run of literal
characters in the pattern's top-level sequence (groups without flags of their own included) is
matched, in order and contiguous, by every match. Case-insensitive patterns are compared with a
folded copy of the text: lower case, and the four non-ASCII characters Python's `re.IGNORECASE`
equates with an ASCII letter mapped to it (tests/policies/test_literals.py checks every code point).
Of a case-insensitive pattern's literals only the ASCII stretches are used.
"""

from __future__ import annotations

import re
from typing import Any

try:  # CPython's own regex parser (3.11+); without it there is no filter and every text is searched
    from re import _parser as _sre_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _sre_parser = None

# 'İ' and 'ı' match 'i', 'ſ' matches 's', the Kelvin sign 'K' matches 'k' (re.IGNORECASE). 'İ' must
# be mapped before lower(), which would turn it into two characters ('i' and a combining dot).
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


class Haystack:
    """A text to search, and its folded form once a case-insensitive filter needs it."""

    __slots__ = ("_folded", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._folded: str | None = None

    def folded(self) -> str:
        if self._folded is None:
            text = self.text
            self._folded = text.lower() if text.isascii() else text.translate(_FOLD).lower()
        return self._folded


class LiteralFilter:
    """Whether a text can hold a match of one pattern, judged by the literals every match contains."""

    __slots__ = ("_folded", "literals")

    def __init__(self, regex: re.Pattern[str]) -> None:
        self._folded = bool(regex.flags & re.IGNORECASE)
        literals = _required_runs(regex)
        if self._folded:
            literals = [piece.lower() for run in literals for piece in _NON_ASCII.split(run) if piece]
        # Longest first: the rarest, most likely to rule the text out.
        self.literals = tuple(sorted(set(literals), key=len, reverse=True))

    def may_match(self, haystack: Haystack) -> bool:
        if not self.literals:
            return True
        text = haystack.folded() if self._folded else haystack.text
        for literal in self.literals:
            if literal not in text:
                return False
        return True


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def _required_runs(regex: re.Pattern[str]) -> list[str]:
    if _sre_parser is None:
        return []
    try:
        tree: Any = _sre_parser.parse(regex.pattern, regex.flags)
        literal, subpattern = _sre_parser.LITERAL, _sre_parser.SUBPATTERN
    except Exception:  # noqa: BLE001  # a parser unlike 3.11's: no filter, every text is searched
        return []
    runs: list[str] = []
    run: list[str] = []

    def walk(items: Any) -> None:
        for op, av in items:
            if op is literal:
                run.append(chr(av))
            elif op is subpattern and av[1] == 0 and av[2] == 0:
                walk(av[3])  # a group is its contents in sequence (unless it sets flags of its own)
            else:  # anything else may match varying text: the run ends here
                if run:
                    runs.append("".join(run))
                    run.clear()

    walk(tree.data)
    if run:
        runs.append("".join(run))
    return runs
