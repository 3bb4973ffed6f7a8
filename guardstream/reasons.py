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
    # --- CloudEvents attributes ------------------------------------------------------------
    CE_ATTRIBUTE_MISSING = "CE_ATTRIBUTE_MISSING"
    CE_ATTRIBUTE_INVALID = "CE_ATTRIBUTE_INVALID"
    CE_SPECVERSION_UNSUPPORTED = "CE_SPECVERSION_UNSUPPORTED"
    CE_TYPE_UNSUPPORTED = "CE_TYPE_UNSUPPORTED"
    CONTENT_TYPE_UNSUPPORTED = "CONTENT_TYPE_UNSUPPORTED"
    # --- the request itself -------------------------------------------------------------------
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    PAYLOAD_INVALID = "PAYLOAD_INVALID"


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
    Reason.CE_ATTRIBUTE_MISSING: (
        Route.REJECTED,
        "A required CloudEvents attribute (specversion, id, source, type) is absent. "
        "Without a usable `id` and `source` there is nobody to answer: deadletter.",
    ),
    Reason.CE_ATTRIBUTE_INVALID: (
        Route.REJECTED,
        "An attribute is malformed: empty id, source not a URI-reference, time not RFC 3339.",
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
    Reason.PAYLOAD_TOO_LARGE: (
        Route.REJECTED,
        "The value is larger than GUARDSTREAM_MAX_RECORD_BYTES; it was not decoded.",
    ),
    Reason.PAYLOAD_INVALID: (
        Route.REJECTED,
        "The request breaks a payload rule; the detail names the field.",
    ),
}
