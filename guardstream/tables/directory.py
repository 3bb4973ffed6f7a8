"""Tenant configuration in force on this worker: the whole compacted `tenants` topic.

Every worker reads every partition of the topic itself (no consumer group) in a background
thread, so a `tenants apply` reaches all workers within a poll interval and without a restart.
`ready` is set once the reader has caught up with the end of the topic as it was at start-up:
the meter waits for it, so no request is judged against a half-loaded directory.

Why not a Faust GlobalTable: with the `tenants` topic as its changelog, faust-streaming
0.15's assignor never completes (the worker hangs in "performing partition assignments");
copying the topic into a GlobalTable through an agent leaves a start-up race no worker can
see the end of. A plain reader of the compacted topic is what a GlobalTable does underneath.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from guardstream.config.settings import Settings
from guardstream.config.tenants import TenantConfig
from guardstream.serde.registry import RegistryUnavailable
from guardstream.streams.reader import TopicReader
from guardstream.streams.topics import Topic

log = logging.getLogger(__name__)


class TenantDirectory:
    """A live, read-only view of the tenants topic."""

    def __init__(self, settings: Settings, decode: Callable[[bytes], TenantConfig]) -> None:
        self.settings = settings
        self.decode = decode
        self.configs: dict[str, TenantConfig] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, tenant_id: str) -> TenantConfig | None:
        """The tenant's configuration, or None when it has none."""
        return self.configs.get(tenant_id)

    def start(self) -> None:
        """Start following the topic in a daemon thread (once; later calls do nothing)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="tenant-directory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()

    def _run(self) -> None:
        topic = self.settings.topic(Topic.TENANTS)
        try:
            # Every partition, empty ones too: the directory keeps following the topic.
            with TopicReader(self.settings, topic, metadata_timeout_s=30) as reader:
                if reader.caught_up:
                    self.ready.set()
                while not self._stop.is_set():
                    msg = reader.poll(0.5)
                    if msg is None:
                        continue
                    self._apply(msg.key(), msg.value())
                    if not self.ready.is_set() and reader.caught_up:
                        log.info("tenant directory loaded: %d tenants", len(self.configs))
                        self.ready.set()
        except Exception:
            log.exception("the tenant directory stopped following %s", topic)
            raise

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        tenant = key.decode("utf-8", "replace")
        if value is None:
            self.configs.pop(tenant, None)  # a tombstone removes the tenant
            return
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.configs[tenant] = self.decode(value)
                return
            except RegistryUnavailable as exc:
                # Nobody's fault in the record: skipping it would leave the tenant unknown
                # (every request UNKNOWN_TENANT) until the next apply. Wait for the registry.
                log.warning("tenant config for %r waits for the registry: %s", tenant, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            except Exception:
                log.exception(
                    "tenant config for %r does not decode; keeping the previous one", tenant
                )
                return
