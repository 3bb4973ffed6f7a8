"""The worker's gate to the schema registry: lookups off the event loop, behind a breaker.

Only workers need this (the command-line tools call `Registry` directly): it adds the circuit
breaker, the backoff and the lookup metrics around `Registry.writer_schema`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from guardstream.runtime.breaker import CircuitBreaker
from guardstream.runtime.metrics import REGISTRY_BREAKER, REGISTRY_LOOKUPS
from guardstream.serde.avro import FramingError, split_frame
from guardstream.serde.registry import Registry, RegistryUnavailable, SchemaUnknown

log = logging.getLogger(__name__)


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
