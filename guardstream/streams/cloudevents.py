"""CloudEvents Kafka protocol binding, binary mode: reading and writing the `ce_*` headers.

Reading is strict and explains itself: each problem becomes a `CloudEventError` with a reason
code and a detail that names the header. Writing produces what the official SDK's Kafka
binding produces, for the pipeline's own outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from guardstream.reasons import Reason

CE_PREFIX = "ce_"
CONTENT_TYPE = "content-type"
AVRO_CONTENT_TYPE = "application/avro"
REQUIRED = ("specversion", "id", "source", "type")
# RFC 3339 date-time (the `T` may be lower case and seconds may carry a fraction).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
# A URI-reference (RFC 3986): no whitespace or control characters, and a scheme, when there
# is one, that is well-formed.
_URI_REF = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?[^\s\x00-\x1f\x7f]+$")
_ATTR_NAME = re.compile(r"^[a-z0-9]{1,20}$")


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
        return bool(self.attrs.get("id")) and _is_uri_ref(self.attrs.get("source", ""))


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


def _is_uri_ref(value: str) -> bool:
    return bool(value) and _URI_REF.match(value) is not None


def _rfc3339(value: str) -> bool:
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def read_headers(
    headers: Sequence[tuple[str, bytes | None]] | None, accepted_types: Iterable[str]
) -> CloudEventAttrs:
    """Parse and check the CloudEvents attributes of a binary-mode record.

    Raises CloudEventError for a missing, duplicated, non-UTF-8 or malformed attribute.
    """
    attrs: dict[str, str] = {}
    content_type: str | None = None
    problems: list[tuple[Reason, str, str | None]] = []
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
            name = key[len(CE_PREFIX) :]
            if not _ATTR_NAME.match(name):
                problems.append(
                    (Reason.CE_ATTRIBUTE_INVALID, f"header {key}: bad attribute name", key)
                )
                continue
            attrs[name] = value
    # Identity first: whether the problem can be answered on `rejected` depends on it.
    if problems:
        code, detail, where = problems[0]
        raise CloudEventError(code, detail, where, attrs)
    for name in REQUIRED:
        if name not in attrs:
            raise CloudEventError(
                Reason.CE_ATTRIBUTE_MISSING,
                f"required CloudEvents attribute '{name}' (header ce_{name}) is missing",
                f"ce_{name}",
                attrs,
            )
    if attrs["specversion"] != "1.0":
        raise CloudEventError(
            Reason.CE_SPECVERSION_UNSUPPORTED,
            f"ce_specversion is '{attrs['specversion'][:20]}', only '1.0' is supported",
            "ce_specversion",
            attrs,
        )
    if not attrs["id"]:
        raise CloudEventError(Reason.CE_ATTRIBUTE_INVALID, "ce_id is empty", "ce_id", attrs)
    if not _is_uri_ref(attrs["source"]):
        raise CloudEventError(
            Reason.CE_ATTRIBUTE_INVALID,
            "ce_source is not a URI-reference (empty, or contains spaces/control characters)",
            "ce_source",
            attrs,
        )
    accepted = tuple(accepted_types)
    if attrs["type"] not in accepted:
        raise CloudEventError(
            Reason.CE_TYPE_UNSUPPORTED,
            f"ce_type '{attrs['type'][:80]}' is not handled here; expected {', '.join(accepted)}",
            "ce_type",
            attrs,
        )
    time = attrs.get("time")
    if time is not None and not _rfc3339(time):
        raise CloudEventError(
            Reason.CE_ATTRIBUTE_INVALID, "ce_time is not an RFC 3339 timestamp", "ce_time", attrs
        )
    if content_type is not None and content_type.split(";")[0].strip().lower() not in (
        AVRO_CONTENT_TYPE,
        "avro/binary",
    ):
        raise CloudEventError(
            Reason.CONTENT_TYPE_UNSUPPORTED,
            f"content-type '{content_type[:80]}' is not {AVRO_CONTENT_TYPE}",
            CONTENT_TYPE,
            attrs,
        )
    known = {"specversion", "id", "source", "type", "time", "subject", "datacontenttype"}
    return CloudEventAttrs(
        specversion=attrs["specversion"],
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        time=time,
        subject=attrs.get("subject"),
        content_type=content_type,
        extensions={k: v for k, v in attrs.items() if k not in known},
    )


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
