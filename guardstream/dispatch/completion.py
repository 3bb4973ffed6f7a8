"""What the dispatch stage writes for one admitted request: its completion and its usage.

Both are derived from the admitted record's coordinates and what the call returned, so the
same inputs always give the same bytes: a record processed again after a crash re-sends
identical copies (the dispatch table keeps them, `guardstream.dispatch.journal`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardstream.dispatch.codes import CompletionCode
from guardstream.dispatch.usage import Usage
from guardstream.records import Ingress, Outcome, decision_id
from guardstream.streams.cloudevents import binary_headers
from guardstream.streams.topics import COMPLETION_TYPE, Topic

SOURCE = "/guardstream/dispatch"
# Who settled the usage, in the metering record's `authid`: guardstream itself.
DISPATCH_AUTHID = "guardstream/dispatch"


@dataclass(frozen=True)
class Admitted:
    """An admitted request as the dispatch stage needs it."""

    ingress: Ingress  # where the admitted decision sits: the completion's identity
    decision_id: str  # the same in every copy of the decision (the dispatch table's key)
    request_id: str
    request_source: str
    tenant_id: str
    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    traceparent: str | None

    @property
    def turns(self) -> list[tuple[str, str]]:
        """The messages as (role, content), as the token estimator takes them."""
        return [(m["role"], m["content"]) for m in self.messages]

    @classmethod
    def from_decision(
        cls, decision: dict[str, Any], ingress: Ingress, traceparent: str | None
    ) -> Admitted:
        """Read an admitted decision (raises ValueError if it carries no request)."""
        request = decision.get("sanitized_request")
        if decision.get("outcome") != "ADMITTED" or not request or not decision["tenant_id"]:
            raise ValueError("not an admitted decision with its sanitized request")
        return cls(
            ingress=ingress,
            decision_id=decision["decision_id"],
            request_id=decision["request_id"],
            request_source=decision["request_source"],
            tenant_id=decision["tenant_id"],
            model=request["model"],
            messages=[{"role": m["role"], "content": m["content"]} for m in request["messages"]],
            max_tokens=int(request["max_tokens"]),
            traceparent=traceparent,
        )


@dataclass(frozen=True)
class Answer:
    """How the request's dispatch ended, in the terms of the completion record."""

    outcome: str  # COMPLETED | BLOCKED | FAILED
    model: str
    usage: Usage
    code: CompletionCode | None = None
    detail: str = ""
    text: str = ""
    finish_reason: str | None = None
    findings: dict[str, int] | None = None
    toxicity: float | None = None
    deployment: str | None = None
    attempts: int = 0
    latency_ms: int = 0


def completion_outcome(adm: Admitted, answer: Answer) -> Outcome:
    """The completion record, as a binary-mode CloudEvent on `completions`."""
    completion_id = decision_id(adm.ingress)
    record = {
        "completion_id": completion_id,
        "request_id": adm.request_id,
        "tenant_id": adm.tenant_id,
        "model": answer.model,
        "outcome": answer.outcome,
        "code": None if answer.code is None else str(answer.code),
        "detail": answer.detail,
        "text": answer.text if answer.outcome == "COMPLETED" else "",
        "finish_reason": answer.finish_reason,
        "findings": dict(answer.findings or {}),
        "toxicity": answer.toxicity,
        "deployment": answer.deployment,
        "attempts": answer.attempts,
        "prompt_tokens": answer.usage.prompt_tokens,
        "completion_tokens": answer.usage.completion_tokens,
        "cached_tokens": answer.usage.cached_tokens,
        "usage_estimated": answer.usage.estimated,
        "latency_ms": answer.latency_ms,
        "admitted_partition": adm.ingress.partition,
        "admitted_offset": adm.ingress.offset,
    }
    code = answer.outcome if answer.code is None else str(answer.code)
    headers = completion_headers(adm)
    return Outcome(Topic.COMPLETIONS, adm.tenant_id.encode(), record, headers, code, adm.tenant_id)


def completion_headers(adm: Admitted) -> list[tuple[str, bytes]]:
    """The completion's CloudEvents headers: from the admitted record alone, so a re-sent
    completion carries the same ones."""
    extensions = {"requestid": adm.request_id}
    if adm.traceparent:
        extensions["traceparent"] = adm.traceparent
    return binary_headers(
        id=decision_id(adm.ingress),
        source=SOURCE,
        type=COMPLETION_TYPE,
        time_ms=adm.ingress.timestamp_ms,
        subject=adm.request_id,
        extensions=extensions,
    )


def usage_headers(adm: Admitted) -> list[tuple[str, bytes]]:
    """The usage record's headers, as the ingest stage sets them on `metering`."""
    headers: list[tuple[str, bytes]] = [("ce_requestid", adm.request_id.encode())]
    if adm.traceparent:
        headers.append(("traceparent", adm.traceparent.encode()))
    return headers


def usage_outcome(adm: Admitted, usage: Usage, model: str, catalog_version: int) -> Outcome:
    """The usage report that settles the request's reservation, straight onto `metering`.

    It is what the ingest stage makes of a client's usage event, with the admitted record
    as its ingress: the meter tells a re-sent copy by those coordinates. It skips `usage`
    (and its signature check): guardstream itself made the call, so it is the one signer
    the meter can trust without one.
    """
    record = {
        "kind": "USAGE",
        "request_id": adm.request_id,
        "request_source": SOURCE,
        "tenant_id": adm.tenant_id,
        "ingress_topic": adm.ingress.topic,
        "ingress_partition": adm.ingress.partition,
        "ingress_offset": adm.ingress.offset,
        "ingress_timestamp": adm.ingress.timestamp_ms,
        "traceparent": adm.traceparent,
        "idempotency_key": None,
        "model": model,
        "catalog_version": catalog_version,
        "estimated_input_tokens": 0,
        "max_tokens": 0,
        "findings": {},
        "injection_score": 0,
        "sanitized_request": None,
        "usage_input_tokens": usage.prompt_tokens,
        "usage_output_tokens": usage.completion_tokens,
        "usage_cached_input_tokens": usage.cached_tokens,
        "authid": DISPATCH_AUTHID,
    }
    key = adm.tenant_id.encode()
    return Outcome(Topic.METERING, key, record, usage_headers(adm), "USAGE", adm.tenant_id)
