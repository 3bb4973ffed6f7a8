"""Preprocessing guardrails: text hygiene, PII and secret detection, prompt-injection
heuristics, token estimates and per-tenant policy. Pure functions: no Kafka, no Faust."""

from guardstream.preprocess.budget import NO_DEADLINE, Deadline, OverBudget
from guardstream.preprocess.hygiene import normalize_text
from guardstream.preprocess.injection import InjectionResult, score_injection
from guardstream.preprocess.pii import Finding, scan_pii
from guardstream.preprocess.policy import (
    DEFAULT_POLICY,
    Policy,
    PolicyError,
    PreprocessResult,
    apply_policy,
    policy_from,
)
from guardstream.preprocess.tokens import estimate_prompt_tokens, register_estimator

__all__ = [
    "DEFAULT_POLICY",
    "NO_DEADLINE",
    "Deadline",
    "Finding",
    "InjectionResult",
    "OverBudget",
    "Policy",
    "PolicyError",
    "PreprocessResult",
    "apply_policy",
    "estimate_prompt_tokens",
    "normalize_text",
    "policy_from",
    "register_estimator",
    "scan_pii",
    "score_injection",
]
