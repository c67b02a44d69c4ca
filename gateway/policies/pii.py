"""PII and secret detection: one combined regular expression, then checksums where a kind has one.

Kinds: emails, phone numbers, payment card numbers (Luhn-checked), IBANs (ISO 7064 mod-97 checked),
national ids (US SSN: area/group/serial rules), and API-key-shaped secrets. A match is replaced by
`[REDACTED:<kind>]`, so the reader (model or human) still knows something was there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from gateway.policies.text_cache import TextCache

# Order matters where patterns overlap: a card or an IBAN must win over a phone number.
_PATTERNS: dict[str, str] = {
    "secret": (
        r"(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{35}"
        r"|gh[pousr]_[A-Za-z0-9]{36}|xox[baprs]-[A-Za-z0-9\-]{10,}|glpat-[A-Za-z0-9_\-]{20}"
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----)"
    ),
    "email": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    "card": r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])",
    "national_id": r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])",
    "phone": (
        r"(?<![\w+])(?:\+\d{8,15}|(?:\+\d{1,3}[ .\-]?)?"
        r"(?:\(\d{1,4}\)[ .\-]?\d{3,4}[ .\-]?\d{3,4}|\d{2,4}[ .\-]\d{3,4}[ .\-]\d{3,4}))(?!\w)"
    ),
}

# The longest text one match can span that redaction of streamed text must hold back (see
# `StreamRedactor`): IBANs with spaces (42), cards with separators (37); emails and secrets can be
# longer, and are only caught whole when a chunk boundary does not split one past this window.
LONGEST_MATCH = 64


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if i % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _valid(kind: str, text: str) -> bool:
    if kind == "card":
        digits = text.replace(" ", "").replace("-", "")
        return 13 <= len(digits) <= 19 and _luhn(digits)
    if kind == "iban":
        return _iban_ok(text)
    return True


class Match(NamedTuple):
    """One hit: a tuple, as it is built for every match found (a frozen dataclass costs 3x more)."""

    kind: str
    start: int
    end: int


class Scan(NamedTuple):
    """What scanning one text found, and the text with it redacted (the text itself when nothing)."""

    matches: tuple[Match, ...]
    redacted: str


# Cheap tests that rule a kind out before its (slower) pattern runs: most text has no '@', most has
# no digit run shaped like a number of ours, almost none has a key prefix. Substring tests beat a
# regex search for the key prefixes (an alternation of prefixes tries every position: ~1 us).
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL = re.compile(f"(?P<email>{_PATTERNS['email']})")
_DIGIT_KINDS = ("iban", "card", "national_id", "phone")
# A pass: the matches of some kinds in a text, in order (a match's `lastgroup` names its kind), those
# starting before the given position only.
Pass = Callable[[str, int], Iterable["re.Match[str]"]]

# For each digit kind, text every match of it contains, as (its first character, the rest): a text
# without any of them cannot match, so the kinds' combined pattern is not run on it. Derived by hand
# from `_PATTERNS` (tests/policies/test_pii_scan.py checks the two agree on random texts):
# an IBAN starts with two letters and two digits; a card has 13+ digits with at most one space or
# dash between two; a national id is ddd-dd-dddd; a phone has '+' or '(' before a digit, or two
# digits, a separator and three digits (its first two groups).
# A match starts at most `_LEAD` characters before the first text it needs: only a phone can,
# whose first group may have two digits before the two the check finds (a country code or a '('
# before them is found by the check itself). The fuzz test misses matches with a lead of 1.
_LEAD = 2
_NECESSARY: dict[str, tuple[tuple[str, str], ...]] = {
    "iban": (("A-Z", r"[A-Z]\d\d"),),
    "card": ((r"\d", r"(?:[ -]?\d){12}"),),
    "national_id": ((r"\d", r"\d\d-\d\d-\d\d\d\d"),),
    "phone": (("(+", r"\d"), (r"\d", r"\d[ .\-]\d\d\d")),
}


def _necessary(kinds: Iterable[str], ascii_only: bool) -> re.Pattern[str]:
    """One search for any kind's necessary text, written to start with a character class.

    That shape matters: the regex engine then skips ahead to the next character in the class in
    its own loop (~5 ns a character) instead of trying the pattern at every position (~70 ns).
    Each alternative checks, looking back, that the character it starts with was its own.
    """
    pieces = [piece for kind in kinds for piece in _NECESSARY[kind]]
    firsts = "".join(dict.fromkeys(first for first, _ in pieces))
    rests = "|".join(f"(?<=[{first}]){rest}" for first, rest in pieces)
    if ascii_only:  # outside a class `\d` becomes `[0-9]`, inside one `0-9`
        rests = rests.replace("[\\d", "[0-9").replace("\\d", "[0-9]")
        firsts = firsts.replace("\\d", "0-9")
    return re.compile(f"[{firsts}](?:{rests})")


def _secret_pass(regex: re.Pattern[str]) -> Pass:
    def scan(text: str, before: int) -> Iterable[re.Match[str]]:
        if (
            "sk-" in text or "AKIA" in text or "AIza" in text or "xox" in text or "glpat-" in text
            or "-----BEGIN" in text or ("gh" in text and "_" in text)
        ):
            return _starting_before(regex.finditer(text), before)
        return ()

    return scan


def _starting_before(matches: Iterable[re.Match[str]], before: int) -> Iterator[re.Match[str]]:
    """The matches starting before `before`: the search stops at the first one past it."""
    for match in matches:
        if match.start() >= before:
            return
        yield match


def _email_pass(text: str, before: int) -> list[re.Match[str]]:
    """What `_EMAIL.finditer` finds, trying only where an '@' is: an address is anchored on it.

    The regex alone starts a match attempt at every word (~4 us a line); here each '@' is found
    with str.find, its local part walked back to its first character, and the regex matched there.
    A start further left is impossible (a non-local character, or the previous match's end), and
    one further right fails like it (same '@', same domain), so the matches are the same. Once a
    start is at or past `before`, so is every later one ('@' is not a local-part character).
    """
    found: list[re.Match[str]] = []
    floor = 0
    at = text.find("@")
    while at != -1:
        start = at
        while start > floor and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        if start >= before:
            break
        match = _EMAIL.match(text, start) if start < at else None
        if match is not None:
            found.append(match)
            floor = match.end()
            at = text.find("@", floor)
        else:
            at = text.find("@", at + 1)
    return found


def _digits_pass(regex: re.Pattern[str], kinds: list[str]) -> Pass:
    # `\d` is any Unicode digit; on ASCII text (the common case, known in O(1)) `[0-9]` means the
    # same and is tested from a bitmap instead of a Unicode table lookup: about twice as fast.
    ascii_check = _necessary(kinds, ascii_only=True).search
    unicode_check = _necessary(kinds, ascii_only=False).search

    def scan(text: str, before: int) -> Iterable[re.Match[str]]:
        """The kinds' matches, looked for only where the check found what they need.

        No pattern matches across a newline and a newline reads like the edge of the text to their
        boundaries and lookarounds, so each line can be scanned alone (up to, not including, its
        newline) with the same matches; a request's texts joined by newlines, of which one has a
        phone number, then cost the scan of (the end of) that one only.
        """
        check = ascii_check if text.isascii() else unicode_check
        hit = check(text)
        found: list[re.Match[str]] = []
        while hit is not None and hit.start() - _LEAD < before:
            # From `_LEAD` before the line's first hit (no match can start earlier; the lookbehinds
            # still see the characters before) to the line's end.
            start = max(text.rfind("\n", 0, hit.start()) + 1, hit.start() - _LEAD)
            end = text.find("\n", hit.end())
            if end == -1:
                end = len(text)
            found.extend(_starting_before(regex.finditer(text, start, end), before))
            hit = check(text, end)
        return found

    return scan


class PiiDetector:
    """Finds and redacts the configured kinds. Built once; its only state is `find_each`'s cache."""

    def __init__(self, kinds: Iterable[str]) -> None:
        wanted = set(kinds)
        # A request's texts, scanned: agents resend their conversation, so most texts come back.
        self._seen: TextCache[Scan] = TextCache()
        self.kinds = tuple(k for k in _PATTERNS if k in wanted)
        digit_kinds = [k for k in _DIGIT_KINDS if k in wanted]
        # Passes in priority order; within a combined regex, alternation order is priority order.
        self._passes: list[Pass] = []
        if "secret" in wanted:
            self._passes.append(_secret_pass(re.compile(f"(?P<secret>{_PATTERNS['secret']})")))
        if "email" in wanted:
            self._passes.append(_email_pass)
        if digit_kinds:
            combined = "|".join(f"(?P<{k}>{_PATTERNS[k]})" for k in digit_kinds)
            # The leading lookahead lets most positions fail on one character test (20 us -> 8 us).
            self._passes.append(_digits_pass(re.compile(rf"(?=[\d(+]|[A-Z]{{2}}\d)(?:{combined})"), digit_kinds))

    def find(self, text: str, before: int | None = None) -> list[Match]:
        """The matches in `text`, in order; with `before`, only those starting before that position
        (the same ones: a match is dropped for overlapping one that starts earlier, never later)."""
        found: list[Match] = []
        end = len(text) if before is None else before
        for scan in self._passes:
            for m in scan(text, end):
                kind = m.lastgroup
                assert kind is not None
                if _valid(kind, m.group()):
                    found.append(Match(kind, m.start(), m.end()))
        if len(self._passes) > 1 and len(found) > 1:
            # Passes may overlap (a phone-like run inside an email): keep the earlier pass's match.
            found.sort(key=lambda hit: hit.start)
            kept: list[Match] = []
            for hit in found:
                if kept and hit.start < kept[-1].end:
                    continue
                kept.append(hit)
            found = kept
        return found

    def find_each(self, texts: list[str]) -> list[Sequence[Match]]:
        """`find` over each text."""
        return [scan.matches for scan in self.scan_each(texts)]

    def scan_each(self, texts: list[str]) -> list[Scan]:
        """Each text's matches and redaction: texts seen before from the cache, the others in one scan."""
        seen = self._seen
        found: list[Scan] = []
        new: list[int] = []
        for i, text in enumerate(texts):
            scan = seen.get(text)
            if scan is None:
                new.append(i)
                scan = _NOTHING
            found.append(scan)
        if new:
            for i, matches in zip(new, self._find_joined([texts[i] for i in new]), strict=True):
                text = texts[i]
                scan = Scan(tuple(matches), replace(text, matches)) if matches else Scan((), text)
                seen.put(text, scan)
                found[i] = scan
        return found

    def _find_joined(self, texts: list[str]) -> list[list[Match]]:
        """`find` over each text, with one scan of them all joined by newlines.

        No pattern matches across a newline, and a newline reads like the edge of a text to every
        boundary and lookaround in them, so the joined scan finds exactly each text's matches.
        """
        if len(texts) == 1:
            return [self.find(texts[0])]
        found: list[list[Match]] = [[] for _ in texts]
        matches = self.find("\n".join(texts))
        if not matches:
            return found
        i, start, end = 0, 0, len(texts[0])
        for m in matches:
            while m.start > end:  # past this text and its newline
                i += 1
                start, end = end + 1, end + 1 + len(texts[i])
            found[i].append(Match(m.kind, m.start - start, m.end - start))
        return found

    def redact(self, text: str) -> tuple[str, list[str]]:
        """The text with every match replaced, and the kinds found (in order)."""
        matches = self.find(text)
        if not matches:
            return text, []
        return replace(text, matches), [m.kind for m in matches]


_NOTHING = Scan((), "")


def replace(text: str, matches: Sequence[Match]) -> str:
    """`text` with each of `matches` (in order, not overlapping) replaced by its marker."""
    if not matches:
        return text
    out, last = [], 0
    for m in matches:
        out.append(text[last : m.start])
        out.append(f"[REDACTED:{m.kind}]")
        last = m.end
    out.append(text[last:])
    return "".join(out)


class StreamRedactor:
    """Redacts text that arrives in pieces (stream deltas) without leaking a match split across them.

    Text is held back until it is at least `LONGEST_MATCH` characters from the end of what has
    arrived, so a match still being written cannot start in text already sent; a complete match
    that straddles the cut is sent whole, redacted. The cost is latency: the last ~64 characters
    of a streamed answer arrive with the finish chunk instead of as they are generated.
    """

    __slots__ = ("_detector", "_pending", "found")

    def __init__(self, detector: PiiDetector) -> None:
        self._detector = detector
        self._pending = ""
        self.found: list[str] = []

    def hold(self, text: str) -> None:
        """Take text without releasing any: the next `feed` or `flush` scans and sends it."""
        self._pending += text

    def feed(self, text: str) -> str:
        """Text safe to send now (already redacted)."""
        buffer = self._pending + text
        cut = len(buffer) - LONGEST_MATCH
        if cut <= 0:
            self._pending = buffer
            return ""
        # One scan of the buffer serves both the cut and the redaction of what is sent: only matches
        # starting before the cut count (a match straddling it moves it to its end, and the next
        # match starts there or later), so the scan stops there.
        sent = []
        for m in self._detector.find(buffer, cut):
            if m.start >= cut:
                break
            sent.append(m)
            cut = max(cut, m.end)  # send a complete match whole rather than split it
        self._pending = buffer[cut:]
        self.found.extend(m.kind for m in sent)
        return replace(buffer[:cut], sent)

    def flush(self) -> str:
        """Everything held back, redacted: at the end of the text."""
        redacted, kinds = self._detector.redact(self._pending)
        self._pending = ""
        self.found.extend(kinds)
        return redacted
