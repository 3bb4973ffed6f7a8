"""Decoding ingress values and encoding outputs with registered schemas."""

from __future__ import annotations

from typing import Any

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.serde import avro, schemas
from guardstream.serde.registry import Registry
from guardstream.streams.topics import TOPICS, subject_for


class Codec:
    """Reader schemas from `schemas/`, writer schemas from the registry, output schema ids."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self._out_ids: dict[str, int] = {}

    def resolve_output_ids(self) -> None:
        """Find the registered id of each schema this process writes; fail if unregistered."""
        for topic in TOPICS:
            if topic.schema is None:
                continue
            subject = subject_for(self.settings, topic.name)
            schema_id = self.registry.lookup(subject, schemas.schema_text(topic.schema))
            if schema_id is None:
                raise GuardstreamError(
                    f"schema '{topic.schema}' is not registered under {subject}",
                    "run `guardstream schemas register` (after `guardstream stack up`)",
                )
            self._out_ids[topic.name] = schema_id

    def use_output_ids(self, ids: dict[str, int]) -> None:
        """Set output schema ids directly (benchmarks run without a registry)."""
        self._out_ids.update(ids)

    def decode(self, value: bytes, reader_stem: str) -> Any:
        """Decode a framed value into the current reader schema of `reader_stem`.

        Raises avro.FramingError, registry.SchemaUnknown or registry.RegistryUnavailable.
        """
        schema_id, body = avro.split_frame(value)
        writer = self.registry.writer_schema(schema_id)
        reader = schemas.reader_schema(reader_stem)
        return avro.decode_body(body, writer, reader)

    def encode(self, topic_name: str, record: Any) -> bytes:
        """Encode a record for a topic with the schema registered for it."""
        spec_schema = next(t.schema for t in TOPICS if t.name == topic_name)
        assert spec_schema is not None
        return avro.encode(self._out_ids[topic_name], schemas.reader_schema(spec_schema), record)
