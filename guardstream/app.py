"""The one composition root: the Faust app of a worker process, its agents, and running it."""

from __future__ import annotations

import time
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer

from guardstream.agents import dispatch, ingest, meter
from guardstream.agents.context import Context
from guardstream.auth.keyring import Keyring
from guardstream.config.catalog import cached_catalog
from guardstream.config.settings import Settings
from guardstream.config.tenants import load_tiers
from guardstream.guardrails import DEFAULT_POLICY, Policy, policy_from
from guardstream.ingest.authenticate import Authenticator
from guardstream.ingest.judge import Judge
from guardstream.runtime import faust_fixes
from guardstream.runtime.continuity import register_commit_holes
from guardstream.runtime.diagnostics import register_diagnostics
from guardstream.runtime.health import register_health
from guardstream.runtime.logs import json_logging_config
from guardstream.runtime.metrics import OUTPUT_FLUSH
from guardstream.runtime.registry_gate import RegistryGate
from guardstream.runtime.sensors import setup_sensors
from guardstream.runtime.tenant_page import register_tenant_page
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.streams.admin import ensure_topics
from guardstream.streams.clients import faust_broker_options
from guardstream.streams.producer import OutputProducer
from guardstream.streams.topics import changelog_topics
from guardstream.tables import clean_stop
from guardstream.tables.assignment import register_changelog_check
from guardstream.tables.definitions import define_tables

# Oversize values must be read to be rejected with a reason, not stall the fetcher.
MAX_REQUEST_BYTES = 64 * 1024 * 1024


def faust_options(settings: Settings) -> dict[str, Any]:
    """How guardstream configures a Faust app: broker, store, serializers, sizes, timeouts.

    Shared with the benchmark's minimal agent, so the two differ only in what they run.
    """
    return {
        **faust_broker_options(settings),
        "store": "rocksdb://",
        "datadir": str(settings.state_dir),
        "topic_partitions": settings.default_partitions,
        # Faust's own topics (the meter table's changelog, the leader topic) are replicated
        # like guardstream's; min.insync.replicas comes from the brokers' default.
        "topic_replication_factor": settings.topic_replicas,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_max_fetch_size": MAX_REQUEST_BYTES,
        "producer_max_request_size": MAX_REQUEST_BYTES,
        "stream_wait_empty": False,
        "producer_linger_ms": 10,
        # A worker killed without leaving the group keeps its partitions until the session
        # times out; the default (60 s) would stall them that long.
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        # A worker that takes over a dead worker's partitions replays only what its standby
        # copy has not read yet, instead of the whole changelog (`bench failover`). Faust's
        # own default is 1 too; stating it here keeps it a guardstream setting, not an
        # accident of Faust's environment variables.
        "table_standby_replicas": settings.table_standby_replicas,
    }


class Producer(AIOKafkaProducer):
    """Faust's producer (tables' changelogs), whose flush also delivers the agents' outputs.

    Faust flushes its producer before it commits offsets, before it hands partitions over in
    a rebalance and when it stops; chaining the output producer's flush here keeps "outputs
    before offsets" true for the records the agents send on librdkafka.
    """

    outputs: OutputProducer | None = None

    async def flush(self) -> None:
        """Flush Faust's own records, then the agents' outputs."""
        await super().flush()
        if self.outputs is not None:
            # Faust's send-latency histogram no longer sees these records; this does.
            with OUTPUT_FLUSH.time():
                await self.outputs.flush()


class App(faust.App):
    """A Faust app whose producer also flushes guardstream's output producer."""

    outputs: OutputProducer | None = None

    def _new_producer(self) -> Producer:
        producer = Producer(self.transport, loop=self.loop, beacon=self.beacon)
        producer.outputs = self.outputs
        return producer


def _count_send_error(app: faust.App, exc: Exception) -> None:
    # Where the dashboards count Faust's own failed sends; the sensors expect the state
    # `on_send_initiated` gave them (a start time per sensor), which a report no longer has.
    now = time.monotonic()
    app.sensors.on_send_error(app.producer, exc, {sensor: now for sensor in app.sensors})


def create_app(settings: Settings) -> tuple[faust.App, Context]:
    """Build the Faust app with every stage's agent registered on it."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    faust_fixes.apply()
    app = App(
        settings.app_id,
        **faust_options(settings),
        web_port=settings.worker_web_port,
        web_bind=settings.host,
        # The URL other workers forward table-routed requests to (`/tenants/{id}/state`).
        # Faust's default host is the machine's hostname, which may resolve to an address the
        # web server is not bound to (127.0.1.1 on Debian): advertise what we bind to.
        web_host=settings.worker_advertised_host,
    )
    setup_sensors(app)
    registry = Registry(settings)
    codec = Codec(settings, registry)
    catalog = cached_catalog(settings.model_catalog)
    app.outputs = OutputProducer(
        settings,
        max_request_bytes=MAX_REQUEST_BYTES,
        on_error=lambda exc: _count_send_error(app, exc),
    )
    tables = define_tables(app, settings, codec, app.outputs)

    def policy_for(tenant_id: str) -> Policy:
        config = tables.tenant_config(tenant_id)
        return policy_from(config.policy) if config and config.policy else DEFAULT_POLICY

    tiers = load_tiers(settings.tiers_file)
    keyring = Keyring(tables.tenant_config, tiers, settings.auth_secrets_path)
    authenticator = Authenticator(keyring.for_tenant, settings.auth_tolerance_s * 1000)
    ctx = Context(
        settings=settings,
        codec=codec,
        registry_gate=RegistryGate(registry),
        judge=Judge(
            codec,
            catalog,
            settings.max_record_bytes,
            policy_for,
            settings.record_budget_ms,
            authenticator,
        ),
        catalog=catalog,
        tables=tables,
        producer=app.outputs,
    )

    ingest.register(app, ctx)
    meter.register(app, ctx)
    if settings.dispatch:
        dispatch.register(app, ctx, policy_for)
    register_commit_holes(app, settings)
    register_changelog_check(app, changelog_topics(settings))
    register_health(app)
    register_diagnostics(app)
    register_tenant_page(app, tables, tiers)
    return app, ctx


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create missing topics, resolve output schema ids, and run until stopped."""
    ensure_topics(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    clean_stop.trust_or_discard(settings.state_dir)
    app, ctx = create_app(settings)
    ctx.codec.resolve_output_ids()
    try:
        build_worker(app, settings, loglevel).execute_from_commandline()
    except SystemExit as exc:
        # Stopped on a signal with nothing crashed: the final flush put every table write
        # on the changelog, so the next worker here may keep these stores.
        if exc.code in (0, None) and getattr(app, "crash_reason", None) is None:
            clean_stop.mark_clean(settings.state_dir)
        raise


def build_worker(app: faust.App, settings: Settings, loglevel: str) -> faust.Worker:
    """The Faust worker that runs `app`, logging at `loglevel` and no lower."""
    if settings.log_format == "json":
        # One JSON object per line, with request and trace ids when a record is in hand.
        worker = faust.Worker(app, loglevel=loglevel, logging_config=json_logging_config(loglevel))
    else:
        worker = faust.Worker(app, loglevel=loglevel)
    # At WARNING and above Faust adds a terminal spinner that wants every record: it sets the
    # root logger to DEBUG, so every debug call in Faust and aiokafka builds a record and
    # walks the handlers (~10 % of a flooded worker). A service has no terminal to spin.
    worker.spinner = None
    return worker
