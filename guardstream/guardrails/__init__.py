"""The guardrails: text hygiene, PII and secret detection, prompt-injection
heuristics, token estimates and per-tenant policy. Pure functions: no Kafka, no Faust."""

from guardstream.guardrails.budget import NO_DEADLINE, Deadline, OverBudget
from guardstream.guardrails.hygiene import normalize_text
from guardstream.guardrails.injection import InjectionResult, score_injection
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

__all__ = [
    "DEFAULT_POLICY",
    "NO_DEADLINE",
    "Deadline",
    "Finding",
    "GuardrailResult",
    "InjectionResult",
    "OverBudget",
    "Policy",
    "PolicyError",
    "apply_policy",
    "estimate_prompt_tokens",
    "normalize_text",
    "policy_from",
    "register_estimator",
    "scan_pii",
    "score_injection",
]
