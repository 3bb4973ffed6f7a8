"""Decoding ingress values and encoding outputs with registered schemas."""

from __future__ import annotations

from typing import Any, Protocol

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.serde import avro, schemas
from guardstream.streams.topics import Topic, subject_for


class SchemaSource(Protocol):
    """What the codec needs of a registry (`serde.registry.Registry` is the real one)."""

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed schema registered under `schema_id` (raises SchemaUnknown)."""

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id `schema` is registered under in `subject`, if it is."""

    def close(self) -> None:
        """Release connections."""


class Codec:
    """Reader schemas from `settings.schema_dir`, writer schemas from the registry, output ids."""

    def __init__(self, settings: Settings, registry: SchemaSource) -> None:
        self.settings = settings
        self.registry = registry
        self._out_ids: dict[Topic, int] = {}

    def resolve_output_ids(self) -> None:
        """Find the registered id of each schema this process writes; fail if unregistered."""
        for topic in Topic:
            subject = subject_for(self.settings, topic)
            schema_id = self.registry.lookup(
                subject, schemas.schema_text(topic.schema, self.settings.schema_dir)
            )
            if schema_id is None:
                raise GuardstreamError(
                    f"schema '{topic.schema}' is not registered under {subject}",
                    "run `guardstream schemas register` (after `guardstream stack up`)",
                )
            self._out_ids[topic] = schema_id

    def use_output_ids(self, ids: dict[Topic, int]) -> None:
        """Set output schema ids directly (benchmarks run without a registry)."""
        self._out_ids.update(ids)

    def decode(self, value: bytes, topic: Topic) -> Any:
        """Decode a framed value from `topic` into the current reader schema of its values.

        Raises avro.FramingError, registry.SchemaUnknown or registry.RegistryUnavailable.
        """
        schema_id, body = avro.split_frame(value)
        writer = self.registry.writer_schema(schema_id)
        reader = schemas.reader_schema(topic.schema, self.settings.schema_dir)
        return avro.decode_body(body, writer, reader)

    def encode(self, topic: Topic, record: Any) -> bytes:
        """Encode a record for a topic with the schema registered for it."""
        schema = schemas.reader_schema(topic.schema, self.settings.schema_dir)
        return avro.encode(self._out_ids[topic], schema, record)
