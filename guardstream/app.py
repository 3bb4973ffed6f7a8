"""The Faust application: one per worker process, its topics, and its agents."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

from guardstream.metrics import FAUST_PREFIX
from guardstream.settings import Settings
from guardstream.streams.codec import Codec
from guardstream.streams.registry import Registry


@dataclass
class Context:
    """What agents share: settings, the codec (and its registry client)."""

    settings: Settings
    codec: Codec


def create_app(settings: Settings) -> tuple[faust.App, Context]:
    """Build the Faust app with every stage's agent registered on it."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="rocksdb://",
        datadir=str(settings.state_dir),
        web_port=settings.worker_web_port,
        web_bind=settings.host,
        topic_partitions=settings.default_partitions,
        key_serializer="raw",
        value_serializer="raw",
        # Oversize values must be read to be rejected with a reason, not stall the fetcher.
        consumer_max_fetch_size=64 * 1024 * 1024,
        producer_max_request_size=64 * 1024 * 1024,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
    )
    # Faust's own sensors, with a fixed prefix so dashboards do not depend on the app id;
    # they share the default registry with guardstream's metrics on `/metrics`.
    setup_prometheus_sensors(app, name_prefix=FAUST_PREFIX)
    registry = Registry(settings)
    ctx = Context(settings=settings, codec=Codec(settings, registry))

    from guardstream.agents import ingest

    ingest.register(app, ctx)
    return app, ctx
