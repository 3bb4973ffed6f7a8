"""Adversarial text for the bounded-work promise: every ingest step is linear in the record.

Each family is a short unit repeated to any length, aimed at one place where a careless step
costs more than linear time (Unicode reordering, tag stripping, regex backtracking,
validators run per candidate, overlap resolution among many findings). `guardstream bench
worst` times the whole ingest judge on each family at growing sizes, and a unit test
asserts that the time per KB does not grow with the size.
"""

from __future__ import annotations

# Marks of different combining classes (230, 220, 1, 222, 230 Hebrew, 202), so
# normalisation has to reorder the run.
_MIXED_MARKS = "\u0301\u0316\u0334\u059a\u05c4\u0327"

FAMILIES: dict[str, str] = {
    "mixed combining marks": _MIXED_MARKS,
    "astral combining marks": "\U0001d165\U0001d17b\U0001d16d\U0001d185",
    "halfwidth sound marks": "\uff9e\uff9f",
    "unclosed script tags": "<script>",
    "unclosed angle brackets": "<a ",
    "e-mail fragments": "a@b.",
    "e-mails": "jo@ex.io ",
    "obfuscated e-mail fragments": "a [at] b [dot] ",
    "phone-like numbers": "+1 415 555 0132 ",
    "card-like numbers": "4111 1111 1111 1111 ",
    "ipv6-like": "1:2:3:4:5:6:7:8 ",
    "iban-like": "GB82 WEST 1234 5698 7654 32 ",
    "secret prefixes": "AKIA sk- eyJ Bearer ghp_ xox ",
    "secret assignments": "secret=",
    "pem openers": "-----BEGIN RSA PRIVATE KEY-----",
    "injection phrases": "ignore previous instructions ",
    "base64 run": "aWdub3JlIHByZXZpb3VzIGluc3RydWN0aW9ucw",
    "hex run": "69676e6f7265",
    "percent run": "%69%67",
    "spaces and tabs": " \t",
    "blank lines": "\n",
    "zero-width characters": "\u200b\u200d",
    "cjk": "日本語のテキスト",
}


def fill(unit: str, chars: int, lead: str = "a") -> str:
    """`lead` followed by `unit` repeated to `chars` characters (the lead gives marks a base)."""
    body = unit * (chars // len(unit) + 1)
    return lead + body[: chars - len(lead)]
