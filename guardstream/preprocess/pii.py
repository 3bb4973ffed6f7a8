"""PII and secret detection, built for one cheap pass over a clean prompt.

Every detector sits behind a prefilter that costs a C-level substring or single-regex scan
(`'@' in text`, a digit run, a key prefix), so a prompt without PII pays a few microseconds.
Candidates are then confirmed by validators rather than by stricter regexes: the Luhn check
for cards, ISO 7064 mod-97 for IBANs, `phonenumbers` for phone numbers, `ipaddress` for IPs.

Kinds: EMAIL, PHONE, CARD, IBAN, SSN, IPV4, IPV6, SECRET. Overlaps are resolved in favour of
the more specific kind (SECRET > CARD > IBAN > SSN > PHONE > IP > EMAIL), then the longer.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import phonenumbers

KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IPV4", "IPV6", "SECRET")
_RANK = {"SECRET": 0, "CARD": 1, "IBAN": 2, "SSN": 3, "PHONE": 4, "IPV4": 5, "IPV6": 5, "EMAIL": 6}

# Latin look-alikes (Cyrillic and Greek) folded for e-mail detection only; one character to
# one character, so positions in the folded copy are positions in the text.
_CONFUSABLES = str.maketrans(
    "аеорсхуіјѕԁһӏАВЕКМНОРСТХУΑΒΕΖΗΙΚΜΝΟΡΤΥΧαοιν",  # noqa: RUF001 (intentional look-alikes)
    "aeopcxyijsdhlABEKMHOPCTXYABEZHIKMNOPTYXaoiv",
)
_EMAIL = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}"
)
_DIGIT_RUN = re.compile(r"(?<![\w.])\+?\(?\d[\d \-().]{5,24}\d(?![\w])")
_SSN = re.compile(r"^(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_SECRETS = re.compile(
    r"(?P<aws>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,})"
    r"|(?P<bearer>\bBearer\s+[A-Za-z0-9._~+/-]{16,}=*)"
    r"|(?P<pem>-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$))"
    r"|(?P<gh>\bgh[pousr]_[A-Za-z0-9]{30,})"
    r"|(?P<slack>\bxox[abpors]-[A-Za-z0-9-]{10,})"
    r"|(?P<sk>\bsk-[A-Za-z0-9_-]{20,})",
    re.S,
)
# Substring tests run at memchr speed; a regex scan of 1 KB costs ~15 µs here.
_SECRET_HINTS = ("AKIA", "ASIA", "eyJ", "Bearer", "-----BEGIN", "ghp_", "gho_", "ghu_",
                 "ghs_", "ghr_", "xox", "sk-")  # fmt: skip
_DIGITS = "0123456789"


@dataclass(frozen=True)
class Finding:
    """One detected item: its kind and where it is (the value stays inside this process)."""

    kind: str
    start: int
    end: int
    value: str


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """ISO 13616 check digits (mod 97 == 1) of an IBAN with or without spaces."""
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rotated = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1
    except ValueError:
        return False


def _digit_findings(text: str, region: str) -> list[Finding]:
    out: list[Finding] = []
    for m in _DIGIT_RUN.finditer(text):
        raw = m.group(0)
        digits = "".join(c for c in raw if c.isdigit())
        if _SSN.match(raw.strip()):
            out.append(Finding("SSN", m.start(), m.end(), raw))
        elif 13 <= len(digits) <= 19 and luhn_ok(digits) and "(" not in raw:
            out.append(Finding("CARD", m.start(), m.end(), raw))
        elif 7 <= len(digits) <= 15:
            try:
                number = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                out.append(Finding("PHONE", m.start(), m.end(), raw))
    return out


def scan_pii(text: str, *, region: str = "US") -> list[Finding]:
    """Every PII or secret item in `text`, non-overlapping, in order of position."""
    found: list[Finding] = []
    if any(map(text.__contains__, _SECRET_HINTS)):
        found += [Finding("SECRET", m.start(), m.end(), m.group(0)) for m in
                  _SECRETS.finditer(text)]  # fmt: skip
    if "@" in text:
        folded = text.translate(_CONFUSABLES) if not text.isascii() else text
        found += [Finding("EMAIL", m.start(), m.end(), text[m.start() : m.end()])
                  for m in _EMAIL.finditer(folded)]  # fmt: skip
    if any(map(text.__contains__, _DIGITS)):
        found += _digit_findings(text, region)
        if "." in text:
            for m in _IPV4.finditer(text):
                if all(int(p) <= 255 for p in m.group(0).split(".")):
                    found.append(Finding("IPV4", m.start(), m.end(), m.group(0)))
        found += [Finding("IBAN", m.start(), m.end(), m.group(0)) for m in _IBAN.finditer(text)
                  if iban_ok(m.group(0))]  # fmt: skip
    if text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            try:
                ipaddress.IPv6Address(m.group(0))
            except ValueError:
                continue
            found.append(Finding("IPV6", m.start(), m.end(), m.group(0)))
    return _resolve(found)


def _resolve(found: list[Finding]) -> list[Finding]:
    """Drop findings overlapping a more specific (then longer) one."""
    if len(found) < 2:
        return found
    kept: list[Finding] = []
    for f in sorted(found, key=lambda f: (_RANK[f.kind], -(f.end - f.start), f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)
