"""`guardstream lag` and `guardstream lag-exporter`: consumer lag as a table or as metrics.

The exporter is a separate process from the workers on purpose: when every worker is down
the backlog is what matters most, and a worker's own `/metrics` page is down with it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from guardstream.config.settings import Settings
from guardstream.lag.reader import LagReader, LagSnapshot

DEFAULT_EXPORTER_PORT = 9309
DEFAULT_INTERVAL_S = 15.0

_ROW_LABELS = ["group", "topic", "partition"]


def exporter_port(settings: Settings) -> int:
    """The exporter's port: `GUARDSTREAM_LAG_EXPORTER_PORT`, else 9309."""
    return settings.lag_exporter_port


def exporter_interval(settings: Settings) -> float:
    """Minimum seconds between two Kafka queries of the exporter."""
    return settings.lag_exporter_interval_s


def configured_groups(settings: Settings) -> list[str] | None:
    """The groups `GUARDSTREAM_LAG_GROUPS` (comma-separated) limits reports to; None = all."""
    raw = settings.lag_groups
    if not raw:
        return None
    return [g.strip() for g in str(raw).split(",") if g.strip()]


class LagCollector(Collector):
    """Queries the brokers when Prometheus scrapes, so lag is as fresh as the scrape.

    A scrape within `min_interval_s` of the last successful query reuses it: several
    Prometheus replicas scraping one exporter then cost the brokers one query, not several.
    When the brokers cannot be reached only `guardstream_lag_exporter_up 0` and the scrape
    duration are served: stale lag would look like a healthy, frozen backlog.
    """

    def __init__(
        self,
        query: Callable[[], LagSnapshot],
        min_interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._query = query
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: LagSnapshot | None = None
        self._last_at = float("-inf")
        self._last_duration = 0.0

    def _snapshot(self) -> LagSnapshot | None:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last_at < self._min_interval_s:
                return self._last
            try:
                snap = self._query()
            except Exception:
                # Any failure (broker down, timeout) means "no trustworthy lag now"; the up
                # gauge says so, and the exporter keeps serving.
                self._last = None
                self._last_duration = self._clock() - now
                return None
            self._last, self._last_at = snap, now
            self._last_duration = self._clock() - now
            return snap

    def collect(self) -> Iterator[Metric]:
        """Metric families for one scrape."""
        snap = self._snapshot()
        up = GaugeMetricFamily(
            "guardstream_lag_exporter_up",
            "1 when the last query of the brokers for consumer offsets succeeded, else 0",
            value=0 if snap is None else 1,
        )
        duration = GaugeMetricFamily(
            "guardstream_lag_exporter_scrape_duration_seconds",
            "Seconds the last query of the brokers took",
            value=self._last_duration,
        )
        yield up
        yield duration
        if snap is None:
            return
        yield from snapshot_metrics(snap)


def snapshot_metrics(snap: LagSnapshot) -> Iterator[Metric]:
    """The lag metric families for one snapshot."""
    lag = GaugeMetricFamily(
        "guardstream_consumergroup_lag",
        "Records between the group's committed offset and the partition's end offset",
        labels=_ROW_LABELS,
    )
    lag_s = GaugeMetricFamily(
        "guardstream_consumergroup_lag_seconds",
        "Seconds the oldest record the group has not processed has waited (0 when caught up)",
        labels=_ROW_LABELS,
    )
    committed = GaugeMetricFamily(
        "guardstream_consumergroup_committed_offset",
        "The group's committed offset (next record it will read); absent before its first commit",
        labels=_ROW_LABELS,
    )
    end = GaugeMetricFamily(
        "guardstream_partition_end_offset",
        "The partition's end offset (high watermark)",
        labels=["topic", "partition"],
    )
    members = GaugeMetricFamily(
        "guardstream_consumergroup_members",
        "Members of the consumer group (0 when no worker is consuming)",
        labels=["group"],
    )
    for row in snap.rows:
        labels = [row.group, row.topic, str(row.partition)]
        lag.add_metric(labels, row.lag)
        if row.lag_seconds is not None:
            lag_s.add_metric(labels, row.lag_seconds)
        if row.committed is not None:
            committed.add_metric(labels, row.committed)
    for (topic, partition), offset in sorted(snap.end_offsets.items()):
        end.add_metric([topic, str(partition)], offset)
    for group in snap.groups:
        members.add_metric([group.group], group.members)
    yield from (lag, lag_s, committed, end, members)


def serve_exporter(
    settings: Settings, port: int, bind: str, interval_s: float, groups: Sequence[str] | None
) -> None:
    """Serve lag metrics on `bind:port` until SIGTERM or SIGINT."""
    from prometheus_client import start_http_server

    reader = LagReader(settings)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LagCollector(lambda: reader.snapshot(groups), interval_s))
    server, thread = start_http_server(port, addr=bind, registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        thread.join(5)
