"""Judging one ingress record: decode → check → clean → route, as an outcome to send.

No Kafka or Faust here: the agent hands in the record's bytes and coordinates and sends what
comes back. Every path ends in exactly one outcome, so no input can stall a partition:
`deadletter` for bytes that cannot be read, `rejected` for content that is refused, and
`metering` (re-keyed by tenant) for requests and usage reports that pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from guardstream import records
from guardstream.config.catalog import Catalog
from guardstream.guardrails import (
    DEFAULT_POLICY,
    Deadline,
    OverBudget,
    Policy,
    apply_policy,
    estimate_prompt_tokens,
)
from guardstream.ingest.authenticate import (
    SIGNATURE_ATTR,
    Authenticator,
    Authn,
    AuthRefused,
    Caller,
)
from guardstream.ingest.payload import PayloadProblem, validate_request, validate_usage
from guardstream.reasons import Reason
from guardstream.records import (
    REQUEST_RECORD,
    Outcome,
    RawRecord,
    dead_letter,
    decision_outcome,
)
from guardstream.serde.avro import FramingError
from guardstream.serde.registry_errors import SchemaUnknown
from guardstream.streams.cloudevents import (
    CloudEventAttrs,
    CloudEventError,
    StructuredDecodeError,
    check_binary,
    read_envelope,
    read_structured,
)
from guardstream.streams.topics import Topic

STAGE = "ingest"
SOURCE = "/guardstream/ingest"
PolicyLookup = Callable[[str], Policy]
_P = TypeVar("_P")


class Decoder(Protocol):
    """What the judge needs of `serde.codec.Codec`: its outcomes are encoded at the edge."""

    def decode(self, value: bytes, topic: Topic) -> Any:
        """A framed value decoded into the reader schema of `topic`'s values."""


@dataclass(frozen=True)
class Identity:
    """Who a decision answers: the event's CloudEvents id and source, and its trace."""

    id: str
    source: str
    traceparent: str | None

    @classmethod
    def of(cls, attrs: CloudEventAttrs | dict[str, str]) -> Identity:
        if isinstance(attrs, CloudEventAttrs):
            return cls(attrs.id, attrs.source, attrs.traceparent())
        return cls(attrs["id"], attrs["source"], attrs.get("traceparent"))


class Refused(Exception):
    """Content that is read but refused: becomes a decision on `rejected`."""

    def __init__(self, reasons: list[dict[str, Any]], tenant_id: str | None = None) -> None:
        super().__init__(reasons[0]["detail"])
        self.reasons = reasons
        self.tenant_id = tenant_id

    @classmethod
    def one(
        cls, code: Reason, detail: str, where: str | None = None, tenant_id: str | None = None
    ) -> Refused:
        return cls([records.reason(code, detail, where)], tenant_id)


