"""The schema-registry client: Confluent-compatible API (Apicurio's `/apis/ccompat/v7`).

Decoding needs writer schemas by id on the hot path, so they are cached forever once fetched
(ids are immutable). Lookups distinguish an id the registry does not know (the record's
fault: `SCHEMA_UNKNOWN`) from a registry that cannot be reached (nobody's fault: retry).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import fastavro
import httpx

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.runtime.breaker import CircuitBreaker
from guardstream.runtime.metrics import REGISTRY_BREAKER, REGISTRY_LOOKUPS
from guardstream.serde.avro import FramingError, split_frame

log = logging.getLogger(__name__)

_CT = "application/vnd.schemaregistry.v1+json"


class SchemaUnknown(LookupError):
    """The registry answered that no schema has this id."""


class RegistryUnavailable(ConnectionError):
    """The registry could not be reached or answered with a server error."""


@dataclass(frozen=True)
class Compatibility:
    """The registry's verdict on a local schema against a subject's latest version."""

    subject: str
    compatible: bool
    new_subject: bool
    messages: tuple[str, ...] = ()


class Registry:
    """A small, thread-safe client for the calls guardstream makes."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.registry_api.rstrip("/")
        self._http = httpx.Client(
            timeout=settings.registry_timeout_s, headers={"Accept": _CT, "Content-Type": _CT}
        )
        self._parsed: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            r = self._http.request(
                method, f"{self.base}{path}", content=None if body is None else json.dumps(body)
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"registry at {self.base} unreachable: {exc}") from exc
        if r.status_code >= 500:
            raise RegistryUnavailable(f"registry at {self.base} answered {r.status_code}")
        return r

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
        r = self._request("GET", f"/schemas/ids/{schema_id}")
        if r.status_code == 404:
            raise SchemaUnknown(f"schema id {schema_id} is not in the registry")
        if r.status_code != 200:
            raise RegistryUnavailable(f"GET /schemas/ids/{schema_id} answered {r.status_code}")
        payload = r.json()
        if payload.get("schemaType", "AVRO") != "AVRO":
            raise SchemaUnknown(f"schema id {schema_id} is {payload['schemaType']}, not Avro")
        try:
            parsed = fastavro.parse_schema(json.loads(payload["schema"]))
        except Exception as exc:
            raise SchemaUnknown(f"schema id {schema_id} does not parse as Avro: {exc}") from exc
        with self._lock:
            self._parsed[schema_id] = parsed
        return parsed

    def register(self, subject: str, schema: str) -> int:
        """Register a schema under a subject (idempotent) and return its id."""
        r = self._request("POST", f"/subjects/{subject}/versions", {"schema": schema})
        if r.status_code == 409:
            raise GuardstreamError(
                f"the registry refused {subject}: {_message(r)}",
                "make the change compatible (new fields need defaults) and run again",
            )
        if r.status_code != 200:
            raise GuardstreamError(
                f"registering {subject} failed ({r.status_code}): {_message(r)}",
                "check the schema file and the registry's log (`guardstream stack logs registry`)",
            )
        return int(r.json()["id"])

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of this exact schema under a subject, or None if it is not registered."""
        r = self._request("POST", f"/subjects/{subject}", {"schema": schema})
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise RegistryUnavailable(f"lookup of {subject} answered {r.status_code}")
        return int(r.json()["id"])

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set the compatibility rule globally or for one subject."""
        path = f"/config/{subject}" if subject else "/config"
        r = self._request("PUT", path, {"compatibility": level})
        if r.status_code != 200:
            raise GuardstreamError(
                f"setting compatibility {level} failed ({r.status_code}): {_message(r)}",
                "use one of BACKWARD, FORWARD, FULL (optionally _TRANSITIVE) or NONE",
            )

    def check(self, subject: str, schema: str) -> Compatibility:
        """Ask the registry whether `schema` may become the subject's next version."""
        r = self._request(
            "POST",
            f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
            {"schema": schema},
        )
        if r.status_code == 404:
            return Compatibility(subject, True, new_subject=True)
        if r.status_code != 200:
            raise GuardstreamError(
                f"compatibility check of {subject} failed ({r.status_code}): {_message(r)}",
                "check the schema file and the registry's log",
            )
        body = r.json()
        return Compatibility(
            subject,
            bool(body.get("is_compatible")),
            new_subject=False,
            messages=tuple(str(m) for m in body.get("messages", []) or []),
        )

    def latest(self, subject: str) -> str | None:
        """The latest schema text under a subject, or None when the subject is new."""
        r = self._request("GET", f"/subjects/{subject}/versions/latest")
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise RegistryUnavailable(f"GET latest of {subject} answered {r.status_code}")
        return str(r.json()["schema"])


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", r.text))[:300]
    except ValueError:
        return r.text[:300]


class RegistryGate:
    """Fetches writer schemas off the event loop, behind a circuit breaker.

    While the registry is unreachable the caller waits here (with backoff): records are never
    rejected for the registry's fault, so the partition's lag grows visibly instead.
    """

    def __init__(self, registry: Registry, breaker: CircuitBreaker | None = None) -> None:
        self.registry = registry
        self.breaker = breaker or CircuitBreaker()

    async def warm(self, value: bytes | None) -> None:
        """Make sure the writer schema a framed value names is cached (or known unknown)."""
        try:
            schema_id, _ = split_frame(value)
        except FramingError:
            return  # the judge routes it
        if self.registry.is_cached(schema_id):
            REGISTRY_LOOKUPS.labels("hit").inc()
            return
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            if not self.breaker.allow(now):
                REGISTRY_BREAKER.set(1)
                await asyncio.sleep(self.breaker.wait_s(now))
                continue
            try:
                await loop.run_in_executor(None, self.registry.writer_schema, schema_id)
                REGISTRY_LOOKUPS.labels("miss").inc()
            except SchemaUnknown:
                REGISTRY_LOOKUPS.labels("unknown").inc()
            except RegistryUnavailable as exc:
                REGISTRY_LOOKUPS.labels("error").inc()
                self.breaker.failure(time.monotonic())
                log.warning("schema registry unavailable (%s); records wait, lag grows", exc)
                await asyncio.sleep(0.2)
                continue
            self.breaker.success()
            REGISTRY_BREAKER.set(0)
            return
