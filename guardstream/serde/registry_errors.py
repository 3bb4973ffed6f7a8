"""What a schema-registry lookup can fail with, apart from any registry client.

Pure code (the ingest judge) tells a record's fault from the registry's by these two types
without importing the client that raises them (`guardstream.serde.registry`).
"""

from __future__ import annotations


class SchemaUnknown(LookupError):
    """The registry answered that no schema has this id."""


class RegistryUnavailable(ConnectionError):
    """The registry could not be reached or answered with a server error."""
