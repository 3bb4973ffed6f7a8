"""The guardrails: text hygiene, PII and secret detection, prompt-injection
heuristics, toxicity, token estimates, per-tenant policy, and the output guard for a model's
answers. Pure functions: no Kafka, no Faust."""

from guardstream.guardrails.budget import NO_DEADLINE, Deadline, OverBudget
from guardstream.guardrails.hygiene import normalize_text
from guardstream.guardrails.injection import InjectionResult, score_injection
from guardstream.guardrails.output import (
    OutputVerdict,
    StreamGuard,
    StreamStep,
    guard_completion,
)
from guardstream.guardrails.pii import Finding, scan_pii
from guardstream.guardrails.policy import (
    DEFAULT_POLICY,
    GuardrailResult,
    Policy,
    PolicyError,
    apply_policy,
    policy_from,
)
from guardstream.guardrails.tokens import estimate_prompt_tokens, register_estimator
from guardstream.guardrails.toxicity import ToxicityResult, score_toxicity

__all__ = [
    "DEFAULT_POLICY",
    "NO_DEADLINE",
    "Deadline",
    "Finding",
    "GuardrailResult",
    "InjectionResult",
    "OutputVerdict",
    "OverBudget",
    "Policy",
    "PolicyError",
    "StreamGuard",
    "StreamStep",
    "ToxicityResult",
    "apply_policy",
    "estimate_prompt_tokens",
    "guard_completion",
    "normalize_text",
    "policy_from",
    "register_estimator",
    "scan_pii",
    "score_injection",
    "score_toxicity",
]