class Unreadable(Exception):
    """Bytes that cannot be read: the original record goes to `deadletter`."""

    def __init__(self, code: Reason, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Judge:
    """Everything the ingest stage decides with; one per worker."""

    codec: Decoder
    catalog: Catalog
    max_record_bytes: int
    policy_for: PolicyLookup = lambda _tenant: DEFAULT_POLICY
    record_budget_ms: int = 2000
    authenticator: Authenticator = field(default_factory=Authenticator)

    def judge(self, rec: RawRecord) -> Outcome:
        """The outcome for one ingress record (its writer schema must already be cached).

        Raises registry.RegistryUnavailable only: that is nobody's fault in the record, so
        the caller retries rather than rejecting.
        """
        deadline = Deadline.after(self.record_budget_ms)
        is_usage = rec.ingress.topic.endswith(".usage")
        topic = Topic.USAGE if is_usage else Topic.REQUESTS
        try:
            signature, attrs, data = self._read(rec, topic)
        except CloudEventError as exc:
            # Without a usable id and source nobody can be answered; broken headers mean
            # the record's bytes are what an operator needs to see.
            if exc.identified and exc.code is not Reason.HEADER_INVALID:
                why = [records.reason(exc.code, exc.detail, exc.field)]
                return self._reject(rec, Identity.of(exc.attrs), why, None)
            return self._dead(rec, exc.code, exc.detail)
        except Unreadable as exc:
            return self._dead(rec, exc.code, exc.detail)
        who = Identity.of(attrs)
        caller: Caller | None = None
        try:
            if isinstance(data, Refused):
                raise data
            # Before anything reads the payload: a forged or replayed event costs a worker
            # one signature check, never a decode or a guardrail pass.
            value = rec.value or b""
            authn = self.authenticator.check_signature(
                signature, attrs, value, rec.ingress.timestamp_ms
            )
            caller = authn.caller
            if isinstance(data, bytes):
                data = self._decode_framed(data, topic)
            if is_usage:
                return self._usage(rec, who, data, authn)
            return self._request(rec, who, data, deadline, authn)
        except Unreadable as exc:
            return self._dead(rec, exc.code, exc.detail)
        except AuthRefused as exc:
            why = [records.reason(exc.code, exc.detail, None)]
            return self._reject(rec, who, why, exc.tenant_id, None)
        except OverBudget as exc:
            detail = (
                f"cleaning this request took over the per-record budget of "
                f"{exc.budget_ms} ms (at {exc.step}); send a shorter prompt"
            )
            why = [records.reason(Reason.PROCESSING_BUDGET_EXCEEDED, detail, "messages")]
            return self._reject(rec, who, why, _tenant_of(data), caller)
        except Refused as exc:
            return self._reject(rec, who, exc.reasons, exc.tenant_id, caller)

    # --- reading ------------------------------------------------------------------------

    def _read(self, rec: RawRecord, topic: Topic) -> tuple[str | None, CloudEventAttrs, Any]:
        """The signature header, the attributes, and the data not yet decoded (framed Avro
        bytes or a structured event's JSON object), or Refused (as data) when identified
        but refused."""
        accepted = (str(topic.ce_type),)
        env = read_envelope(rec.headers)
        # A Kafka header in both modes: a structured event cannot carry its own signature.
        signature = env.attrs.get(SIGNATURE_ATTR)
        value = rec.value or b""
        oversize = len(value) > self.max_record_bytes
        if env.structured:
            if oversize:  # the attributes are inside the value: nobody to answer
                raise Unreadable(Reason.PAYLOAD_TOO_LARGE, self._size_detail(value))
            try:
                attrs, data = read_structured(value, env.content_type or "", accepted)
            except StructuredDecodeError as exc:
                raise Unreadable(Reason.STRUCTURED_DECODE_FAILED, str(exc)) from None
            if isinstance(data, bytes | dict):
                return signature, attrs, data
            return (
                signature,
                attrs,
                Refused.one(
                    Reason.PAYLOAD_INVALID,
                    "structured event data must be a JSON object or bytes of Confluent-framed Avro",
                    "data",
                ),
            )
        attrs = check_binary(env, accepted)
        if oversize:
            return signature, attrs, Refused.one(Reason.PAYLOAD_TOO_LARGE, self._size_detail(value))
        return signature, attrs, value

    def _size_detail(self, value: bytes) -> str:
        return f"value is {len(value)} bytes; the limit is {self.max_record_bytes} bytes"

    def _decode_framed(self, value: bytes, topic: Topic) -> Any:
        try:
            return self.codec.decode(value, topic)
        except FramingError as exc:
            raise Unreadable(Reason(exc.code), exc.detail) from None
        except SchemaUnknown as exc:
            raise Unreadable(Reason.SCHEMA_UNKNOWN, str(exc)) from None

    # --- deciding -----------------------------------------------------------------------

    def _request(
        self, rec: RawRecord, who: Identity, data: dict[str, Any], deadline: Deadline, authn: Authn
    ) -> Outcome:
        request = _payload(validate_request, data)
        tenant = request.tenant_id
        self.authenticator.check_tenant(authn, tenant)
        spec = self.catalog.get(request.model)
        if spec is None:
            raise Refused.one(
                Reason.MODEL_UNKNOWN,
                f"model '{request.model[:64]}' is not in the model catalog "
                f"(version {self.catalog.version})",
                "model",
                tenant,
            )
        if request.max_tokens > spec.max_output_tokens:
            limit = spec.max_output_tokens
            raise Refused.one(
                Reason.MAX_TOKENS_EXCEEDED,
                f"max_tokens {request.max_tokens} exceeds {request.model}'s limit of {limit}",
                "max_tokens",
                tenant,
            )
        messages = [(m.role, m.content) for m in request.messages]
        cleaned = apply_policy(messages, self.policy_for(tenant), salt=tenant, deadline=deadline)
        if cleaned.blocked is not None:
            raise Refused.one(Reason(cleaned.blocked), cleaned.blocked_detail or "", None, tenant)
        prompt_tokens = estimate_prompt_tokens(cleaned.messages, spec.family)
        if prompt_tokens + request.max_tokens > spec.context_window:
            raise Refused.one(
                Reason.CONTEXT_WINDOW_EXCEEDED,
                f"estimated prompt tokens {prompt_tokens} + max_tokens "
                f"{request.max_tokens} exceed {request.model}'s context window "
                f"of {spec.context_window}",
                "messages",
                tenant,
            )
        sanitized = request.model_dump()
        sanitized["messages"] = [{"role": r, "content": c} for r, c in cleaned.messages]
        record = self._metering(rec, who, "REQUEST", tenant, request.model, authn.caller)
        record.update(
            idempotency_key=request.idempotency_key,
            estimated_input_tokens=prompt_tokens,
            max_tokens=request.max_tokens,
            findings=dict(cleaned.findings),
            injection_score=cleaned.injection_score,
            # Naming the union branch spares fastavro matching the record against it.
            sanitized_request=(REQUEST_RECORD, sanitized),
        )
        return self._forward(rec, who, tenant, record, dict(cleaned.findings))

    def _usage(self, rec: RawRecord, who: Identity, data: dict[str, Any], authn: Authn) -> Outcome:
        usage = _payload(validate_usage, data)
        self.authenticator.check_tenant(authn, usage.tenant_id)
        caller = authn.caller
        record = self._metering(rec, who, "USAGE", usage.tenant_id, usage.model, caller)
        record.update(
            request_id=usage.request_id,
            usage_input_tokens=usage.input_tokens,
            usage_output_tokens=usage.output_tokens,
            usage_cached_input_tokens=usage.cached_input_tokens,
        )
        return self._forward(rec, who, usage.tenant_id, record, {})

    def _metering(
        self,
        rec: RawRecord,
        who: Identity,
        kind: str,
        tenant: str,
        model: str,
        caller: Caller | None,
    ) -> dict[str, Any]:
        return {
            "kind": kind,
            "request_id": who.id,
            "request_source": who.source,
            "tenant_id": tenant,
            "ingress_topic": rec.ingress.topic,
            "ingress_partition": rec.ingress.partition,
            "ingress_offset": rec.ingress.offset,
            "ingress_timestamp": rec.ingress.timestamp_ms,
            "traceparent": who.traceparent,
            "idempotency_key": None,
            "model": model,
            "catalog_version": self.catalog.version,
            "estimated_input_tokens": 0,
            "max_tokens": 0,
            "findings": {},
            "injection_score": 0,
            "sanitized_request": None,
            "usage_input_tokens": None,
            "usage_output_tokens": None,
            "usage_cached_input_tokens": None,
            "authid": caller.authid if caller else None,
        }

    # --- routing ------------------------------------------------------------------------

    def _forward(
        self,
        rec: RawRecord,
        who: Identity,
        tenant: str,
        record: dict[str, Any],
        findings: dict[str, int],
    ) -> Outcome:
        headers: list[tuple[str, bytes]] = [("ce_requestid", who.id.encode())]
        if who.traceparent:
            headers.append(("traceparent", who.traceparent.encode()))
        return Outcome(
            Topic.METERING, tenant.encode(), record, headers, "FORWARDED", tenant, findings
        )

    def _reject(
        self,
        rec: RawRecord,
        who: Identity,
        reasons: list[dict[str, Any]],
        tenant_id: str | None,
        caller: Caller | None = None,
    ) -> Outcome:
        record = records.decision(
            rec.ingress,
            request_id=who.id,
            request_source=who.source,
            tenant_id=tenant_id,
            admitted=False,
            reasons=reasons,
        )
        authid = caller.authid if caller else None
        return decision_outcome(record, who.id, who.traceparent, rec.key, SOURCE, authid)

    def _dead(self, rec: RawRecord, code: Reason, detail: str) -> Outcome:
        return dead_letter(rec, code, detail, STAGE)


def _payload(validate: Callable[[Any], _P], data: dict[str, Any]) -> _P:
    """The validated payload, or Refused with one PAYLOAD_INVALID reason per bad field."""
    try:
        return validate(data)
    except PayloadProblem as exc:
        why = [records.reason(Reason.PAYLOAD_INVALID, f"{f}: {m}", f) for f, m in exc.problems]
        raise Refused(why, _tenant_of(data)) from None


def _tenant_of(data: Any) -> str | None:
    """The tenant id a refused payload names, when it is a plausible one to key by."""
    tenant = data.get("tenant_id") if isinstance(data, dict) else None
    return tenant if isinstance(tenant, str) and len(tenant) <= 64 else None
