"""Confluent-framed Avro: magic byte 0, a 4-byte big-endian schema id, the Avro body."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

MAGIC = 0
HEADER = struct.Struct(">bI")


class FramingError(ValueError):
    """The bytes are not a Confluent-framed Avro value; `code` is the reason code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def split_frame(value: bytes | None) -> tuple[int, memoryview]:
    """The schema id and the Avro body of a framed value, or a FramingError."""
    if value is None or len(value) == 0:
        raise FramingError("VALUE_MISSING", "the record has no value (null or empty)")
    if len(value) < HEADER.size:
        raise FramingError(
            "AVRO_FRAMING_INVALID",
            f"value is {len(value)} bytes, shorter than the 5-byte Confluent header",
        )
    magic, schema_id = HEADER.unpack_from(value)
    if magic != MAGIC:
        raise FramingError(
            "AVRO_FRAMING_INVALID",
            f"value starts with byte 0x{value[0]:02x}, not the Confluent magic byte 0x00",
        )
    return schema_id, memoryview(value)[HEADER.size :]


def decode_body(body: memoryview | bytes, writer: Any, reader: Any) -> Any:
    """Read an Avro body written with `writer`, resolved into the `reader` schema.

    Raises FramingError(AVRO_DECODE_FAILED) for truncated or corrupt bodies and bodies with
    trailing bytes (which means the writer schema is not the one the bytes were written with).
    """
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, writer, reader)
    except SchemaResolutionError:
        # fastavro's message is a repr of both parsed schemas, whose internal dicts print in
        # a per-process order: the dead letter must read the same from every worker.
        raise FramingError(
            "AVRO_DECODE_FAILED",
            f"the value was written with {_name(writer)}, which cannot be read as "
            f"{_name(reader)} (a different record, or an incompatible schema change)",
        ) from None
    except Exception as exc:  # fastavro raises many types for corrupt input
        raise FramingError(
            "AVRO_DECODE_FAILED",
            f"Avro body does not decode with its writer schema: {str(exc)[:200]}",
        ) from exc
    if buf.tell() != len(body):
        raise FramingError(
            "AVRO_DECODE_FAILED",
            f"Avro body has {len(body) - buf.tell()} trailing bytes after the record",
        )
    return record


def _name(schema: Any) -> str:
    """A schema's full name, or its type for an unnamed one."""
    if isinstance(schema, dict):
        return str(schema.get("name") or schema.get("type"))
    return "a union" if isinstance(schema, list) else str(schema)


def encode(schema_id: int, schema: Any, record: Any) -> bytes:
    """Frame and encode a record with a registered schema id."""
    buf = io.BytesIO()
    buf.write(HEADER.pack(MAGIC, schema_id))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()
