"""Every reason code guardstream puts on `rejected` or `deadletter`, with what it means.

The codes are a public, stable contract (clients branch on them); the README's table is
generated from this catalogue (`guardstream reasons`), so the two cannot drift.
"""

from __future__ import annotations

from enum import StrEnum


class Route(StrEnum):
    """Where a record with this problem ends."""

    REJECTED = "rejected"
    DEADLETTER = "deadletter"


class Reason(StrEnum):
    """Stable reason codes."""

    # --- the record cannot be read: original bytes go to deadletter ---------------------
    HEADER_INVALID = "HEADER_INVALID"
    VALUE_MISSING = "VALUE_MISSING"
    AVRO_FRAMING_INVALID = "AVRO_FRAMING_INVALID"
    AVRO_DECODE_FAILED = "AVRO_DECODE_FAILED"
    SCHEMA_UNKNOWN = "SCHEMA_UNKNOWN"
    STRUCTURED_DECODE_FAILED = "STRUCTURED_DECODE_FAILED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # --- CloudEvents attributes ------------------------------------------------------------
    CE_ATTRIBUTE_MISSING = "CE_ATTRIBUTE_MISSING"
    CE_ATTRIBUTE_INVALID = "CE_ATTRIBUTE_INVALID"
    CE_SPECVERSION_UNSUPPORTED = "CE_SPECVERSION_UNSUPPORTED"
    CE_TYPE_UNSUPPORTED = "CE_TYPE_UNSUPPORTED"
    CONTENT_TYPE_UNSUPPORTED = "CONTENT_TYPE_UNSUPPORTED"
    # --- who sent it ----------------------------------------------------------------------
    AUTH_MISSING = "AUTH_MISSING"
    AUTH_INVALID = "AUTH_INVALID"
    AUTH_EXPIRED = "AUTH_EXPIRED"
    # --- the request itself -------------------------------------------------------------------
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    PAYLOAD_INVALID = "PAYLOAD_INVALID"
    MODEL_UNKNOWN = "MODEL_UNKNOWN"
    MAX_TOKENS_EXCEEDED = "MAX_TOKENS_EXCEEDED"
    CONTEXT_WINDOW_EXCEEDED = "CONTEXT_WINDOW_EXCEEDED"
    # --- guardrails -----------------------------------------------------------------------
    PII_BLOCKED = "PII_BLOCKED"
    INJECTION_BLOCKED = "INJECTION_BLOCKED"
    TOXICITY_BLOCKED = "TOXICITY_BLOCKED"
    PROCESSING_BUDGET_EXCEEDED = "PROCESSING_BUDGET_EXCEEDED"
    # --- output guardrails (the dispatch stage's answers) --------------------------------
    # --- metering -------------------------------------------------------------------------
    UNKNOWN_TENANT = "UNKNOWN_TENANT"
    DUPLICATE = "DUPLICATE"
    RATE_LIMITED = "RATE_LIMITED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"


