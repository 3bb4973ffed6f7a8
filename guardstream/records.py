"""What flows through the stages: where a record was read, what a stage decided to send.

`RawRecord` is an input as the broker delivered it; `Outcome` is one record to send (a
topic, key, the Avro-shaped record and its CloudEvents headers), encoded only at the edge by
`agents.Outputs`. The builders here give decision and dead-letter records their
deterministic ids, so a redelivered input produces byte-identical outputs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from guardstream.reasons import Reason
from guardstream.streams.cloudevents import binary_headers
from guardstream.streams.topics import DEADLETTER_TYPE, DECISION_TYPE, Topic

# The record name the decision schema gives the embedded sanitized request (a union branch).
REQUEST_RECORD = "io.guardstream.v1.Request"
_NAMESPACE = uuid.UUID("6f1b7a3e-3c2d-5b8e-9a41-0d5c2e7f9b10")


@dataclass(frozen=True)
class Ingress:
    """Where a record was read: its coordinates identify it across redeliveries."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True)
class Position:
    """Where a metering record sits: its partition, offset and broker timestamp."""

    partition: int
    offset: int
    ts_ms: int


@dataclass(frozen=True)
class RawRecord:
    """An ingress record as the broker delivered it."""

    ingress: Ingress
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Outcome:
    """One record to send: topic, key, the record as its topic's schema expects, headers."""

    topic: Topic
    key: bytes | None
    record: dict[str, Any]
    headers: list[tuple[str, bytes]]
    code: str  # the first reason code, "FORWARDED", "ADMITTED" or the audit kind
    tenant_id: str | None
    findings: dict[str, int] = field(default_factory=dict)


def request_data(
    tenant_id: str,
    messages: list[dict[str, str]],
    *,
    model: str = "gpt-4o-mini",
    max_tokens: int = 256,
    **optional: Any,
) -> dict[str, Any]:
    """A request's data as the `Request` schema expects it; optional fields default to unset.

    `optional` sets any of `temperature`, `top_p`, `stop`, `idempotency_key`, `metadata`.
    """
    return {
        "tenant_id": tenant_id,
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": None,
        "top_p": None,
        "stop": None,
        "idempotency_key": None,
        "metadata": {},
        **optional,
    }


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


def dead_letter(rec: RawRecord, code: Reason, detail: str, stage: str) -> Outcome:
    """The original record, byte for byte, in a dead-letter envelope naming the reason."""
    envelope = deadletter(
        rec.ingress,
        code=code,
        detail=detail,
        stage=stage,
        key=rec.key,
        value=rec.value,
        headers=rec.headers,
    )
    headers = binary_headers(
        id=decision_id(rec.ingress),
        source=f"/guardstream/{stage}",
        type=DEADLETTER_TYPE,
        time_ms=rec.ingress.timestamp_ms,
    )
    return Outcome(Topic.DEADLETTER, rec.key, envelope, headers, code, None)


def decision_outcome(
    record: dict[str, Any],
    request_id: str,
    traceparent: str | None,
    fallback_key: bytes | None,
    source: str,
    authid: str | None = None,
) -> Outcome:
    """A decision record as a binary-mode CloudEvent on `admitted` or `rejected`.

    It carries the CloudEvents authcontext of the request: `authtype` `api_key` and `authid`
    `<tenant>/<key id>` when its signature verified, `unauthenticated` otherwise. Only
    guardstream sets these; nothing a client sends is copied into them.
    """
    extensions = {"requestid": request_id}
    if traceparent:
        extensions["traceparent"] = traceparent
    if authid is not None:
        extensions.update(authtype="api_key", authid=authid)
    else:
        extensions["authtype"] = "unauthenticated"
    admitted = record["outcome"] == "ADMITTED"
    topic = Topic.ADMITTED if admitted else Topic.REJECTED
    headers = binary_headers(
        id=record["decision_id"],
        source=source,
        type=DECISION_TYPE,
        time_ms=record["decided_at"],
        subject=request_id,
        extensions=extensions,
    )
    key = record["tenant_id"].encode() if record["tenant_id"] else fallback_key
    code = "ADMITTED" if admitted else record["reasons"][0]["code"]
    if record["sanitized_request"] is not None:
        record = {**record, "sanitized_request": (REQUEST_RECORD, record["sanitized_request"])}
    return Outcome(topic, key, record, headers, code, record["tenant_id"])
