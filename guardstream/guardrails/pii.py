"""PII and secret detection, built for one cheap pass over a clean prompt.

Every detector sits behind a prefilter that costs a C-level substring or single-regex scan
(`'@' in text`, a digit run, a key prefix), so a prompt without PII pays a few microseconds.
Candidates are then confirmed by validators rather than by stricter regexes: the Luhn check
for cards, ISO 7064 mod-97 for IBANs, `phonenumbers` for phone numbers, `ipaddress` for IPs,
Shannon entropy and character-class mix for secrets without a vendor prefix.

Kinds: EMAIL, PHONE, CARD, IBAN, SSN, IPV4, IPV6, SECRET. Overlaps are resolved in favour of
the more specific kind (SECRET > CARD > IBAN > SSN > PHONE > IP > EMAIL), then the longer.

Secrets come in three shapes:

* Vendor formats recognised by their prefix: AWS key ids, JWTs, Bearer tokens, PEM private
  keys, GitHub (classic and fine-grained), Slack (`xox?-`, `xapp-`, incoming-webhook URLs),
  OpenAI-style `sk-`, Google API keys (`AIza`), Stripe secret and restricted keys and webhook
  secrets, GitLab `glpat-`, npm `npm_`, Hugging Face `hf_`, SendGrid `SG.`, PyPI upload
  tokens, Azure `AccountKey=` / `SharedAccessKey=` connection-string values.
* A value after a secret-ish label (`password=`, `aws_secret_access_key = `, `"token": "..."`,
  `api_key "..."`, `my password is ...`): the span is the value only, accepted when it has at
  least 8 characters, a digit or a non-identifier symbol, two character classes (three below
  12 characters), Shannon entropy of at least 0.7 * min(log2(len), 4) bits per character, no
  placeholder word (`changeme`, `your...`, `xxxx`, ...) and not code (`os.urandom(24)`,
  `process.env.KEY2`); letters-only values pass only if their case flips like random text.
* A standalone 40-character `[A-Za-z0-9/+]` token, the shape of an AWS secret access key:
  upper, lower and digit, entropy >= 4.2 bits per character (uniformly random tokens of that
  length stay above 4.25), not hex (git SHAs), not CamelCase prose (fewer than 20 characters in
  lowercase runs of three or more), and not base64 of printable text.

Obfuscated e-mails (`jane [at] example [dot] com`, `jane(at)example(dot)com`,
`jane{at}example.com`, `jane@example[dot]com`, `jane at example [dot] com`, AT/DOT in any
case, brackets `[]`, `()` or `{}` with optional inner spaces) count as EMAIL only when at least
one of "at" / "dot" sits in brackets. Bare `name at domain dot com` is deliberately left alone:
"meet me at the cafe dot com" style prose is far more common than an address written with bare
words, and redacting prose would damage ordinary prompts. The finding spans the whole address,
brackets included, so redaction removes all of it.

Linear time: every repetition is bounded (or possessive), and every run that can be long has
its start pinned by a look-behind excluding its own class, so each position is tried a bounded
number of times and a hostile megabyte costs time proportional to its size. The one unbounded
piece, the PEM body, is a lazy dot ended by a single literal. Overlap resolution is
O(k log k) in the number of findings.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

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
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?\.){1,16}"
    r"[A-Za-z]{2,24}"
)
_DIGIT_RUN = re.compile(r"(?<![\w.])\+?\(?\d[\d \-().]{5,24}\d(?![\w])")
_SSN = re.compile(r"^(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")

# Each vendor format has its own pattern, run only when its gate character (a memchr-speed
# test, "" for none) and its hint occur: one alternation of every format cost ~600 µs per KB
# because no literal prefix let the engine skip ahead. A hint is a substring test or, to fold
# several formats sharing a rare character into one scan, a regex with a literal prefix.
_HINT_A = re.compile(r"A(?:KIA|SIA|Iza)")
_HINT_UNDERSCORE = re.compile(
    r"_(?:(?<=gh[pousr]_)|(?<=github_pat_)|(?<=k_live_)|(?<=k_test_)|(?<=whsec_)|(?<=npm_)"
    r"|(?<=hf_))"
)
_HINT_DASH = re.compile(
    r"-(?:(?<=sk-)|(?<=xox[abpors]-)|(?<=xapp-)|(?<=glpat-)|(?<=pypi-)|(?=----BEGIN ))"
)
_HINT_KEY_EQ = re.compile(r"Key=(?:(?<=AccountKey=)|(?<=SharedAccessKey=))")
# Upper bounds sit far above real token lengths; they exist so that no run is unbounded.
# Look-behinds that exclude a pattern's own run class (rather than \b) keep a run from being
# re-scanned from every position inside it ("eyJ-eyJ-eyJ-..." was quadratic).
_FAMILIES: tuple[tuple[str, str | re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (gate, hint, re.compile(pattern, re.S))
    for gate, hint, pattern in (
        ("A", _HINT_A, r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        ("A", _HINT_A, r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
        (
            "",
            "eyJ",
            r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,8192}\.eyJ[A-Za-z0-9_-]{5,16384}"
            r"\.[A-Za-z0-9_-]{10,8192}",
        ),
        ("B", "Bearer", r"\bBearer\s{1,8}[A-Za-z0-9._~+/-]{16,8192}={0,3}"),
        # A lazy dot ended by one literal (or the end of the text) is linear, and a bound
        # would leave the tail of a long key in the output.
        (
            "-",
            _HINT_DASH,
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----.*?"
            r"(?:-----END [A-Z ]{0,40}PRIVATE KEY-----|$)",
        ),
        ("_", _HINT_UNDERSCORE, r"\bgh[pousr]_[A-Za-z0-9]{30,255}"),
        ("_", _HINT_UNDERSCORE, r"\bgithub_pat_[A-Za-z0-9_]{60,255}"),
        ("-", _HINT_DASH, r"\bxox[abpors]-[A-Za-z0-9-]{10,255}"),
        ("-", _HINT_DASH, r"\bxapp-\d-[A-Za-z0-9-]{10,255}"),
        (
            "/",
            "hooks.slack.com",
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,255}",
        ),
        ("-", _HINT_DASH, r"\bsk-[A-Za-z0-9_-]{20,512}"),
        (
            "_",
            _HINT_UNDERSCORE,
            r"(?<![A-Za-z0-9])[sr]k_(?:live|test)_[0-9A-Za-z]{16,247}(?![A-Za-z0-9])",
        ),
        ("_", _HINT_UNDERSCORE, r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=]{24,128}"),
        ("-", _HINT_DASH, r"(?<![A-Za-z0-9_-])glpat-[0-9A-Za-z_-]{20,64}"),
        ("_", _HINT_UNDERSCORE, r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])"),
        # Hugging Face tokens are mixed-case letters (and digits); one case only is an
        # identifier or a mask such as hf_xxxx...
        (
            "_",
            _HINT_UNDERSCORE,
            r"(?<![A-Za-z0-9_])hf_(?=[A-Za-z0-9]{0,39}[A-Z])(?=[A-Za-z0-9]{0,39}[a-z])"
            r"[A-Za-z0-9]{30,40}(?![A-Za-z0-9])",
        ),
        (
            "G",
            "SG.",
            r"(?<![A-Za-z0-9_-])SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])",
        ),
        ("-", _HINT_DASH, r"(?<![A-Za-z0-9_-])pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,1024}"),
        # The value only, so the connection string stays readable around the placeholder.
        (
            "=",
            _HINT_KEY_EQ,
            r"(?<=AccountKey=)[A-Za-z0-9+/]{40,128}={0,2}"
            r"|(?<=SharedAccessKey=)[A-Za-z0-9+/]{30,128}={0,2}",
        ),
    )
)
_GROUPED: dict[tuple[str, str | re.Pattern[str]], list[re.Pattern[str]]] = {}
for _gate, _hint, _pattern in _FAMILIES:
    _GROUPED.setdefault((_gate, _hint), []).append(_pattern)
# One Python-level step per (gate, hint) rather than per format: the fixed cost of a call
# matters because every request also scans its short system prompt and message joins.
_FAMILY_GROUPS = tuple((gate, hint, tuple(pats)) for (gate, hint), pats in _GROUPED.items())
_DIGITS = "0123456789"

# --- secrets after a label ----------------------------------------------------------------------
# A label's stem is found on a lowered copy by a literal-prefix regex (the engine skips ahead
# at C speed) guarded by a look-ahead for the separator, so prose such as "pass the salt" or
# "key risks" stops within a few steps; the label-and-value regex is then only *matched* at
# those positions, never scanned across the text.
_LABEL_TAIL_SEP = (
    r"(?:[ _.-]?(?:access|key|id|value|token|secret|string|text|word|phrase|hash|b64)){0,3}"
    r"[\"']?"
    r"(?:\s{0,3}(?::=|=>|[:=])\s{0,3}|\s{1,3}(?:is|was):?\s{1,3}|\s{1,3}(?=[\"'`]))"
)
_KEY_OWNERS = (
    "api",
    "access",
    "private",
    "auth",
    "secret",
    "account",
    "signing",
    "encryption",
    "master",
    "client",
    "app",
)
# "key" alone is everyday prose; it counts only right after an owner word, checked by one
# fixed-width look-behind per owner and separator.
_KEY_AFTER_OWNER = "|".join(
    f"(?<={re.escape(owner + sep)}key)" for owner in _KEY_OWNERS for sep in ("", "_", "-", ".", " ")
)
_KEY_STEM = re.compile(
    # "key" is frequent in prose, so a separator or label word right after it (a failure within
    # two or three steps) is demanded before the owner look-behinds run.
    r"key(?=[\"']?\s{0,3}[:=]|[\"']?\s{1,3}(?:is|was)[\s:]|\s{1,3}[\"'`]"
    r"|[ _.-]?(?:id|value|string|text|hash|b64|token|secret))"
    f"(?:{_KEY_AFTER_OWNER})"
)
_STEMS = (
    *(
        (lit, re.compile(f"{lit}{rest}(?={_LABEL_TAIL_SEP})"))
        for lit, rest in (
            ("secret", ""),
            ("pass", "(?:word|wd|phrase)?"),
            ("pwd", ""),
            ("token", ""),
        )
    ),
    ("key", _KEY_STEM),
)
_LABELLED = re.compile(
    r"(?:secret|pass(?:word|wd|phrase)?|pwd|token|key)"
    + _LABEL_TAIL_SEP
    + r"(?:(?P<q>[\"'`])(?P<quoted>[^\"'`\r\n]{8,512})(?P=q)|(?P<bare>[^\s\"'`<>\[\]{};]{8,512}))",
    re.I,
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Values people paste instead of a secret; checked as substrings of the lowered value.
_PLACEHOLDERS = (
    "changeme",
    "change_me",
    "change-me",
    "your",
    "placeholder",
    "redacted",
    "xxxx",
    "****",
    "....",
    "dummy",
    "sample",
    "replace",
    "insert",
    "todo",
    "fixme",
    "password",
    "secret",
    "token",
    "undefined",
    "null",
)
_IDENTIFIER_SYMBOLS = frozenset("_.-/")
# Code on the right of `password =` is a call or a dotted reference (`bcrypt.hashpw(pw`,
# `process.env.API_KEY2`), which code-review prompts are full of; secrets are neither.
_CODE_LIKE = re.compile(
    r"[A-Za-z_$][\w$]{0,64}+(?:(?:\.[A-Za-z_$][\w$]{0,64}+){0,16}+\(|(?:\.[A-Za-z_$][\w$]{0,64}+){1,16}+\Z)"
)

# --- the AWS secret access key shape, without a label ------------------------------------------
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+_-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_-])")
# Maps the token alphabet to "x" and everything else to a space, so one bytes search for 40
# "x"s tells whether any 40-character run exists before paying for the regex scan.
_RUN_TABLE = bytes.maketrans(
    bytes(range(256)),
    bytes(
        120 if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "/+") else 32 for c in range(256)
    ),
)
_RUN_40 = b"x" * 40
_HEX = frozenset("0123456789abcdefABCDEF")
_LOWER_RUN = re.compile(r"[a-z]{3,}")

# --- obfuscated e-mail addresses ----------------------------------------------------------------
# An obfuscation token ends at a closing bracket: prose has few, so each is checked by a
# match over the dozen characters before it rather than by a scan of the whole text.
_OBF_TOKEN_END = re.compile(r"[\[({]\s{0,2}(?:at|dot|period)\s{0,2}\Z")
_OPEN, _CLOSE = r"\s{0,3}[\[({]\s{0,2}", r"\s{0,2}[\])}]\s{0,3}"
_OBF_AT = rf"(?:{_OPEN}at{_CLOSE}|\s{{1,3}}at\s{{1,3}}|\s{{0,3}}@\s{{0,3}})"
_OBF_DOT = rf"(?:{_OPEN}(?:dot|period){_CLOSE}|\s{{1,3}}dot\s{{1,3}}|\.)"
_OBF_LOCAL_DOT = rf"(?:{_OPEN}dot{_CLOSE}|\.)"
# Possessive runs (Python 3.11+): no separator can start with a run's own characters, so
# giving characters back could never help, and refusing to keeps each attempt short.
_OBF_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}+(?<!-)"
_OBF_EMAIL = re.compile(
    rf"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9_%+-]{{0,63}}+"
    rf"(?:{_OBF_LOCAL_DOT}[A-Za-z0-9_%+-]{{1,64}}+){{0,4}}"
    rf"{_OBF_AT}(?:{_OBF_LABEL}{_OBF_DOT}){{1,4}}[A-Za-z]{{2,24}}(?![A-Za-z0-9-])",
    re.I,
)
_BRACKETED = re.compile(rf"{_OPEN}(?:at|dot|period){_CLOSE}", re.I)


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


def shannon_entropy(value: str) -> float:
    """Shannon entropy of `value` in bits per character (0.0 for the empty string)."""
    n = len(value)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def secret_value_ok(value: str) -> bool:
    """Whether a value found after a secret-ish label looks like a real secret.

    Rejects placeholders, plain words and identifiers, code (calls, dotted references),
    digit-only values, URLs and strings too repetitive for their length; see the module
    docstring for the thresholds.
    """
    n = len(value)
    if n < 8:
        return False
    low = value.lower()
    # Secrets do not contain spaces; a quoted phrase after "secret:" is prose.
    if "://" in value or any(p in low for p in _PLACEHOLDERS) or any(map(str.isspace, value)):
        return False
    if _CODE_LIKE.match(value):
        return False
    has_lower = any(c.islower() for c in value)
    has_upper = any(c.isupper() for c in value)
    has_digit = any(c.isdigit() for c in value)
    has_symbol = any(not c.isalnum() for c in value)
    # Without a digit or a symbol beyond identifier punctuation it is a word or a variable
    # name (`settings.SECRET_KEY`, `getPassword`) unless the case flips as often as in random
    # letters (about every other character; names flip once per word).
    if not has_digit and all(c.isalnum() or c in _IDENTIFIER_SYMBOLS for c in value):
        flips = sum(
            a.islower() != b.islower()
            for a, b in itertools.pairwise(value)
            if a.isalpha() and b.isalpha()
        )
        if flips * 4 < n:
            return False
    classes = has_lower + has_upper + has_digit + has_symbol
    if classes < (3 if n < 12 else 2):
        return False
    return shannon_entropy(value) >= 0.7 * min(math.log2(n), 4.0)


def aws_secret_shape_ok(token: str) -> bool:
    """Whether a standalone 40-character `[A-Za-z0-9/+]` token looks like an AWS secret key."""
    if not (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    ):
        return False
    if all(c in _HEX for c in token) or shannon_entropy(token) < 4.2:
        return False
    # CamelCase identifiers and paths carry long lowercase runs; random tokens rarely do
    # (20 is above the 99.9th percentile for uniformly random 40-character tokens).
    if sum(len(r) for r in _LOWER_RUN.findall(token)) >= 20:
        return False
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return True
    # 30 random bytes are all printable with probability ~1e-13; encoded prose always is.
    return not all(32 <= b < 127 or b in (9, 10, 13) for b in decoded)


# Maximal runs, so each match starts a run; a leading charset lets `re` skip ahead at C speed.
_DIGIT_RUNS = re.compile(r"[0-9]+")


# One `match` call costs about as much as scanning this many characters.
_ATTEMPT_CHARS = 16


def _anchored(
    pattern: re.Pattern[str], text: str, starts: list[int] | None, offsets: tuple[int, ...]
) -> Iterator[re.Match[str]]:
    """`pattern.finditer(text)`, trying only `offsets` characters before each digit-run start.

    Valid for a pattern whose every match starts that way: its first digit is preceded by a
    non-digit. Prose has a handful of digit runs, and scanning every position costs ~30 µs
    per KB per pattern. `starts` is None for non-ASCII text, where `\\d` also matches other
    scripts' digits, and for digit-dense text (a base64 run), where a Python-level attempt
    per run would cost more than the scan: such text is scanned in full.
    """
    if starts is None or len(starts) * len(offsets) * _ATTEMPT_CHARS > len(text):
        yield from pattern.finditer(text)
        return
    resume = 0
    for d in starts:
        for back in offsets:
            if d - back < resume:
                continue
            if (m := pattern.match(text, d - back)) is not None:
                yield m
                resume = m.end()
                break


def _run_starts(text: str) -> list[int] | None:
    """Where each run of ASCII digits starts; None once they are too many to try one by one."""
    cap = len(text) // _ATTEMPT_CHARS
    starts: list[int] = []
    for m in _DIGIT_RUNS.finditer(text):
        if len(starts) >= cap:
            return None
        starts.append(m.start())
    return starts


def _digit_findings(text: str, region: str, starts: list[int] | None) -> list[Finding]:
    out: list[Finding] = []
    # A run starts with its first digit, or "+" / "(" one or two characters before it.
    for m in _anchored(_DIGIT_RUN, text, starts, (2, 1, 0)):
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


def _prefixed_secrets(text: str) -> list[Finding]:
    out: list[Finding] = []
    for gate, hint, patterns in _FAMILY_GROUPS:
        if gate and gate not in text:
            continue
        if hint in text if isinstance(hint, str) else hint.search(text):
            out += [
                Finding("SECRET", m.start(), m.end(), m.group(0))
                for pattern in patterns
                for m in pattern.finditer(text)
            ]
    return out


def _labelled_secrets(text: str, lowered: str) -> list[Finding]:
    # A substring test is cheaper than a regex scan that finds nothing, except for "key",
    # which ordinary prose contains anyway.
    starts = sorted(
        m.start()
        for literal, stem in _STEMS
        if literal == "key" or literal in lowered
        for m in stem.finditer(lowered)
    )
    if not starts:
        return []
    out: list[Finding] = []
    resume = 0
    # Sorted, and a stem inside an already-consumed label or value is skipped, so the work
    # stays proportional to the text even when every word is a label.
    for i in starts:
        if i < resume:
            continue
        m = _LABELLED.match(text, i)
        if m is None:
            continue
        resume = m.end()
        group = "quoted" if m.group("quoted") is not None else "bare"
        start, end = m.span(group)
        value = m.group(group)
        if group == "bare":
            # Sentence punctuation after an unquoted value is prose, not part of the secret.
            value = value.rstrip(".,;:)")
            end = start + len(value)
        if secret_value_ok(value):
            out.append(Finding("SECRET", start, end, value))
    return out


def _aws_secret_findings(text: str) -> list[Finding]:
    if _RUN_40 not in text.encode("utf-8", "surrogatepass").translate(_RUN_TABLE):
        return []
    return [
        Finding("SECRET", m.start(), m.end(), m.group(0))
        for m in _AWS_SECRET.finditer(text)
        if aws_secret_shape_ok(m.group(0))
    ]


# Below one "@" per this many characters, searching from each "@" beats one full scan.
_AT_SPACING = 128


def _emails(folded: str) -> Iterator[re.Match[str]]:
    """`_EMAIL.finditer(folded)`, each search starting at most 64 characters before an "@".

    A match's local part is at most 64 characters and holds no "@", so no match starts
    further before the first "@" at or after the resume point; scanning prose from there
    (every word is tried as a local part) cost ~50 µs per KB. Text dense with "@" is
    scanned in one go: a Python-level search per address would cost more.
    """
    if folded.count("@") * _AT_SPACING > len(folded):
        yield from _EMAIL.finditer(folded)
        return
    pos = 0
    while (at := folded.find("@", pos)) != -1:
        m = _EMAIL.search(folded, max(pos, at - 64))
        if m is None:
            return
        yield m
        pos = m.end()


def _obfuscation_hint(lowered: str) -> bool:
    for close in "])}":
        j = lowered.find(close)
        while j != -1:
            if _OBF_TOKEN_END.search(lowered, max(0, j - 12), j):
                return True
            j = lowered.find(close, j + 1)
    return False


def _obfuscated_emails(text: str, folded: str) -> list[Finding]:
    return [
        Finding("EMAIL", m.start(), m.end(), text[m.start() : m.end()])
        for m in _OBF_EMAIL.finditer(folded)
        if _BRACKETED.search(m.group(0))
    ]


def scan_pii(text: str, *, region: str = "US") -> list[Finding]:
    """Every PII or secret item in `text`, non-overlapping, in order of position."""
    if len(text) <= _SHORT:
        return list(_scan_short(text, region))
    return _scan(text, region)


# System prompts and other short texts recur from request to request, and a scan has a fixed
# cost of a few microseconds whatever the length; findings are immutable, so they are shared.
_SHORT = 256


@lru_cache(maxsize=4096)
def _scan_short(text: str, region: str) -> tuple[Finding, ...]:
    return tuple(_scan(text, region))


def _scan(text: str, region: str) -> list[Finding]:
    found: list[Finding] = []
    ascii_text = text.isascii()
    # Length-preserving lower case: str.lower can grow non-ASCII text ("İ" becomes two
    # characters), which would shift positions against `text`.
    lowered = text.lower() if ascii_text else text.translate(_ASCII_LOWER)
    found += _prefixed_secrets(text)
    found += _labelled_secrets(text, lowered)
    has_digits = any(map(text.__contains__, _DIGITS))
    if has_digits:
        found += _aws_secret_findings(text)
    folded = text if ascii_text else text.translate(_CONFUSABLES)
    if "@" in text:
        found += [
            Finding("EMAIL", m.start(), m.end(), text[m.start() : m.end()]) for m in _emails(folded)
        ]
    if ("[" in text or "(" in text or "{" in text) and _obfuscation_hint(lowered):
        found += _obfuscated_emails(text, folded)
    if has_digits:
        starts = _run_starts(text) if ascii_text else None
        found += _digit_findings(text, region, starts)
        if "." in text:
            for m in _anchored(_IPV4, text, starts, (0,)):
                if all(int(p) <= 255 for p in m.group(0).split(".")):
                    found.append(Finding("IPV4", m.start(), m.end(), m.group(0)))
        found += [
            Finding("IBAN", m.start(), m.end(), m.group(0))
            for m in _anchored(_IBAN, text, starts, (2,))  # two capitals, then the digits
            if iban_ok(m.group(0))
        ]
    if text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            try:
                ipaddress.IPv6Address(m.group(0))
            except ValueError:
                continue
            found.append(Finding("IPV6", m.start(), m.end(), m.group(0)))
    return _resolve(found)


def _resolve(found: list[Finding]) -> list[Finding]:
    """Drop findings overlapping a more specific (then longer) one.

    Kept spans are marked in a byte map, so each check costs the candidate's length: the
    pass is linear in the text (each detector's own matches do not overlap one another),
    where comparing every candidate with every kept finding was quadratic in their number.
    """
    if len(found) < 2:
        return found
    taken = bytearray(max(f.end for f in found))
    kept: list[Finding] = []
    for f in sorted(found, key=lambda f: (_RANK[f.kind], -(f.end - f.start), f.start)):
        if taken.find(1, f.start, f.end) == -1:
            taken[f.start : f.end] = b"\x01" * (f.end - f.start)
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)
