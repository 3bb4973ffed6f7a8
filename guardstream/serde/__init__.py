"""Bytes on the wire: Avro with Confluent framing, the schema files, the codec, the registry
adapter and schema compatibility."""
