"""The schema-registry client: Confluent-compatible API (Apicurio's `/apis/ccompat/v7`).

A thin adapter over confluent-kafka's `SchemaRegistryClient` that keeps the calls guardstream
makes and turns its errors into guardstream's. Decoding needs writer schemas by id on the hot
path, so they are cached forever once fetched and parsed (ids are immutable). Lookups
distinguish an id the registry does not know (the record's fault: `SCHEMA_UNKNOWN`) from a
registry that cannot be reached (nobody's fault: retry).

The two lookup errors live in `guardstream.serde.registry_errors` (re-exported here) so pure
code can catch them without importing a registry client. The worker's breaker and metrics
around these lookups live in `guardstream.runtime.registry_gate`.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import fastavro
import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx as _client_httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.serde.registry_errors import RegistryUnavailable, SchemaUnknown
from guardstream.streams.clients import registry_config

__all__ = ["Compatibility", "Registry", "RegistryUnavailable", "SchemaUnknown"]

T = TypeVar("T")

# Confluent error codes for "no such subject / version / schema" (sent with HTTP 404).
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403})

# What the client raises when no answer arrives (refused, reset, DNS, timeout). It uses httpx2
# when installed and httpx otherwise, so catch whichever it uses (and httpx itself).
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = tuple({httpx.HTTPError, _client_httpx.HTTPError})


@dataclass(frozen=True)
class Compatibility:
    """The registry's verdict on a local schema against a subject's latest version."""

    subject: str
    compatible: bool
    new_subject: bool
    messages: tuple[str, ...] = ()


def _not_found(exc: SchemaRegistryError) -> bool:
    return exc.http_status_code == 404 or exc.error_code in _NOT_FOUND_CODES


def _message(exc: SchemaRegistryError) -> str:
    return str(exc.error_message or "")[:300]


class Registry:
    """A small, thread-safe client for the calls guardstream makes."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.registry_api.rstrip("/")
        # No retries inside the client: a caller that must wait (the worker's RegistryGate,
        # the tenant directory) retries with its own backoff, and tools fail fast.
        self._client = SchemaRegistryClient(
            registry_config(settings, timeout=settings.registry_timeout_s, **{"max.retries": 0})
        )
        self._parsed: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _call(self, call: Callable[[], T]) -> T:
        """Run one client call; transport errors and 5xx become RegistryUnavailable.

        Any other `SchemaRegistryError` (a 4xx answer) is left to the caller to interpret.
        """
        try:
            return call()
        except SchemaRegistryError as exc:
            if exc.http_status_code >= 500:
                raise RegistryUnavailable(
                    f"registry at {self.base} answered {exc.http_status_code}"
                ) from exc
            raise
        except _TRANSPORT_ERRORS as exc:
            raise RegistryUnavailable(f"registry at {self.base} unreachable: {exc}") from exc

    def remember(self, schema_id: int, parsed: Any) -> None:
        """Cache a parsed writer schema under an id (benchmarks run without a registry)."""
        with self._lock:
            self._parsed[schema_id] = parsed

    def is_cached(self, schema_id: int) -> bool:
        """Whether the writer schema with this id is known without a registry call."""
        return schema_id in self._parsed

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed schema with this id (cached), SchemaUnknown or RegistryUnavailable."""
        cached = self._parsed.get(schema_id)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        try:
            schema = self._call(lambda: self._client.get_schema(schema_id))
        except SchemaRegistryError as exc:
            if _not_found(exc):
                raise SchemaUnknown(f"schema id {schema_id} is not in the registry") from exc
            raise RegistryUnavailable(
                f"GET /schemas/ids/{schema_id} answered {exc.http_status_code}"
            ) from exc
        schema_type = schema.schema_type or "AVRO"
        if schema_type != "AVRO":
            raise SchemaUnknown(f"schema id {schema_id} is {schema_type}, not Avro")
        try:
            parsed = fastavro.parse_schema(json.loads(schema.schema_str or ""))
        except Exception as exc:
            raise SchemaUnknown(f"schema id {schema_id} does not parse as Avro: {exc}") from exc
        with self._lock:
            self._parsed[schema_id] = parsed
        return parsed

    def register(self, subject: str, schema: str) -> int:
        """Register a schema under a subject (idempotent) and return its id."""
        try:
            return int(self._call(lambda: self._client.register_schema(subject, Schema(schema))))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise GuardstreamError(
                    f"the registry refused {subject}: {_message(exc)}",
                    "make the change compatible (new fields need defaults) and run again",
                ) from exc
            raise GuardstreamError(
                f"registering {subject} failed ({exc.http_status_code}): {_message(exc)}",
                "check the schema file and the registry's log (`guardstream stack logs registry`)",
            ) from exc

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of this exact schema under a subject, or None if it is not registered."""
        try:
            found = self._call(lambda: self._client.lookup_schema(subject, Schema(schema)))
        except SchemaRegistryError as exc:
            if _not_found(exc):
                return None
            raise RegistryUnavailable(
                f"lookup of {subject} answered {exc.http_status_code}"
            ) from exc
        return int(found.schema_id) if found.schema_id is not None else None

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set the compatibility rule globally or for one subject."""
        try:
            self._call(lambda: self._client.set_compatibility(subject, level))
        except SchemaRegistryError as exc:
            raise GuardstreamError(
                f"setting compatibility {level} failed ({exc.http_status_code}): {_message(exc)}",
                "use one of BACKWARD, FORWARD, FULL (optionally _TRANSITIVE) or NONE",
            ) from exc

    def check(self, subject: str, schema: str) -> Compatibility:
        """Ask the registry whether `schema` may become the subject's next version."""
        # `SchemaRegistryClient.test_compatibility` returns only the boolean and drops the
        # registry's verbose `messages`, so this one call goes through the client's REST layer
        # (same connection, configuration and errors) to keep them.
        path = (
            f"compatibility/subjects/{urllib.parse.quote(subject, safe='')}"
            "/versions/latest?verbose=true"
        )
        body = Schema(schema).to_dict()
        try:
            answer = self._call(lambda: self._client._rest_client.post(path, body=body))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return Compatibility(subject, True, new_subject=True)
            raise GuardstreamError(
                f"compatibility check of {subject} failed ({exc.http_status_code}): "
                f"{_message(exc)}",
                "check the schema file and the registry's log",
            ) from exc
        answer = answer or {}
        return Compatibility(
            subject,
            bool(answer.get("is_compatible")),
            new_subject=False,
            messages=tuple(str(m) for m in answer.get("messages", []) or []),
        )

    def latest(self, subject: str) -> str | None:
        """The latest schema text under a subject, or None when the subject is new."""
        # The client caches "latest" with no expiry; this call must see the registry's now.
        self._client.clear_latest_caches()  # type: ignore[no-untyped-call]
        try:
            found = self._call(lambda: self._client.get_latest_version(subject))
        except SchemaRegistryError as exc:
            if _not_found(exc):
                return None
            raise RegistryUnavailable(
                f"GET latest of {subject} answered {exc.http_status_code}"
            ) from exc
        return str(found.schema.schema_str)
