"""Text hygiene for message contents: NFKC, invisible and control characters, HTML, spaces.

Applied before any detector, so zero-width joiners, bidirectional overrides and
compatibility forms (fullwidth letters, ligatures) cannot hide PII or injections.

Every step is linear in the text's length. Two needed care:
- Unicode normalisation sorts each run of combining marks by combining class with an
  insertion sort, so a letter followed by 250,000 mixed marks took over a minute. No real
  text needs more than 30 non-starters in a row (the Stream-Safe Text Format of UAX #15), so
  longer runs are cut to 30 before normalising (the rest is "Zalgo" noise).
- HTML stripping scans for the end of each tag or script only up to the next `<`, and an
  unterminated `<script>` ends the text, so many unclosed tags cannot rescan the rest.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import cache

# UAX #15 Stream-Safe Text Format: at most 30 non-starters in a row.
MAX_NON_STARTERS = 30
# Zero-width and invisible formatting characters, bidirectional controls, and the combining
# grapheme joiner (invisible, and a way to break up a run of marks).
_INVISIBLE = (
    "\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad\u034f"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# C0 and C1 controls except tab and newline (carriage returns become newlines first).
_CONTROLS = "".join(
    chr(c) for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)] if chr(c) not in "\t\n\r"
)
_DELETE = str.maketrans("", "", _INVISIBLE + _CONTROLS)
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# A tag's text stops at the next `<` so that a run of unclosed `<` is scanned once.
_TAG = re.compile(r"<(?:(script|style)\b[^<>]{0,2000}>|/?[A-Za-z!?][^<>]{0,2000}>)", re.I)
_CLOSE = {
    "script": re.compile(r"</script\s{0,20}>", re.I),
    "style": re.compile(r"</style\s{0,20}>", re.I),
}
# Non-starters live below U+20000 (a unit test checks the whole range).
_SCAN_LIMIT = 0x20000


def _ranges(points: list[int]) -> str:
    parts: list[str] = []
    start = prev = points[0]
    for p in [*points[1:], -1]:
        if p == prev + 1:
            prev = p
            continue
        parts.append(re.escape(chr(start)) + ("" if start == prev else "-" + re.escape(chr(prev))))
        start = prev = p
    return "".join(parts)


def non_starters() -> list[int]:
    """Code points whose (compatibility) decomposition starts with a non-starter (ccc ≠ 0).

    Halfwidth katakana sound marks have class 0 but decompose to marks of class 8, so the
    decomposition, not only the character's own class, decides.
    """
    out = []
    for c in range(_SCAN_LIMIT):
        ch = chr(c)
        if unicodedata.combining(ch) or (
            unicodedata.decomposition(ch)
            and unicodedata.combining(unicodedata.normalize("NFKD", ch)[0])
        ):
            out.append(c)
    return out


@cache
def _marks() -> tuple[frozenset[str], re.Pattern[str]]:
    """The non-starters, and a pattern for runs that may hold more than 30 of them.

    Built on first use (~0.1 s), not at import: ASCII-only workloads never need it. The
    pattern over-approximates with every astral character: a class of scattered astral
    ranges makes `re` test each character against a list (~10x slower), while the BMP marks
    alone compile to a bitmap. Candidate runs are then checked exactly.
    """
    points = non_starters()
    bmp = _ranges([c for c in points if c < 0x10000])
    limit = MAX_NON_STARTERS + 1
    return frozenset(map(chr, points)), re.compile(f"[{bmp}\U00010000-\U0010ffff]{{{limit},}}")


def _cut_run(run: str, marks: frozenset[str]) -> str:
    kept: list[str] = []
    streak = 0
    for ch in run:
        streak = streak + 1 if ch in marks else 0
        if streak <= MAX_NON_STARTERS:
            kept.append(ch)
    return "".join(kept)


def stream_safe(text: str) -> str:
    """`text` with every run of more than 30 non-starters cut to its first 30."""
    marks, candidates = _marks()
    # A run continues across candidate boundaries only through non-starters, which the
    # candidate pattern includes, so each run lies within one candidate.
    return candidates.sub(lambda m: _cut_run(m.group(0), marks), text)


def strip_tags(text: str) -> str:
    """HTML tags replaced by a space, `<script>`/`<style>` elements removed whole."""
    out: list[str] = []
    pos = 0
    while (m := _TAG.search(text, pos)) is not None:
        out += [text[pos : m.start()], " "]
        pos = m.end()
        if m.group(1):
            close = _CLOSE[m.group(1).lower()].search(text, pos)
            if close is None:  # an unterminated script runs to the end of the text
                return "".join(out)
            pos = close.end()
    out.append(text[pos:])
    return "".join(out)


def normalize_text(text: str, *, strip_html: bool = False) -> str:
    """The cleaned text: NFKC, no invisible/control characters, optional HTML stripped,
    runs of spaces collapsed, at most one blank line in a row, ends stripped."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = stream_safe(text.translate(_DELETE))
        text = unicodedata.normalize("NFKC", text).translate(_DELETE)
    elif not text.isprintable():  # ASCII with no control characters needs no deleting
        text = text.translate(_DELETE)
    if strip_html and "<" in text:
        text = html.unescape(strip_tags(text))
    if "  " in text or "\t" in text or not text.isascii():
        text = _SPACES.sub(" ", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()
