"""Building decision records: deterministic ids, reasons, and the Avro-shaped dicts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from guardstream.reasons import Reason

REQUEST_TYPE = "io.guardstream.request.v1"
USAGE_TYPE = "io.guardstream.usage.v1"
DECISION_TYPE = "io.guardstream.decision.v1"
DEADLETTER_TYPE = "io.guardstream.deadletter.v1"
_NAMESPACE = uuid.UUID("6f1b7a3e-3c2d-5b8e-9a41-0d5c2e7f9b10")


@dataclass(frozen=True)
class Ingress:
    """Where a record was read: its coordinates identify it across redeliveries."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def decision_id(ingress: Ingress) -> str:
    """A UUID derived from the ingress record, so a redelivered decision is an exact copy."""
    return str(uuid.uuid5(_NAMESPACE, f"{ingress.topic}/{ingress.partition}/{ingress.offset}"))


def reason(code: Reason, detail: str, field: str | None = None) -> dict[str, Any]:
    """One entry of a decision's `reasons`."""
    return {"code": str(code), "detail": detail, "field": field}


def decision(
    ingress: Ingress,
    *,
    request_id: str,
    request_source: str,
    tenant_id: str | None,
    admitted: bool,
    reasons: list[dict[str, Any]] | None = None,
    sanitized_request: dict[str, Any] | None = None,
    cost_estimate_micros: int = 0,
    retry_after_ms: int | None = None,
    findings: dict[str, int] | None = None,
    injection_score: int | None = None,
    budget_remaining_micros: int | None = None,
    duplicate_of: str | None = None,
) -> dict[str, Any]:
    """A decision record as the `Decision` Avro schema expects it."""
    return {
        "decision_id": decision_id(ingress),
        "request_id": request_id,
        "request_source": request_source,
        "tenant_id": tenant_id,
        "outcome": "ADMITTED" if admitted else "REJECTED",
        "reasons": reasons or [],
        "cost_estimate_micros": cost_estimate_micros,
        "retry_after_ms": retry_after_ms,
        "findings": findings or {},
        "injection_score": injection_score,
        "budget_remaining_micros": budget_remaining_micros,
        "duplicate_of": duplicate_of,
        "ingress_topic": ingress.topic,
        "ingress_partition": ingress.partition,
        "ingress_offset": ingress.offset,
        "decided_at": ingress.timestamp_ms,
        "sanitized_request": sanitized_request,
    }


def deadletter(
    ingress: Ingress,
    *,
    code: Reason,
    detail: str,
    stage: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]],
) -> dict[str, Any]:
    """A dead-letter envelope keeping the original record byte for byte."""
    return {
        "error_code": str(code),
        "error_detail": detail,
        "stage": stage,
        "original_topic": ingress.topic,
        "original_partition": ingress.partition,
        "original_offset": ingress.offset,
        "original_timestamp": ingress.timestamp_ms,
        "original_key": key,
        "original_value": value,
        "original_headers": [{"key": k, "value": v} for k, v in headers],
    }
