"""Text hygiene for message contents: NFKC, invisible and control characters, HTML, spaces.

Applied before any detector, so zero-width joiners, bidirectional overrides and
compatibility forms (fullwidth letters, ligatures) cannot hide PII or injections.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Zero-width and invisible formatting characters, and bidirectional controls.
_INVISIBLE = (
    "\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# C0 and C1 controls except tab and newline (carriage returns become newlines first).
_CONTROLS = "".join(chr(c) for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
                    if chr(c) not in "\t\n\r")  # fmt: skip
_DELETE = str.maketrans("", "", _INVISIBLE + _CONTROLS)
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_TAGS = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<[^>]{0,2000}>", re.I | re.S)


def normalize_text(text: str, *, strip_html: bool = False) -> str:
    """The cleaned text: NFKC, no invisible/control characters, optional HTML stripped,
    runs of spaces collapsed, at most one blank line in a row, ends stripped."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text.translate(_DELETE)).translate(_DELETE)
    elif not text.isprintable():  # ASCII with no control characters needs no deleting
        text = text.translate(_DELETE)
    if strip_html and "<" in text:
        text = html.unescape(_TAGS.sub(" ", text))
    if "  " in text or "\t" in text or not text.isascii():
        text = _SPACES.sub(" ", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()
