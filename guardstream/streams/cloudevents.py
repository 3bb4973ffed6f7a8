"""CloudEvents Kafka protocol binding, binary mode: reading and writing the `ce_*` headers.

Reading is strict and explains itself: each problem becomes a `CloudEventError` with a reason
code and a detail that names the header. Writing produces what the official SDK's Kafka
binding produces, for the pipeline's own outputs.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from guardstream.reasons import Reason

CE_PREFIX = "ce_"
CONTENT_TYPE = "content-type"
AVRO_CONTENT_TYPE = "application/avro"
JSON_FORMAT = "application/cloudevents+json"
AVRO_FORMAT = "application/cloudevents+avro"
REQUIRED = ("specversion", "id", "source", "type")
# RFC 3339 date-time (the `T` may be lower case and seconds may carry a fraction).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
# A URI-reference (RFC 3986): no whitespace or control characters, and a scheme, when there
# is one, that is well-formed.
_URI_REF = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?[^\s\x00-\x1f\x7f]+$")
_ATTR_NAME = re.compile(r"^[a-z0-9]{1,20}$")
# The context attributes (all valid names, so no name check is needed for them); any other
# attribute is an extension.
_KNOWN = frozenset({"specversion", "id", "source", "type", "time", "subject", "datacontenttype"})
# The spec's String type excludes control characters (U+0000-U+001F, U+007F-U+009F) and
# noncharacters; a NUL in an id would otherwise travel into every decision and log line.
_NOT_ALLOWED = re.compile("[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")


class CloudEventError(ValueError):
    """A CloudEvents problem; `identified` says whether id and source were usable."""

    def __init__(
        self, code: Reason, detail: str, field_name: str | None, attrs: dict[str, str]
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field_name
        self.attrs = attrs

    @property
    def identified(self) -> bool:
        """Whether the event carries a usable id and source to address a decision to."""
        ident = self.attrs.get("id", "")
        return _allowed(ident) and _is_uri_ref(self.attrs.get("source", ""))


@dataclass(frozen=True)
class CloudEventAttrs:
    """The context attributes of a binary-mode event, plus its content type."""

    specversion: str
    id: str
    source: str
    type: str
    time: str | None
    subject: str | None
    content_type: str | None
    extensions: dict[str, str] = field(default_factory=dict)

    def traceparent(self) -> str | None:
        """The W3C trace context carried by the distributed-tracing extension, if any."""
        return self.extensions.get("traceparent")


# Printable ASCII holds none of the characters _NOT_ALLOWED finds, and testing for it costs a
# third of the search: attribute values are nearly always printable ASCII.
def _clean(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _allowed(value: str) -> bool:
    """A non-empty CloudEvents String: no control characters or noncharacters."""
    return bool(value) and (_clean(value) or _NOT_ALLOWED.search(value) is None)


def _is_uri_ref(value: str) -> bool:
    return _allowed(value) and _URI_REF.match(value) is not None


def _rfc3339(value: str) -> bool:
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Envelope:
    """What the headers say before any attribute is checked: mode, content type, attrs."""

    structured: bool
    content_type: str | None
    attrs: dict[str, str]


def read_envelope(headers: Sequence[tuple[str, bytes | None]] | None) -> Envelope:
    """Collect `ce_*` headers and `content-type`, refusing duplicates and non-UTF-8.

    The mode follows the Kafka binding: a `content-type` starting with
    `application/cloudevents` is structured, anything else binary.
    """
    attrs: dict[str, str] = {}
    content_type: str | None = None
    problems: list[tuple[Reason, str, str]] = []
    seen: set[str] = set()
    for raw_key, raw_value in headers or ():
        key = raw_key.lower()
        if not (key.startswith(CE_PREFIX) or key == CONTENT_TYPE):
            continue  # other headers (e.g. a plain `traceparent`) are not CloudEvents'
        if key in seen:
            problems.append((Reason.HEADER_INVALID, f"header {key} appears more than once", key))
            continue
        seen.add(key)
        try:
            value = (raw_value or b"").decode("utf-8")
        except UnicodeDecodeError:
            problems.append((Reason.HEADER_INVALID, f"header {key} is not valid UTF-8", key))
            continue
        if key == CONTENT_TYPE:
            content_type = value
        else:
            attrs[key[len(CE_PREFIX) :]] = value
    if problems:
        code, detail, where = problems[0]
        raise CloudEventError(code, detail, where, attrs)
    structured = (content_type or "").strip().lower().startswith("application/cloudevents")
    return Envelope(structured, content_type, attrs)


def check_attributes(
    attrs: dict[str, str],
    accepted_types: Iterable[str],
    *,
    prefix: str = "ce_",
    content_type: str | None = None,
) -> CloudEventAttrs:
    """Check required and well-formed attributes; `prefix` names fields in details
    (`ce_` for binary-mode headers, `` for attributes inside a structured event)."""

    def fail(code: Reason, detail: str, name: str) -> CloudEventError:
        return CloudEventError(code, detail, f"{prefix}{name}", attrs)

    for name in attrs:
        if name not in _KNOWN and not _ATTR_NAME.match(name):
            raise fail(Reason.CE_ATTRIBUTE_INVALID, f"bad attribute name '{name[:40]}'", name)
    for name in REQUIRED:
        if name not in attrs:
            raise fail(
                Reason.CE_ATTRIBUTE_MISSING,
                f"required CloudEvents attribute '{name}' ({prefix}{name}) is missing",
                name,
            )
    for name, value in attrs.items():
        if not _clean(value) and (bad := _NOT_ALLOWED.search(value)) is not None:
            raise fail(
                Reason.CE_ATTRIBUTE_INVALID,
                f"{prefix}{name} holds U+{ord(bad.group()):04X} at index {bad.start()}: "
                "CloudEvents strings may not contain control characters or noncharacters",
                name,
            )
    if attrs["specversion"] != "1.0":
        raise fail(
            Reason.CE_SPECVERSION_UNSUPPORTED,
            f"{prefix}specversion is '{attrs['specversion'][:20]}', only '1.0' is supported",
            "specversion",
        )
    if not attrs["id"]:
        raise fail(Reason.CE_ATTRIBUTE_INVALID, f"{prefix}id is empty", "id")
    if not _is_uri_ref(attrs["source"]):
        raise fail(
            Reason.CE_ATTRIBUTE_INVALID,
            f"{prefix}source is not a URI-reference (empty, or has spaces/control characters)",
            "source",
        )
    accepted = tuple(accepted_types)
    if attrs["type"] not in accepted:
        raise fail(
            Reason.CE_TYPE_UNSUPPORTED,
            f"{prefix}type '{attrs['type'][:80]}' is not handled here; "
            f"expected {', '.join(accepted)}",
            "type",
        )
    time = attrs.get("time")
    if time is not None and not _rfc3339(time):
        raise fail(Reason.CE_ATTRIBUTE_INVALID, f"{prefix}time is not RFC 3339", "time")
    return CloudEventAttrs(
        specversion=attrs["specversion"],
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        time=time,
        subject=attrs.get("subject"),
        content_type=content_type or attrs.get("datacontenttype"),
        extensions={k: v for k, v in attrs.items() if k not in _KNOWN},
    )


def check_binary(env: Envelope, accepted_types: Iterable[str]) -> CloudEventAttrs:
    """Check the attributes of a binary-mode record, whose value must be Avro.

    Raises CloudEventError for a missing, duplicated, non-UTF-8 or malformed attribute, or
    a content type other than Avro.
    """
    attrs = check_attributes(env.attrs, accepted_types, content_type=env.content_type)
    media = (env.content_type or AVRO_CONTENT_TYPE).split(";")[0].strip().lower()
    if media not in (AVRO_CONTENT_TYPE, "avro/binary"):
        raise CloudEventError(
            Reason.CONTENT_TYPE_UNSUPPORTED,
            f"content-type '{media[:80]}' is not {AVRO_CONTENT_TYPE} (binary mode) nor "
            "application/cloudevents+json / +avro (structured mode)",
            CONTENT_TYPE,
            env.attrs,
        )
    return attrs


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def read_structured(
    value: bytes, content_type: str, accepted_types: Iterable[str]
) -> tuple[CloudEventAttrs, Any]:
    """Parse a structured-mode event: its attributes and its `data`.

    `application/cloudevents+json`: data is a JSON value (or `data_base64`).
    `application/cloudevents+avro`: the CloudEvents Avro event format; data as read.
    Raises CloudEventError (attributes) or StructuredDecodeError (the bytes).
    """
    media = content_type.split(";")[0].strip().lower()
    raw: dict[str, Any]
    if media == JSON_FORMAT:
        try:
            parsed = json.loads(value)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StructuredDecodeError(f"value is not JSON: {exc}") from None
        except RecursionError:  # hostile nesting: refuse rather than crash the agent
            raise StructuredDecodeError("value nests JSON too deeply") from None
        if not isinstance(parsed, dict):
            raise StructuredDecodeError("a structured JSON event must be a JSON object")
        raw = parsed
        data = raw.pop("data", None)
        if "data_base64" in raw:
            try:
                data = base64.b64decode(str(raw.pop("data_base64")), validate=True)
            except ValueError:
                raise StructuredDecodeError("data_base64 is not base64") from None
    elif media == AVRO_FORMAT:
        try:
            envelope = avro_format_reader(value)
        except ValueError as exc:
            raise StructuredDecodeError(str(exc)) from None
        raw = dict(envelope.get("attribute") or {})
        data = envelope.get("data")
    else:
        raise CloudEventError(
            Reason.CONTENT_TYPE_UNSUPPORTED,
            f"structured format '{media[:80]}' is not supported; use {JSON_FORMAT} or "
            f"{AVRO_FORMAT}",
            CONTENT_TYPE,
            {},
        )
    attrs = {k: _stringify(v) for k, v in raw.items() if v is not None}
    return check_attributes(attrs, accepted_types, prefix=""), data


class StructuredDecodeError(ValueError):
    """The value of a structured-mode record does not parse in its event format."""


@lru_cache(maxsize=1)
def _avro_event_schema() -> Any:
    path = Path(__file__).parent / "cloudevents-avro-format.avsc"
    return fastavro.parse_schema(json.loads(path.read_text()))


def avro_format_reader(value: bytes) -> dict[str, Any]:
    """Read one event in the CloudEvents Avro event format (plain Avro, no framing)."""
    buf = io.BytesIO(value)
    try:
        record = fastavro.schemaless_reader(buf, _avro_event_schema(), None)
    except Exception as exc:
        raise ValueError(f"value is not a CloudEvents Avro event: {exc}") from None
    if buf.tell() != len(value) or not isinstance(record, dict):
        raise ValueError("value has trailing bytes after the CloudEvents Avro event")
    return record


def avro_format_writer(attributes: dict[str, Any], data: Any) -> bytes:
    """Write one event in the CloudEvents Avro event format (for clients and tests)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _avro_event_schema(), {"attribute": attributes, "data": data})
    return buf.getvalue()


def format_time(epoch_ms: int) -> str:
    """An RFC 3339 UTC timestamp with millisecond precision."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def binary_headers(
    *,
    id: str,
    source: str,
    type: str,
    time_ms: int,
    subject: str | None = None,
    dataschema: str | None = None,
    extensions: dict[str, str] | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of a binary-mode CloudEvent with an Avro value."""
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", type.encode()),
        ("ce_time", format_time(time_ms).encode()),
        (CONTENT_TYPE, AVRO_CONTENT_TYPE.encode()),
    ]
    if subject is not None:
        headers.append(("ce_subject", subject.encode()))
    if dataschema is not None:
        headers.append(("ce_dataschema", dataschema.encode()))
    for k, v in (extensions or {}).items():
        headers.append((f"{CE_PREFIX}{k}", v.encode()))
    return headers
