"""Confluent framing and Avro decoding with schema resolution."""

from __future__ import annotations

import io
import struct

import fastavro
import pytest

from guardstream.records import request_data
from guardstream.serde import avro, schemas
from tests import SCHEMA_DIR


def _request() -> dict[str, object]:
    return request_data("acme", [{"role": "user", "content": "hi"}], max_tokens=16)


def test_round_trip_keeps_schema_id_and_record() -> None:
    schema = schemas.reader_schema("request", SCHEMA_DIR)
    framed = avro.encode(42, schema, _request())
    schema_id, body = avro.split_frame(framed)
    assert schema_id == 42
    assert framed[0] == 0
    assert avro.decode_body(body, schema, schema) == _request()


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, "VALUE_MISSING"),
        (b"", "VALUE_MISSING"),
        (b"\x00\x00\x01", "AVRO_FRAMING_INVALID"),
        (b"\x01\x00\x00\x00\x01abc", "AVRO_FRAMING_INVALID"),
        (b"not avro at all", "AVRO_FRAMING_INVALID"),
    ],
)
def test_bad_frames_have_reason_codes(value: bytes | None, code: str) -> None:
    with pytest.raises(avro.FramingError) as info:
        avro.split_frame(value)
    assert info.value.code == code


def test_truncated_body_fails_to_decode() -> None:
    schema = schemas.reader_schema("request", SCHEMA_DIR)
    framed = avro.encode(1, schema, _request())
    _, body = avro.split_frame(framed[:-4])
    with pytest.raises(avro.FramingError) as info:
        avro.decode_body(body, schema, schema)
    assert info.value.code == "AVRO_DECODE_FAILED"


def test_trailing_bytes_are_detected() -> None:
    schema = schemas.reader_schema("request", SCHEMA_DIR)
    _, body = avro.split_frame(avro.encode(1, schema, _request()) + b"\x00\x00")
    with pytest.raises(avro.FramingError, match="trailing"):
        avro.decode_body(body, schema, schema)


def test_old_writer_schema_resolves_into_current_reader() -> None:
    # A producer on an older version without the optional fields still decodes.
    old = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Request",
            "namespace": "io.guardstream.v1",
            "fields": [
                {"name": "tenant_id", "type": "string"},
                {"name": "model", "type": "string"},
                {
                    "name": "messages",
                    "type": {
                        "type": "array",
                        "items": {
                            "type": "record",
                            "name": "Message",
                            "fields": [
                                {"name": "role", "type": "string"},
                                {"name": "content", "type": "string"},
                            ],
                        },
                    },
                },
                {"name": "max_tokens", "type": "int"},
            ],
        }
    )
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf,
        old,
        {
            "tenant_id": "t1",
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5,
        },
    )
    record = avro.decode_body(buf.getvalue(), old, schemas.reader_schema("request", SCHEMA_DIR))
    assert record["metadata"] == {}
    assert record["idempotency_key"] is None
    assert record["max_tokens"] == 5


def test_header_layout_is_big_endian() -> None:
    framed = avro.encode(
        0x01020304,
        schemas.reader_schema("usage", SCHEMA_DIR),
        {
            "request_id": "r",
            "tenant_id": "t",
            "model": "m",
            "input_tokens": 1,
            "output_tokens": 2,
        },
    )
    assert framed[:5] == b"\x00" + struct.pack(">I", 0x01020304)
