"""The worker's tables: changelog-backed RocksDB tables, and the tenant directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from guardstream.config.settings import Settings
from guardstream.config.tenants import TenantConfig
from guardstream.serde.codec import Codec
from guardstream.streams.producer import OutputProducer
from guardstream.streams.topics import DISPATCH_TABLE, METER_TABLE, Topic
from guardstream.tables.changelog import changelog_table
from guardstream.tables.directory import TenantDirectory


@dataclass
class Tables:
    """Handles on the tables agents use."""

    # The meter's one table: each tenant's state and its per-request entries. One table, so
    # one changelog partition per metering partition, written in order: a crash loses a
    # suffix of it, never an entry while keeping the state written after it.
    meter: Any
    tenants: TenantDirectory
    # The dispatch stage's calls, by request id (`guardstream.dispatch.journal`); only when
    # the stage runs. Co-partitioned with `admitted`, whose records it answers.
    dispatch: Any = None

    def tenant_config(self, tenant_id: str) -> TenantConfig | None:
        """The tenant's configuration in force on this worker (None: not configured)."""
        return self.tenants.get(tenant_id)


def define_tables(
    app: faust.App, settings: Settings, codec: Codec, outputs: OutputProducer
) -> Tables:
    """Declare the tables on the app (before it starts)."""
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
    meter = changelog_table(
        app, METER_TABLE, outputs, partitions=settings.default_partitions, **raw
    )
    tenants = TenantDirectory(
        settings, lambda raw_value: TenantConfig.from_avro(codec.decode(raw_value, Topic.TENANTS))
    )
    dispatch = (
        changelog_table(app, DISPATCH_TABLE, outputs, partitions=settings.default_partitions, **raw)
        if settings.dispatch
        else None
    )
    return Tables(meter, tenants, dispatch)
