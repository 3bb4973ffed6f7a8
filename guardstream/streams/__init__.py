"""Topics, the CloudEvents + Avro wire format, and the schema-registry client."""
