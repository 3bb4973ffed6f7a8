"""Per-tenant guardrail policy, and applying it to a request's messages.

For each detector a tenant chooses `allow`, `redact` (typed placeholders such as `[EMAIL_1]`,
the same value getting the same placeholder throughout the request), `hash` (a salted hash,
so values correlate within a tenant and never across tenants) or `block`. What was found is
reported as counts by kind, never as text.

Toxicity (`toxicity: allow | flag | block`, `toxicity_threshold` 0..1) is scored on the
whole prompt once the PII pass is done: `block` refuses it (TOXICITY_BLOCKED), `flag` admits
it with a `TOXICITY` entry in the findings counts (so the flag travels on the metering record
and the decision without a schema change), `allow` (the default) does not score at all.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardstream.guardrails.budget import NO_DEADLINE, Deadline
from guardstream.guardrails.hygiene import normalize_text
from guardstream.guardrails.injection import score_injection
from guardstream.guardrails.pii import Finding, scan_pii
from guardstream.guardrails.toxicity import preload, score_toxicity

Action = Literal["allow", "redact", "hash", "block"]
ToxicityAction = Literal["allow", "flag", "block"]
# The findings key a flagged toxicity score is counted under (alongside EMAIL, CARD, ...).
TOXICITY_FINDING = "TOXICITY"
_KIND_FIELD = {
    "EMAIL": "email",
    "PHONE": "phone",
    "CARD": "card",
    "IBAN": "iban",
    "SSN": "ssn",
    "IPV4": "ip",
    "IPV6": "ip",
    "SECRET": "secret",
}
_BOUNDARY = 64


class Policy(BaseModel):
    """What a tenant does with each kind of finding, its injection and toxicity settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    email: Action = "redact"
    phone: Action = "redact"
    card: Action = "redact"
    iban: Action = "redact"
    ssn: Action = "redact"
    ip: Action = "redact"
    secret: Action = "block"
    injection_threshold: Annotated[int, Field(ge=1, le=100)] = 70
    injection_action: Literal["allow", "block"] = "block"
    strip_html: bool = False
    phone_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "US"
    # `allow` by default: scoring loads scikit-learn (~1.6 s, ~100 MB) and costs ~5 ms a
    # request, which no existing tenant should start paying unasked.
    toxicity: ToxicityAction = "allow"
    toxicity_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.8

    def action(self, kind: str) -> Action:
        """The action for a finding kind."""
        action: Action = getattr(self, _KIND_FIELD[kind])
        return action


DEFAULT_POLICY = Policy()


class PolicyError(ValueError):
    """A tenant's policy map does not validate; the message names the key."""


def policy_from(values: Mapping[str, str]) -> Policy:
    """A Policy from a tenant config's string map (`{"email": "hash", ...}`)."""
    try:
        return Policy.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"policy.{where}: {first['msg']}") from None


@dataclass(frozen=True)
class GuardrailResult:
    """Cleaned messages and what was found; `blocked` is a reason code or None."""

    messages: tuple[tuple[str, str], ...]
    findings: dict[str, int]
    injection_score: int
    injection_families: tuple[str, ...]
    blocked: str | None
    blocked_detail: str | None
    toxicity_score: float | None = None  # None: the tenant's policy does not score it


class Placeholders:
    """Placeholder text per (kind, value): numbered in order of first sight, or hashed.

    One instance spans a whole request (or a whole completion, streamed or not), so the same
    value gets the same placeholder throughout.
    """

    def __init__(self, salt: str) -> None:
        self.salt = salt
        self.seen: dict[tuple[str, str], str] = {}
        self.counts: Counter[str] = Counter()

    def for_value(self, kind: str, value: str, action: Action) -> str:
        key = (kind, value)
        if key not in self.seen:
            if action == "hash":
                digest = hashlib.sha256(f"{self.salt}\x1f{value}".encode()).hexdigest()[:12]
                self.seen[key] = f"[{kind}:{digest}]"
            else:
                self.counts[kind] += 1
                self.seen[key] = f"[{kind}_{self.counts[kind]}]"
        return self.seen[key]


def _replace(text: str, spans: Sequence[tuple[int, int, str]]) -> str:
    out, last = [], 0
    for start, end, replacement in sorted(spans):
        out += [text[last:start], replacement]
        last = end
    out.append(text[last:])
    return "".join(out)


