"""Reading and writing CloudEvents binary-mode headers."""

from __future__ import annotations

import pytest

from guardstream.reasons import Reason
from guardstream.streams.cloudevents import (
    CloudEventError,
    binary_headers,
    check_binary,
    read_envelope,
)
from guardstream.streams.topics import REQUEST_TYPE

GOOD: list[tuple[str, bytes | None]] = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"req-1"),
    ("ce_source", b"/checkout/api"),
    ("ce_type", REQUEST_TYPE.encode()),
    ("content-type", b"application/avro"),
]


def _with(**changes: bytes | None) -> list[tuple[str, bytes | None]]:
    out = [(k, v) for k, v in GOOD if k.removeprefix("ce_") not in changes]
    out += [(f"ce_{k}", v) for k, v in changes.items() if v is not None]
    return out


def _error(headers: list[tuple[str, bytes | None]]) -> CloudEventError:
    with pytest.raises(CloudEventError) as info:
        check_binary(read_envelope(headers), (REQUEST_TYPE,))
    return info.value


def test_good_headers_parse_and_keep_extensions() -> None:
    attrs = check_binary(
        read_envelope(
            [
                *GOOD,
                ("ce_traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                ("ce_partitionkey", b"acme"),
                ("ce_time", b"2026-11-23T05:00:00.123Z"),
            ]
        ),
        (REQUEST_TYPE,),
    )
    assert attrs.id == "req-1"
    assert attrs.source == "/checkout/api"
    assert attrs.time == "2026-11-23T05:00:00.123Z"
    assert attrs.extensions == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "partitionkey": "acme",
    }
    assert attrs.traceparent() is not None


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type"])
def test_each_missing_required_attribute_is_named(name: str) -> None:
    err = _error([(k, v) for k, v in GOOD if k != f"ce_{name}"])
    assert err.code is Reason.CE_ATTRIBUTE_MISSING
    assert err.field == f"ce_{name}"
    assert name in err.detail


def test_missing_id_is_not_identified_but_missing_type_is() -> None:
    assert not _error([(k, v) for k, v in GOOD if k != "ce_id"]).identified
    assert _error([(k, v) for k, v in GOOD if k != "ce_type"]).identified


def test_specversion_03_is_unsupported() -> None:
    assert _error(_with(specversion=b"0.3")).code is Reason.CE_SPECVERSION_UNSUPPORTED


def test_empty_id_and_bad_source_and_bad_time_are_invalid() -> None:
    assert _error(_with(id=b"")).code is Reason.CE_ATTRIBUTE_INVALID
    assert _error(_with(source=b"has spaces in it")).field == "ce_source"
    err = _error(_with(time=b"yesterday at noon"))
    assert (err.code, err.field) == (Reason.CE_ATTRIBUTE_INVALID, "ce_time")
    assert _error(_with(time=b"2026-13-45T99:00:00Z")).field == "ce_time"


def test_unknown_type_is_unsupported() -> None:
    err = _error(_with(type=b"com.example.other"))
    assert err.code is Reason.CE_TYPE_UNSUPPORTED


def test_invalid_utf8_and_duplicates_are_header_errors() -> None:
    err = _error([*GOOD[:-1], ("ce_subject", b"\xff\xfe")])
    assert err.code is Reason.HEADER_INVALID and err.field == "ce_subject"
    err = _error([*GOOD, ("ce_id", b"req-2")])
    assert err.code is Reason.HEADER_INVALID and "more than once" in err.detail


def test_wrong_content_type() -> None:
    headers = [(k, v) for k, v in GOOD if k != "content-type"] + [("content-type", b"text/plain")]
    assert _error(headers).code is Reason.CONTENT_TYPE_UNSUPPORTED


def test_written_headers_read_back() -> None:
    headers = binary_headers(
        id="d-1",
        source="/guardstream/ingest",
        type=REQUEST_TYPE,
        time_ms=1_790_000_000_123,
        subject="req-1",
        extensions={"traceparent": "00-abc-def-01"},
    )
    attrs = check_binary(read_envelope(list(headers)), (REQUEST_TYPE,))
    assert attrs.time is not None and attrs.time.endswith(".123Z")
    assert attrs.subject == "req-1"
    assert attrs.extensions["traceparent"] == "00-abc-def-01"


def test_structured_json_event_reads_attributes_and_data() -> None:
    import json

    from guardstream.streams.cloudevents import read_structured

    body = json.dumps(
        {
            "specversion": "1.0",
            "id": "j-1",
            "source": "/curl",
            "type": REQUEST_TYPE,
            "myext": 5,
            "data": {"tenant_id": "acme"},
        }
    ).encode()
    attrs, data = read_structured(
        body, "application/cloudevents+json; charset=utf-8", (REQUEST_TYPE,)
    )
    assert attrs.id == "j-1" and attrs.extensions == {"myext": "5"}
    assert data == {"tenant_id": "acme"}


def test_structured_json_problems() -> None:
    from guardstream.streams.cloudevents import StructuredDecodeError, read_structured

    with pytest.raises(StructuredDecodeError):
        read_structured(b"{not json", "application/cloudevents+json", (REQUEST_TYPE,))
    with pytest.raises(CloudEventError) as info:
        read_structured(
            b'{"specversion": "1.0", "source": "/x", "type": "t"}',
            "application/cloudevents+json",
            (REQUEST_TYPE,),
        )
    assert info.value.code is Reason.CE_ATTRIBUTE_MISSING and info.value.field == "id"


def test_structured_avro_round_trip() -> None:
    from guardstream.streams.cloudevents import avro_format_writer, read_structured

    value = avro_format_writer(
        {
            "specversion": "1.0",
            "id": "a-1",
            "source": "/svc",
            "type": REQUEST_TYPE,
            "sampled": True,
        },
        b"\x00\x00\x00\x00\x01rest",
    )
    attrs, data = read_structured(value, "application/cloudevents+avro", (REQUEST_TYPE,))
    assert attrs.id == "a-1" and attrs.extensions == {"sampled": "true"}
    assert data == b"\x00\x00\x00\x00\x01rest"


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85", "\ufffe"])
@pytest.mark.parametrize("name", ["type", "subject", "traceparent", "time"])
def test_control_characters_in_any_attribute_are_invalid(char: str, name: str) -> None:
    err = _error(_with(**{name: f"ab{char}cd".encode()}))
    assert (err.code, err.field) == (Reason.CE_ATTRIBUTE_INVALID, f"ce_{name}")
    assert f"U+{ord(char):04X}" in err.detail
    assert err.identified  # id and source are fine: the client gets a rejection


@pytest.mark.parametrize("name", ["id", "source"])
def test_a_control_character_in_id_or_source_leaves_nobody_to_answer(name: str) -> None:
    err = _error(_with(**{name: b"/req\x00-1"}))
    assert err.code is Reason.CE_ATTRIBUTE_INVALID
    assert not err.identified  # the record goes to deadletter with its original bytes