DESCRIPTIONS: dict[Reason, tuple[Route, str]] = {
    Reason.HEADER_INVALID: (
        Route.DEADLETTER,
        "A `ce_*` or `content-type` header is not valid UTF-8 or appears twice.",
    ),
    Reason.VALUE_MISSING: (Route.DEADLETTER, "The record has no value (null or empty)."),
    Reason.AVRO_FRAMING_INVALID: (
        Route.DEADLETTER,
        "The value does not start with the Confluent header (magic byte 0 + 4-byte id).",
    ),
    Reason.AVRO_DECODE_FAILED: (
        Route.DEADLETTER,
        "The Avro body is truncated, corrupt or not written with the schema its id names.",
    ),
    Reason.SCHEMA_UNKNOWN: (
        Route.DEADLETTER,
        "The schema id in the value is not in the registry (replayable once registered).",
    ),
    Reason.STRUCTURED_DECODE_FAILED: (
        Route.DEADLETTER,
        "A structured-mode value does not parse as `application/cloudevents+json` or `+avro`.",
    ),
    Reason.PROCESSING_BUDGET_EXCEEDED: (
        Route.REJECTED,
        "Cleaning the request took longer than the per-record budget "
        "(`GUARDSTREAM_RECORD_BUDGET_MS`); the detail names the step. Refused rather than "
        "left to stall the partition; send a shorter prompt.",
    ),
    Reason.INTERNAL_ERROR: (
        Route.DEADLETTER,
        "guardstream failed on this record (a bug, logged with the record's coordinates); the "
        "record is kept so it can be replayed once fixed, and the partition goes on.",
    ),
    Reason.CE_ATTRIBUTE_MISSING: (
        Route.REJECTED,
        "A required CloudEvents attribute (specversion, id, source, type) is absent. "
        "Without a usable `id` and `source` there is nobody to answer: deadletter.",
    ),
    Reason.CE_ATTRIBUTE_INVALID: (
        Route.REJECTED,
        "An attribute is malformed: empty id, source not a URI-reference, time not RFC 3339, "
        "or a control character or noncharacter in any attribute (in `id` or `source`: "
        "nobody to answer, deadletter).",
    ),
    Reason.CE_SPECVERSION_UNSUPPORTED: (
        Route.REJECTED,
        "`specversion` is not 1.0 (e.g. 0.3).",
    ),
    Reason.CE_TYPE_UNSUPPORTED: (
        Route.REJECTED,
        "`type` is not one the pipeline handles on this topic.",
    ),
    Reason.CONTENT_TYPE_UNSUPPORTED: (
        Route.REJECTED,
        "`content-type` is neither `application/avro` nor a supported structured format.",
    ),
    Reason.AUTH_MISSING: (
        Route.REJECTED,
        "The tenant requires signed events (`auth: required`) and the event has no `ce_gssig` "
        "signature. Not charged.",
    ),
    Reason.AUTH_INVALID: (
        Route.REJECTED,
        "The signature does not verify: malformed header, unknown or retired key, a body or "
        "attribute changed after signing, or the payload's `tenant_id` is not the signed "
        "`ce_tenantid`. Not charged.",
    ),
    Reason.AUTH_EXPIRED: (
        Route.REJECTED,
        "The signature verifies but its `ce_time` is further than the tolerance "
        "(`GUARDSTREAM_AUTH_TOLERANCE_S`, default 300) from when the broker took the record: "
        "a replay or a badly wrong client clock. Not charged.",
    ),
    Reason.PAYLOAD_TOO_LARGE: (
        Route.REJECTED,
        "The value is larger than GUARDSTREAM_MAX_RECORD_BYTES; it was not decoded "
        "(structured mode: deadletter, since the attributes are inside the value).",
    ),
    Reason.PAYLOAD_INVALID: (
        Route.REJECTED,
        "The request breaks a payload rule; the detail names the field.",
    ),
    Reason.MODEL_UNKNOWN: (Route.REJECTED, "`model` is not in the model catalog."),
    Reason.MAX_TOKENS_EXCEEDED: (
        Route.REJECTED,
        "`max_tokens` is above the model's output limit in the catalog.",
    ),
    Reason.CONTEXT_WINDOW_EXCEEDED: (
        Route.REJECTED,
        "Estimated prompt tokens + `max_tokens` exceed the model's context window.",
    ),
    Reason.PII_BLOCKED: (
        Route.REJECTED,
        "The prompt contains PII or a secret the tenant's policy blocks; the detail names the "
        "message and the kind, never the value.",
    ),
    Reason.INJECTION_BLOCKED: (
        Route.REJECTED,
        "The prompt-injection score reached the tenant's threshold; the detail names the "
        "pattern families.",
    ),
    Reason.TOXICITY_BLOCKED: (
        Route.REJECTED,
        "The prompt's toxicity score reached the tenant's threshold (`toxicity: block`, "
        "`toxicity_threshold`); the detail gives the score, never the text.",
    ),
    Reason.UNKNOWN_TENANT: (
        Route.REJECTED,
        "The tenant has no configuration and unknown tenants are refused (tiers file: "
        "`unknown_tenants: reject`).",
    ),
    Reason.DUPLICATE: (
        Route.REJECTED,
        "The same CloudEvents source + id, or idempotency key, was already admitted for the "
        "same tenant within the dedup window; `duplicate_of` names the first decision. Not "
        "charged again.",
    ),
    Reason.RATE_LIMITED: (
        Route.REJECTED,
        "The tenant's requests- or tokens-per-minute bucket is empty; `retry_after_ms` says "
        "when it will hold enough (absent when the request exceeds the burst capacity).",
    ),
    Reason.BUDGET_EXCEEDED: (
        Route.REJECTED,
        "Reserving the estimated cost would exceed the daily or monthly budget; "
        "`budget_remaining_micros` is what is left.",
    ),
}