def apply_policy(
    messages: Sequence[tuple[str, str]],
    policy: Policy,
    *,
    salt: str = "",
    deadline: Deadline = NO_DEADLINE,
) -> GuardrailResult:
    """Normalise, detect, then redact / hash / block per the policy.

    Raises budget.OverBudget when `deadline` passes between two steps.
    """
    cleaned: list[tuple[str, str]] = []
    for i, (role, content) in enumerate(messages):
        cleaned.append((role, normalize_text(content, strip_html=policy.strip_html)))
        deadline.check(f"normalising messages[{i}]")
    per_message: list[list[Finding]] = []
    for i, (_role, content) in enumerate(cleaned):
        per_message.append(scan_pii(content, region=policy.phone_region))
        deadline.check(f"scanning messages[{i}] for PII")
    findings: Counter[str] = Counter()
    spans: list[list[tuple[int, int, str]]] = [[] for _ in cleaned]
    names = Placeholders(salt)

    def handle(i: int, f: Finding, start: int, end: int) -> str | None:
        findings[f.kind] += 1
        action = policy.action(f.kind)
        if action == "block":
            return f"messages[{i}].content contains {f.kind}; the tenant's policy blocks it"
        if action in ("redact", "hash"):
            spans[i].append((start, end, names.for_value(f.kind, f.value, action)))
        return None

    for i, found in enumerate(per_message):
        for f in found:
            if (why := handle(i, f, f.start, f.end)) is not None:
                return _blocked(cleaned, findings, "PII_BLOCKED", why)
    # Items split across adjacent messages: scan each boundary's join.
    for i in range(len(cleaned) - 1):
        tail, head = cleaned[i][1][-_BOUNDARY:], cleaned[i + 1][1][:_BOUNDARY]
        if not tail or not head:
            continue
        cut = len(tail)
        offset = len(cleaned[i][1]) - cut
        for f in scan_pii(tail + head, region=policy.phone_region):
            if not f.start < cut < f.end:
                continue
            # A match that merely extends an item already found on either side ("b@y.io" +
            # "again" reads as "b@y.ioagain") is that item, not one split across messages.
            if any(offset + f.start < g.end for g in per_message[i] if g.end > offset) or any(
                g.start < f.end - cut for g in per_message[i + 1]
            ):
                continue
            if (why := handle(i, f, offset + f.start, len(cleaned[i][1]))) is not None:
                return _blocked(cleaned, findings, "PII_BLOCKED", why)
            if policy.action(f.kind) != "allow":
                spans[i + 1].append((0, f.end - cut, ""))

    injection = score_injection("\n".join(c for _r, c in cleaned))
    deadline.check("scoring prompt injection")
    if policy.injection_action == "block" and injection.score >= policy.injection_threshold:
        families = ", ".join(injection.families)
        why = (
            f"prompt-injection score {injection.score} reaches the tenant's threshold "
            f"{policy.injection_threshold} ({families})"
        )
        return GuardrailResult(
            tuple(cleaned),
            dict(findings),
            injection.score,
            injection.families,
            "INJECTION_BLOCKED",
            why,
        )
    toxicity: float | None = None
    if policy.toxicity != "allow":
        # The model's one-off load (~1.6 s) is the process's cost, not this record's: it is
        # not charged to the budget of the record that happens to come first.
        deadline = deadline.extended(preload())
        toxicity = score_toxicity("\n".join(c for _r, c in cleaned)).score
        deadline.check("scoring toxicity")
        if toxicity >= policy.toxicity_threshold:
            if policy.toxicity == "block":
                why = (
                    f"toxicity score {toxicity:.2f} reaches the tenant's threshold "
                    f"{policy.toxicity_threshold:.2f}"
                )
                return GuardrailResult(
                    tuple(cleaned),
                    dict(findings),
                    injection.score,
                    injection.families,
                    "TOXICITY_BLOCKED",
                    why,
                    toxicity,
                )
            findings[TOXICITY_FINDING] += 1
    out = tuple(
        (role, _replace(c, spans[i]) if spans[i] else c) for i, (role, c) in enumerate(cleaned)
    )
    return GuardrailResult(
        out, dict(findings), injection.score, injection.families, None, None, toxicity
    )


def _blocked(
    cleaned: list[tuple[str, str]], findings: Counter[str], code: str, detail: str
) -> GuardrailResult:
    return GuardrailResult(tuple(cleaned), dict(findings), 0, (), code, detail)
