"""Faust's Prometheus sensors, kept off the per-record path.

Faust calls its monitor several times per record (message in and out, stream event in and
out, every table get, set and delete, every record sent), and its `PrometheusMonitor`
answers each call with label lookups plus the bookkeeping behind Faust's own `/stats` page
(per topic, stream, task and table dictionaries): about 8 % of a flooded worker, and the
meter reads its table several times per record. `LeanPrometheusMonitor` keeps every series
the dashboards read, from the same metric objects, with each label child looked up once; it
drops the per-record table operation counts and the `/stats` bookkeeping, which nothing here
reads. Rebalance, commit, send-completion and assignment sensors stay Faust's own.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from guardstream.runtime.metrics import FAUST_PREFIX


class LeanPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus monitor with cheap per-record hooks (same series, fewer lookups)."""

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(metrics=metrics, **kwargs)
        self._received_by_topic: dict[str, Any] = {}
        self._sent_by_topic: dict[str, Any] = {}
        self._events_by_stream: dict[Any, Any] = {}

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        """Count a fetched record (per topic, as the dashboards read it)."""
        metrics = self._metrics
        metrics.messages_received.inc()
        metrics.active_messages.inc()
        child = self._received_by_topic.get(tp.topic)
        if child is None:
            child = metrics.messages_received_per_topics.labels(topic=tp.topic)
            self._received_by_topic[tp.topic] = child
        child.inc()

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        """A record is done with (acknowledged)."""
        self._metrics.active_messages.dec()

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        """An event enters an agent's stream: count it, and start its runtime clock."""
        metrics = self._metrics
        metrics.total_events.inc()
        metrics.total_active_events.inc()
        child = self._events_by_stream.get(stream)
        if child is None:
            label = f"stream.{self._stream_label(stream)}.events"
            child = metrics.total_events_per_stream.labels(stream=label)
            self._events_by_stream[stream] = child
        child.inc()
        return self.time()

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        """An event leaves the stream: observe how long the agent spent on it."""
        metrics = self._metrics
        metrics.total_active_events.dec()
        if state is not None:
            metrics.events_runtime_latency.observe(self.secs_to_ms(self.time() - state))

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        """Count a record sent (per topic); the state is its start time for the latency."""
        child = self._sent_by_topic.get(topic)
        if child is None:
            child = self._metrics.topic_messages_sent.labels(topic=f"topic.{topic}")
            self._sent_by_topic[topic] = child
        child.inc()
        return self.time()

    def _clear_partition_related_metrics(self) -> None:
        """Faust's clearing at each rebalance's start and end, and the cached children with it.

        Faust removes the per-topic children from their counters there; a child kept here
        after that is no longer exported, and incrementing it would leave "Records consumed
        by topic" empty from a worker's first rebalance after traffic until it restarts.
        """
        super()._clear_partition_related_metrics()
        self._received_by_topic.clear()
        self._sent_by_topic.clear()

    def on_table_get(self, table: Any, key: Any) -> None:
        """Not counted: a per-read counter nobody charts."""

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        """Not counted: a per-write counter nobody charts."""

    def on_table_del(self, table: Any, key: Any) -> None:
        """Not counted: a per-delete counter nobody charts."""


def setup_sensors(app: faust.App) -> None:
    """Install the lean monitor (prefix `faust_`) and serve the default registry on `/metrics`.

    The fixed prefix keeps dashboards independent of the app id; guardstream's own metrics
    live in the same registry, so one scrape gets both.
    """
    app.monitor = LeanPrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, FAUST_PREFIX))

    @app.page("/metrics")
    async def metrics_page(self: View, request: Request) -> Response:
        # As a header: aiohttp refuses a content_type argument that carries a charset.
        return self.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
