"""Guarding a model's answer with the tenant's policy: whole answers and streamed ones.

The same detectors and the same per-kind actions as the prompt (`pii.scan_pii`,
`policy.Policy`, `policy.Placeholders`), and toxicity per `toxicity` / `toxicity_threshold`.
An answer's text is not normalised the way a prompt is: it is what the provider wrote, and
changing it (NFKC, whitespace) would change what the client reads beyond the redactions.

Streaming. `StreamGuard` releases text only once it can no longer change: it holds back the
last `HOLD` characters, longer than any bounded detector match (an e-mail is at most ~1,100
characters, an IBAN 34, a card or phone number 26, a labelled secret ~600, a vendor key up
to ~1,050), so a match split across chunks is still whole when it is scanned. Tokens that can
be longer (JWT, Bearer, PEM, Slack) match on their prefix: a match that runs into the held
tail moves the release point back to its start, however long it grows. Each scan covers the
unreleased text plus `CONTEXT` characters already released (look-behinds, a secret's label),
and findings are committed in order of position with one `Placeholders` for the whole
answer, so for every split of an answer into chunks the released text is exactly
`guard_completion`'s redacted text (a hypothesis property test holds it to that).
Limitations: a JWT whose header alone is longer than HOLD is recognised too late; and an
item still open after `MAX_HELD` characters (a PEM key with no END line, a giant token) stops
the stream with OUTPUT_PII_BLOCKED, where `guard_completion` would redact it: holding, and
rescanning, an ever longer tail is the unbounded work and memory the hold must not become.

Toxicity is scored on a sliding window over the raw stream (held text included): whenever
`STRIDE` new characters have arrived, the text since the last score plus `toxicity.OVERLAP`
characters before it, cut by `toxicity.windows` (so windows straddle chunk boundaries, and
a huge chunk is still scored whole, in one model call of at most `toxicity.MAX_WINDOWS`
rows). Nothing is released before it has been scored. On a block the stream stops: what is
held is never released (what was released before the block has been sent already).

Work per character is bounded: a PII scan runs only once `STEP` characters can be released
and `STEP` more have arrived since the last scan, over at most CONTEXT + MAX_HELD characters
(plus one chunk); normally CONTEXT + HOLD + STEP, so each character is scanned about
(CONTEXT + HOLD + STEP) / STEP = 11 times whatever the chunking.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from guardstream.dispatch.codes import CompletionCode
from guardstream.guardrails.pii import Finding, scan_pii
from guardstream.guardrails.policy import TOXICITY_FINDING, Placeholders, Policy
from guardstream.guardrails.toxicity import OVERLAP, Scorer, score_toxicity

HOLD = 2048
CONTEXT = 512
STEP = 256
MAX_HELD = 16_384
STRIDE = 1024  # < HOLD, so scoring never holds text back longer than HOLD does

# The answer's block codes, as the completion carries them (`guardstream.dispatch.codes`).
OUTPUT_PII_BLOCKED = str(CompletionCode.OUTPUT_PII_BLOCKED)
OUTPUT_TOXICITY_BLOCKED = str(CompletionCode.OUTPUT_TOXICITY_BLOCKED)


@dataclass(frozen=True)
class OutputVerdict:
    """A whole answer, guarded: `text` is redacted ("" when `blocked` names a reason code)."""

    text: str
    findings: dict[str, int]
    toxicity_score: float | None  # None: the policy does not score toxicity
    flags: tuple[str, ...]  # e.g. ("TOXICITY",) for `toxicity: flag` over the threshold
    blocked: str | None
    blocked_detail: str | None


@dataclass(frozen=True)
class StreamStep:
    """What one `feed` or `finish` allows: `release` is redacted text safe to send now."""

    release: str
    stop: bool = False
    blocked: str | None = None
    blocked_detail: str | None = None
    flags: tuple[str, ...] = ()


def _toxicity_block_detail(score: float, policy: Policy) -> str:
    return (
        f"answer toxicity score {score:.2f} reaches the tenant's threshold "
        f"{policy.toxicity_threshold:.2f}"
    )


def _pii_block_detail(kind: str) -> str:
    return f"the answer contains {kind}; the tenant's policy blocks it"


def guard_completion(
    text: str, policy: Policy, *, salt: str = "", scorer: Scorer | None = None
) -> OutputVerdict:
    """Redact, flag or block a whole answer per the tenant's policy.

    `salt` is the tenant id (hashed placeholders correlate within a tenant only); `scorer`
    replaces the toxicity model (tests).
    """
    findings: Counter[str] = Counter()
    names = Placeholders(salt)
    spans: list[tuple[int, int, str]] = []
    for f in scan_pii(text, region=policy.phone_region):
        findings[f.kind] += 1
        action = policy.action(f.kind)
        if action == "block":
            return OutputVerdict(
                "", dict(findings), None, (), OUTPUT_PII_BLOCKED, _pii_block_detail(f.kind)
            )
        if action in ("redact", "hash"):
            spans.append((f.start, f.end, names.for_value(f.kind, f.value, action)))
    score: float | None = None
    flags: tuple[str, ...] = ()
    if policy.toxicity != "allow":
        score = score_toxicity(text, scorer=scorer).score
        if score >= policy.toxicity_threshold:
            if policy.toxicity == "block":
                detail = _toxicity_block_detail(score, policy)
                return OutputVerdict("", dict(findings), score, (), OUTPUT_TOXICITY_BLOCKED, detail)
            flags = (TOXICITY_FINDING,)
            findings[TOXICITY_FINDING] += 1
    return OutputVerdict(_redact(text, spans), dict(findings), score, flags, None, None)


def _redact(text: str, spans: list[tuple[int, int, str]], offset: int = 0) -> str:
    out, last = [], 0
    for start, end, replacement in spans:
        out += [text[last : start - offset], replacement]
        last = end - offset
    out.append(text[last:])
    return "".join(out)


@dataclass
class StreamGuard:
    """Guards a streamed answer chunk by chunk; see the module docstring for the rules.

    Call `feed` with each delta as it arrives and send what it releases; call `finish` at the
    end of the stream and send that too. Once a step says `stop`, stop the provider's stream:
    every later call releases nothing.
    """

    policy: Policy
    salt: str = ""
    scorer: Scorer | None = None
    hold: int = HOLD
    findings: Counter[str] = field(default_factory=Counter)
    toxicity_score: float | None = None  # the highest window score so far
    scans: int = 0  # PII scans run (the work done, for tests and metrics)
    _names: Placeholders = field(init=False)
    _buf: str = ""  # raw text from absolute position _base on
    _base: int = 0
    _released: int = 0  # absolute position up to which raw text has been released
    _scored: int = 0  # absolute position up to which toxicity has been scored
    _scanned: int = 0  # the total length at the last PII scan
    _flags: tuple[str, ...] = ()
    _stopped: StreamStep | None = None

    def __post_init__(self) -> None:
        self._names = Placeholders(self.salt)

    @property
    def _total(self) -> int:
        return self._base + len(self._buf)

    def feed(self, delta: str) -> StreamStep:
        """Take the next chunk; release what can no longer change."""
        if self._stopped is not None:
            return self._stopped
        self._buf += delta
        if self._total - self._scored >= STRIDE and (stop := self._score_toxicity()):
            return stop
        target = min(self._total - self.hold, self._scored_to())
        if target - self._released < STEP or self._total - self._scanned < STEP:
            return StreamStep("", flags=self._flags)
        return self._release(target, final=False)

    def finish(self) -> StreamStep:
        """The stream ended: release everything that is left (or stop)."""
        if self._stopped is not None:
            return self._stopped
        if self._total > self._scored and (stop := self._score_toxicity()):
            return stop
        return self._release(self._total, final=True)

    def _scored_to(self) -> int:
        return self._total if self.policy.toxicity == "allow" else self._scored

    def _score_toxicity(self) -> StreamStep | None:
        if self.policy.toxicity == "allow":
            self._scored = self._total
            return None
        start = max(self._base, self._scored - OVERLAP)
        score = score_toxicity(self._buf[start - self._base :], scorer=self.scorer).score
        self._scored = self._total
        self.toxicity_score = max(score, self.toxicity_score or 0.0)
        if score < self.policy.toxicity_threshold:
            return None
        if self.policy.toxicity == "block":
            detail = _toxicity_block_detail(score, self.policy)
            return self._stop(OUTPUT_TOXICITY_BLOCKED, detail)
        if not self._flags:
            self._flags = (TOXICITY_FINDING,)
            self.findings[TOXICITY_FINDING] += 1
        return None

    def _stop(self, code: str, detail: str) -> StreamStep:
        self._stopped = StreamStep("", True, code, detail, self._flags)
        self._buf = ""  # nothing held is ever released
        return self._stopped

    def _release(self, target: int, *, final: bool) -> StreamStep:
        """Release raw text up to `target` (earlier if a finding straddles it), redacted."""
        self.scans += 1
        self._scanned = self._total
        found = scan_pii(self._buf, region=self.policy.phone_region)
        # Absolute positions; findings starting in the already released context are earlier
        # items (or their cut-off ends) and were dealt with when they were released.
        fresh = [
            Finding(f.kind, f.start + self._base, f.end + self._base, f.value)
            for f in found
            if f.start + self._base >= self._released
        ]
        if not final:
            for f in fresh:
                if f.start < target < f.end:
                    target = f.start  # in position order: the first straddler decides
                    if self._total - target > MAX_HELD:
                        detail = (
                            f"the answer holds a {f.kind} item still open after {MAX_HELD} "
                            "characters; the answer is withheld"
                        )
                        return self._stop(OUTPUT_PII_BLOCKED, detail)
                    break
        spans: list[tuple[int, int, str]] = []
        for f in fresh:
            if f.end > target:
                break
            self.findings[f.kind] += 1
            action = self.policy.action(f.kind)
            if action == "block":
                return self._stop(OUTPUT_PII_BLOCKED, _pii_block_detail(f.kind))
            if action in ("redact", "hash"):
                spans.append((f.start, f.end, self._names.for_value(f.kind, f.value, action)))
        raw = self._buf[self._released - self._base : target - self._base]
        text = _redact(raw, spans, self._released)
        self._released = target
        # Keep CONTEXT characters of released text for the next scan's look-behinds.
        keep_from = max(self._base, target - CONTEXT)
        self._buf = self._buf[keep_from - self._base :]
        self._base = keep_from
        return StreamStep(text, flags=self._flags)
