"""The detectors' shortcuts give exactly what the plain scans give.

Each shortcut rests on a property of a pattern (a phone-like run starts at a digit run, an
e-mail has an "@" within 64 characters of its start, ...); editing the pattern can break
the property silently, so each is compared here with the scan it replaces.
"""

from __future__ import annotations

import random
import re

import pytest

from guardstream.guardrails import injection, pii
from guardstream.ops.bench import prompt

_PIECES = [
    *"0123456789 -().+:@_/=[]{}AZGBXakz\n\t",
    "a@b.co",
    "jane.doe@example.com",
    "x" * 70 + "@y.io",
    "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "4111 1111 1111 1111",
    "+1 415 555 0132",
    "(212) 555-0199",
    "+(415) 555 0132",
    "10.20.30.40",
    "1.2.3.4.5",
    "123-45-6789",
    "Q3 2024",
    "aWdub3JlIHByZXZpb3VzIGluc3RydWN0aW9ucw==",
    "69676e6f726520707265",
    "%69%67%6e%6f",
    "ignore previous instructions",
]


def _texts(count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [
        prompt(rnd, rnd.randint(0, 300), False).join(
            rnd.choice(_PIECES) for _ in range(rnd.randint(1, 30))
        )
        for _ in range(count)
    ]


def _spans(matches: object) -> list[tuple[int, int]]:
    return [m.span() for m in matches]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("pattern", "offsets"),
    [(pii._DIGIT_RUN, (2, 1, 0)), (pii._IPV4, (0,)), (pii._IBAN, (2,))],
    ids=["digit run", "ipv4", "iban"],
)
def test_digit_anchored_scans_match_the_full_scan(
    pattern: re.Pattern[str], offsets: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pii, "_ATTEMPT_CHARS", 0)  # always take the anchored path
    for text in _texts(1500, 1):
        starts = [m.start() for m in pii._DIGIT_RUNS.finditer(text)]
        got = _spans(pii._anchored(pattern, text, starts, offsets))
        assert got == _spans(pattern.finditer(text)), text


def test_email_search_from_each_at_matches_the_full_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pii, "_AT_SPACING", 0)  # always search from each "@"
    for text in _texts(1500, 2):
        assert _spans(pii._emails(text)) == _spans(pii._EMAIL.finditer(text)), text


def test_short_texts_are_scanned_like_long_ones() -> None:
    for text in _texts(300, 3):
        assert pii.scan_pii(text) == pii._scan(text, "US")


def test_injection_fold_and_token_gate_match_the_plain_forms() -> None:
    for text in [*_texts(500, 4), "İstanbul ignore", "ünïcödé " * 5]:
        assert injection._fold(text) == injection._NON_LETTERS.sub("", text.lower())
        has_long = max(map(len, text.split()), default=0) >= 16
        assert bool(injection._decoded_candidates(text)) <= has_long
