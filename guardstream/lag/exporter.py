"""`guardstream lag` and `guardstream lag-exporter`: consumer lag as a table or as metrics.

The exporter is a separate process from the workers on purpose: when every worker is down
the backlog is what matters most, and a worker's own `/metrics` page is down with it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from guardstream.config.settings import Settings
from guardstream.lag.reader import LagReader, LagSnapshot
from guardstream.lag.status import (
    Observation,
    PartitionKey,
    PartitionStatus,
    StatusTracker,
    group_statuses,
)

DEFAULT_EXPORTER_PORT = 9309
DEFAULT_INTERVAL_S = 15.0

_ROW_LABELS = ["group", "topic", "partition"]


def exporter_port(settings: Settings) -> int:
    """The exporter's port: `GUARDSTREAM_LAG_EXPORTER_PORT`, else 9309."""
    return settings.lag_exporter_port


def exporter_interval(settings: Settings) -> float:
    """Minimum seconds between two Kafka queries of the exporter."""
    return settings.lag_exporter_interval_s


def status_tracker(settings: Settings) -> StatusTracker:
    """A lag status tracker with the window and sampling interval from the settings."""
    return StatusTracker(settings.lag_status_window, settings.lag_status_interval_s)


def judge(tracker: StatusTracker, snap: LagSnapshot) -> dict[PartitionKey, PartitionStatus]:
    """Feed one snapshot to the tracker and return every partition's lag status."""
    members = {g.group: g.members for g in snap.groups}
    readings: dict[PartitionKey, Observation | None] = {
        (r.group, r.topic, r.partition): None
        if r.committed is None
        else Observation(r.committed, r.lag, members.get(r.group, 0), snap.taken_at_ms)
        for r in snap.rows
    }
    return tracker.update(readings)


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
        tracker: StatusTracker | None = None,
    ) -> None:
        self._query = query
        self._tracker = tracker
        self._statuses: dict[PartitionKey, PartitionStatus] | None = None
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
            if self._tracker is not None:
                # Only fresh queries are samples: a reused one would repeat a sample.
                self._statuses = judge(self._tracker, snap)
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
        yield from snapshot_metrics(snap, self._statuses)


STATUS_HELP = "0 OK, 1 WARN, 2 STOP, 3 STALL, 4 REWIND (Burrow's rules; OK until the window fills)"


def snapshot_metrics(
    snap: LagSnapshot, statuses: Mapping[PartitionKey, PartitionStatus] | None = None
) -> Iterator[Metric]:
    """The lag metric families for one snapshot, and the lag status when it is tracked."""
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
    if statuses is not None:
        yield from status_metrics(statuses)


def status_metrics(statuses: Mapping[PartitionKey, PartitionStatus]) -> Iterator[Metric]:
    """The lag status per partition and per group (its worst partition), as numbers.

    One series per partition whose value is the status, rather than one series per status
    valued 1: the same cardinality as the lag itself, Grafana maps numbers to names and
    colours, and since larger is worse, ``max by (group)`` and ``>= 2`` mean what they say.
    """
    partition = GaugeMetricFamily(
        "guardstream_consumergroup_lag_status",
        f"Lag status of the group on the partition: {STATUS_HELP}",
        labels=_ROW_LABELS,
    )
    group = GaugeMetricFamily(
        "guardstream_consumergroup_status",
        f"Worst lag status over the group's partitions: {STATUS_HELP}",
        labels=["group"],
    )
    for (g, topic, part), status in sorted(statuses.items()):
        partition.add_metric([g, topic, str(part)], int(status.status))
    for g, worst in group_statuses(statuses).items():
        group.add_metric([g], int(worst))
    yield from (partition, group)


def serve_exporter(
    settings: Settings, port: int, bind: str, interval_s: float, groups: Sequence[str] | None
) -> None:
    """Serve lag metrics on `bind:port` until SIGTERM or SIGINT."""
    from prometheus_client import start_http_server

    reader = LagReader(settings)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        LagCollector(lambda: reader.snapshot(groups), interval_s, tracker=status_tracker(settings))
    )
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
