"""Naming the field that makes a schema change incompatible.

The registry is the judge of compatibility (its rule, its verdict); Apicurio's verdict names
no field, so when it says "incompatible", this says which field and why. Whether a reader can
read a writer's data is decided by Apache Avro's own `ReaderWriterCompatibilityChecker` (type
promotions, unions, enums, fixed sizes, names, aliases); this module only walks down to the
smallest incompatible part and words it for people. The checker's own locations cannot do
that: they restart at the root inside unions and pair messages with locations loosely.
"""

from __future__ import annotations

import json
from typing import Any

from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)
from avro.schema import (
    ArraySchema,
    EnumSchema,
    FixedSchema,
    MapSchema,
    NamedSchema,
    RecordSchema,
    Schema,
    UnionSchema,
    make_avsc_object,
)


def _parse(schema: Any) -> Schema:
    """An Avro schema object from its JSON form (a dict, list or type name)."""
    if isinstance(schema, Schema):
        return schema
    return make_avsc_object(json.loads(json.dumps(schema)))


def _incompatible(result: SchemaCompatibilityResult) -> bool:
    return result.compatibility is SchemaCompatibilityType.incompatible


def _short(t: Schema) -> str:
    if isinstance(t, UnionSchema):
        return "[" + ", ".join(_short(x) for x in t.schemas) + "]"
    if isinstance(t, NamedSchema):
        return str(t.name)
    return str(t.type)


class _Explainer:
    """Walks a reader/writer pair the checker finds incompatible down to named problems."""

    def __init__(self) -> None:
        self.checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]

    def verdict(self, reader: Schema, writer: Schema) -> SchemaCompatibilityResult:
        return self.checker.get_compatibility(reader, writer)

    def problems(self, reader: Schema, writer: Schema, path: str) -> list[str]:
        result = self.verdict(reader, writer)
        if not _incompatible(result):
            return []
        where = path or "<root>"
        if isinstance(writer, UnionSchema):
            # Every branch the old schema could have written must stay readable.
            out: list[str] = []
            for branch in writer.schemas:
                out += self.problems(reader, branch, path)
            return out
        if isinstance(reader, UnionSchema):
            return [
                f"{where}: the new type {_short(reader)} has no branch for the old {_short(writer)}"
            ]
        if reader.type != writer.type:
            return [f"{where}: type changed from {_short(writer)} to {_short(reader)}"]
        found: list[str] = []
        kinds = set(result.incompatibilities)
        if (
            SchemaIncompatibilityType.name_mismatch in kinds
            and isinstance(reader, NamedSchema)
            and isinstance(writer, NamedSchema)
            and not schema_name_equals(reader, writer)
        ):
            found.append(f"{where}: name changed from {writer.fullname} to {reader.fullname}")
        if isinstance(reader, RecordSchema) and isinstance(writer, RecordSchema):
            found += self._fields(reader, writer, path)
        elif isinstance(reader, EnumSchema) and isinstance(writer, EnumSchema):
            missing = set(writer.symbols) - set(reader.symbols)
            if missing:
                found.append(f"{where}: enum symbols removed: {', '.join(sorted(missing))}")
        elif isinstance(reader, FixedSchema) and isinstance(writer, FixedSchema):
            if reader.size != writer.size:
                found.append(f"{where}: fixed size changed from {writer.size} to {reader.size}")
        elif isinstance(reader, ArraySchema) and isinstance(writer, ArraySchema):
            found += self.problems(reader.items, writer.items, f"{path}[]")
        elif isinstance(reader, MapSchema) and isinstance(writer, MapSchema):
            found += self.problems(reader.values, writer.values, f"{path}{{}}")
        # Whatever the checker found that the walk could not place, in its own words.
        return found or [f"{where}: {m}" for m in sorted(result.messages)]

    def _fields(self, reader: RecordSchema, writer: RecordSchema, path: str) -> list[str]:
        out: list[str] = []
        for field in reader.fields:
            fpath = f"{path}.{field.name}" if path else str(field.name)
            old = lookup_writer_field(writer_schema=writer, reader_field=field)
            if old is None:
                if not field.has_default:
                    out.append(f"{fpath}: new field without a default")
                continue
            out += self.problems(field.type, old.type, fpath)
        return out


def reader_problems(reader: Any, writer: Any) -> list[str]:
    """Why data written with `writer` cannot be read with `reader` (empty when it can)."""
    return _Explainer().problems(_parse(reader), _parse(writer), "")


def explain(level: str, new: Any, old: Any) -> list[str]:
    """The problems a compatibility level finds between the new and the latest schema."""
    level = level.upper().removesuffix("_TRANSITIVE")
    out: list[str] = []
    if level in ("BACKWARD", "FULL"):
        out += [f"old data unreadable: {p}" for p in reader_problems(new, old)]
    if level in ("FORWARD", "FULL"):
        out += [f"new data unreadable by old readers: {p}" for p in reader_problems(old, new)]
    return out
