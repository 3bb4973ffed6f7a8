"""Judging one ingress record: decode → check → decide, as a routed outcome.

No Kafka or Faust here: the agent hands in the record's bytes and coordinates and sends what
comes back. Every path ends in exactly one outcome, so no input can stall a partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardstream import decisions
from guardstream.decisions import DEADLETTER_TYPE, DECISION_TYPE, REQUEST_TYPE, Ingress
from guardstream.payload import PayloadProblem, validate_request
from guardstream.reasons import Reason
from guardstream.streams.avro import FramingError
from guardstream.streams.cloudevents import (
    CloudEventAttrs,
    CloudEventError,
    binary_headers,
    read_headers,
)
from guardstream.streams.codec import Codec
from guardstream.streams.registry import SchemaUnknown

STAGE = "ingest"
SOURCE = "/guardstream/ingest"


@dataclass(frozen=True)
class RawRecord:
    """An ingress record as the broker delivered it."""

    ingress: Ingress
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Outcome:
    """What to send where: a topic short name, key, encoded value and headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    code: str  # the first reason code, or "ADMITTED"
    tenant_id: str | None


@dataclass(frozen=True)
class Identity:
    """Who a decision answers: the request's CloudEvents id and source, and its trace."""

    id: str
    source: str
    traceparent: str | None

    @classmethod
    def of(cls, attrs: CloudEventAttrs | dict[str, str]) -> Identity:
        if isinstance(attrs, CloudEventAttrs):
            return cls(attrs.id, attrs.source, attrs.traceparent())
        return cls(attrs["id"], attrs["source"], attrs.get("traceparent"))


def _decision_out(codec: Codec, rec: RawRecord, who: Identity, record: dict[str, Any]) -> Outcome:
    extensions = {"requestid": who.id}
    if who.traceparent:
        extensions["traceparent"] = who.traceparent
    admitted = record["outcome"] == "ADMITTED"
    topic = "admitted" if admitted else "rejected"
    headers = binary_headers(
        id=record["decision_id"],
        source=SOURCE,
        type=DECISION_TYPE,
        time_ms=rec.ingress.timestamp_ms,
        subject=who.id,
        extensions=extensions,
    )
    key = record["tenant_id"].encode() if record["tenant_id"] else rec.key
    code = "ADMITTED" if admitted else record["reasons"][0]["code"]
    return Outcome(topic, key, codec.encode(topic, record), headers, code, record["tenant_id"])


def _dead(codec: Codec, rec: RawRecord, code: Reason, detail: str) -> Outcome:
    envelope = decisions.deadletter(
        rec.ingress,
        code=code,
        detail=detail,
        stage=STAGE,
        key=rec.key,
        value=rec.value,
        headers=rec.headers,
    )
    headers = binary_headers(
        id=decisions.decision_id(rec.ingress),
        source=SOURCE,
        type=DEADLETTER_TYPE,
        time_ms=rec.ingress.timestamp_ms,
    )
    return Outcome("deadletter", rec.key, codec.encode("deadletter", envelope), headers, code, None)


def _reject(
    codec: Codec,
    rec: RawRecord,
    who: Identity,
    reasons: list[dict[str, Any]],
    tenant_id: str | None = None,
) -> Outcome:
    record = decisions.decision(
        rec.ingress,
        request_id=who.id,
        request_source=who.source,
        tenant_id=tenant_id,
        admitted=False,
        reasons=reasons,
    )
    return _decision_out(codec, rec, who, record)


def judge(codec: Codec, rec: RawRecord, max_bytes: int) -> Outcome:
    """The outcome for one ingress record (the writer schema must already be cached).

    Raises registry.RegistryUnavailable only: that is nobody's fault in the record, so the
    caller retries rather than rejecting.
    """
    try:
        attrs = read_headers(rec.headers, (REQUEST_TYPE,))
    except CloudEventError as exc:
        # Without a usable id and source nobody can be answered; broken headers mean the
        # record's bytes are what an operator needs to see.
        if exc.identified and exc.code is not Reason.HEADER_INVALID:
            why = [decisions.reason(exc.code, exc.detail, exc.field)]
            return _reject(codec, rec, Identity.of(exc.attrs), why)
        return _dead(codec, rec, exc.code, exc.detail)
    who = Identity.of(attrs)

    if rec.value is not None and len(rec.value) > max_bytes:
        detail = f"value is {len(rec.value)} bytes; the limit is {max_bytes} bytes"
        return _reject(codec, rec, who, [decisions.reason(Reason.PAYLOAD_TOO_LARGE, detail)])

    try:
        data = codec.decode(rec.value or b"", "request")
    except FramingError as exc:
        return _dead(codec, rec, Reason(exc.code), exc.detail)
    except SchemaUnknown as exc:
        return _dead(codec, rec, Reason.SCHEMA_UNKNOWN, str(exc))

    try:
        request = validate_request(data)
    except PayloadProblem as exc:
        tenant = data.get("tenant_id") if isinstance(data, dict) else None
        reasons = [
            decisions.reason(Reason.PAYLOAD_INVALID, f"{f}: {m}", f) for f, m in exc.problems
        ]
        valid_tenant = tenant if isinstance(tenant, str) and len(tenant) <= 64 else None
        return _reject(codec, rec, who, reasons, valid_tenant)

    record = decisions.decision(
        rec.ingress,
        request_id=attrs.id,
        request_source=attrs.source,
        tenant_id=request.tenant_id,
        admitted=True,
        sanitized_request=request.model_dump(),
    )
    return _decision_out(codec, rec, who, record)
