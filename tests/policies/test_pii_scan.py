"""The PII scanner's shortcuts against the plain patterns: the same matches on random texts.

`PiiDetector` skips patterns that cannot match (a text without '@', without a key prefix, without
any digit run shaped like one of ours), finds emails from their '@', scans a request's texts in one
joined scan, and keeps the results of texts it has seen. None of that may change a match: here a
reference that runs every pattern over every text with `finditer`, as the scanner did before its
shortcuts, is compared with it on texts built from the characters the patterns care about.
"""

from __future__ import annotations

import random
import re

import pytest

from gateway.config.policies import ALL_PII_KINDS
from gateway.policies.pii import _PATTERNS, LONGEST_MATCH, Match, PiiDetector, StreamRedactor, _valid, replace

DIGIT_KINDS = ("iban", "card", "national_id", "phone")


class Reference:
    """Every configured pattern over the whole text, in the scanner's priority order."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.passes: list[re.Pattern[str]] = []
        if "secret" in kinds:
            self.passes.append(re.compile(f"(?P<secret>{_PATTERNS['secret']})"))
        if "email" in kinds:
            self.passes.append(re.compile(f"(?P<email>{_PATTERNS['email']})"))
        digits = [k for k in DIGIT_KINDS if k in kinds]
        if digits:
            self.passes.append(re.compile("|".join(f"(?P<{k}>{_PATTERNS[k]})" for k in digits)))

    def find(self, text: str) -> list[Match]:
        found = [
            Match(m.lastgroup or "", m.start(), m.end())
            for regex in self.passes for m in regex.finditer(text) if _valid(m.lastgroup or "", m.group())
        ]
        found.sort(key=lambda hit: hit.start)  # stable: at one start, the earlier pass wins
        kept: list[Match] = []
        for hit in found:
            if not kept or hit.start >= kept[-1].end:
                kept.append(hit)
        return kept


# Characters every pattern reacts to, some look-alikes (Unicode digits, a non-ASCII letter, an
# underscore, a newline), and ordinary letters; plus whole fragments so that long matches happen.
ALPHABET = list("0123456789 -.+()@_:\nABDEGHKSZabcdkmoxyz") + ["\u0663", "\u00e9", "\u00a0"]
FRAGMENTS = [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "123-45-6789", "078-05-1120",
    "+1 415-555-0132", "(415) 555 0132", "+441632960961", "020 7946 0958", "+1 (415) 555-0132",
    "+44 (20) 7946 0958", "+123-4155-5501", "+12 4155 5501", "4155 5501 22", "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432", "bob@example.com", "a.b+c@x-y.co.uk", "sk-proj-abcdefghijklmnop1234",
    "AKIAABCDEFGHIJKLMNOP", "ghp_" + "a" * 36, "xoxb-1234567890-abc", "glpat-" + "x" * 20,
    "-----BEGIN RSA PRIVATE KEY-----", "1-0-3", "Q4", "v1.2.3", "2024-03-02",
]


def random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 8)):
        if rng.random() < 0.3:
            parts.append(rng.choice(FRAGMENTS))
        else:
            parts.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12))))
    return "".join(parts)


@pytest.mark.parametrize("kinds", [ALL_PII_KINDS, ("phone",), ("card", "iban"), ("national_id", "email")])
def test_the_scanner_finds_what_every_pattern_finds(kinds: tuple[str, ...]) -> None:
    rng = random.Random(f"pii-{kinds}")
    detector, reference = PiiDetector(kinds), Reference(kinds)
    for _ in range(20_000):
        text = random_text(rng)
        assert detector.find(text) == reference.find(text), text


def test_the_cached_joined_scan_finds_what_each_scan_finds() -> None:
    rng = random.Random("pii-each")
    detector, reference = PiiDetector(ALL_PII_KINDS), Reference(ALL_PII_KINDS)
    conversation: list[str] = []
    for _ in range(2_000):
        # A conversation that grows (texts come back, from the cache) and sometimes starts over.
        conversation = [] if rng.random() < 0.1 else conversation
        conversation.append(random_text(rng))
        texts = conversation[-rng.randint(1, 12):]
        assert [list(found) for found in detector.find_each(texts)] == [reference.find(t) for t in texts]


def test_matches_starting_before_a_position_are_those_of_the_whole_scan() -> None:
    rng = random.Random("pii-before")
    detector = PiiDetector(ALL_PII_KINDS)
    for _ in range(10_000):
        text = random_text(rng)
        before = rng.randint(0, len(text))
        assert detector.find(text, before) == [m for m in detector.find(text) if m.start < before], (text, before)


class ReferenceRedactor:
    """`StreamRedactor` as first written, over the reference scan: hold back, cut, send whole matches."""

    def __init__(self, reference: Reference) -> None:
        self.reference, self.pending = reference, ""

    def feed(self, text: str) -> str:
        buffer = self.pending + text
        cut = len(buffer) - LONGEST_MATCH
        if cut <= 0:
            self.pending = buffer
            return ""
        sent = []
        for m in self.reference.find(buffer):
            if m.start >= cut:
                break
            sent.append(m)
            cut = max(cut, m.end)
        self.pending = buffer[cut:]
        return replace(buffer[:cut], sent)

    def flush(self) -> str:
        out = replace(self.pending, self.reference.find(self.pending))
        self.pending = ""
        return out


def test_streamed_text_is_redacted_as_before_however_it_is_cut() -> None:
    rng = random.Random("pii-stream")
    detector, reference = PiiDetector(ALL_PII_KINDS), Reference(ALL_PII_KINDS)
    for _ in range(1_500):
        text = "".join(random_text(rng) for _ in range(rng.randint(1, 8)))
        redactor, expected = StreamRedactor(detector), ReferenceRedactor(reference)
        got, want, i = [], [], 0
        while i < len(text):
            piece = text[i : i + rng.randint(1, 30)]
            i += len(piece)
            got.append(redactor.feed(piece))
            want.append(expected.feed(piece))
        got.append(redactor.flush())
        want.append(expected.flush())
        assert got == want, text
