"""Lag arithmetic (records and seconds) and the exporter's collector, without a broker."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from guardstream.lag.exporter import LagCollector, judge
from guardstream.lag.reader import (
    GroupInfo,
    LagSnapshot,
    PartitionOffsets,
    compute_rows,
    needs_head,
)
from guardstream.lag.status import LagStatus, StatusTracker

NOW = 1_700_000_000_000


def part(
    committed: int | None,
    end: int,
    start: int = 0,
    head_ts_ms: int | None = None,
    head_at_end: bool = False,
    partition: int = 0,
) -> PartitionOffsets:
    return PartitionOffsets("g", "t", partition, committed, start, end, head_ts_ms, head_at_end)


def row(p: PartitionOffsets) -> tuple[int, float | None]:
    [r] = compute_rows([p], NOW)
    return r.lag, r.lag_seconds


def test_lag_is_end_minus_committed_and_seconds_the_age_of_the_oldest_waiting_record() -> None:
    assert row(part(committed=7, end=10, head_ts_ms=NOW - 42_500)) == (3, 42.5)


def test_caught_up_is_zero_records_and_zero_seconds_without_reading_a_record() -> None:
    p = part(committed=10, end=10)
    assert not needs_head(p)
    assert row(p) == (0, 0.0)


def test_empty_partition_has_no_lag() -> None:
    assert row(part(committed=None, end=0)) == (0, 0.0)


def test_no_commit_yet_counts_from_the_log_start() -> None:
    # auto.offset.reset=earliest: the group will read everything still retained.
    p = part(committed=None, end=50, start=20, head_ts_ms=NOW - 3_000)
    assert needs_head(p)
    [r] = compute_rows([p], NOW)
    assert r.committed is None and r.lag == 30 and r.lag_seconds == 3.0


def test_commit_below_log_start_does_not_count_deleted_records() -> None:
    assert row(part(committed=5, end=50, start=20, head_ts_ms=NOW - 1_000)) == (30, 1.0)


def test_commit_beyond_end_is_zero_not_negative() -> None:
    assert row(part(committed=12, end=10)) == (0, 0.0)


def test_unknown_head_timestamp_is_unknown_not_zero() -> None:
    assert row(part(committed=1, end=10, head_ts_ms=None)) == (9, None)


def test_only_transaction_markers_left_means_nothing_waits() -> None:
    assert row(part(committed=9, end=10, head_at_end=True)) == (1, 0.0)


def test_producer_clock_ahead_of_ours_is_clamped_to_zero() -> None:
    assert row(part(committed=0, end=1, head_ts_ms=NOW + 5_000)) == (1, 0.0)


def test_rows_are_sorted_by_group_topic_partition() -> None:
    parts = [
        PartitionOffsets("b", "t", 0, 0, 0, 0),
        PartitionOffsets("a", "u", 1, 0, 0, 0),
        PartitionOffsets("a", "u", 0, 0, 0, 0),
        PartitionOffsets("a", "t", 3, 0, 0, 0),
    ]
    keys = [(r.group, r.topic, r.partition) for r in compute_rows(parts, NOW)]
    assert keys == [("a", "t", 3), ("a", "u", 0), ("a", "u", 1), ("b", "t", 0)]


def _snapshot() -> LagSnapshot:
    rows = compute_rows(
        [
            part(committed=7, end=10, head_ts_ms=NOW - 2_000, partition=0),
            part(committed=None, end=4, head_ts_ms=None, partition=1),
        ],
        NOW,
    )
    return LagSnapshot(rows, [GroupInfo("g", "STABLE", 2)], {("t", 0): 10, ("t", 1): 4}, NOW)


def _scrape(collector: LagCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_collector_exports_rows_and_omits_unknowns() -> None:
    text = _scrape(LagCollector(_snapshot, min_interval_s=0))
    assert 'guardstream_consumergroup_lag{group="g",partition="0",topic="t"} 3.0' in text
    assert 'guardstream_consumergroup_lag{group="g",partition="1",topic="t"} 4.0' in text
    assert 'guardstream_consumergroup_lag_seconds{group="g",partition="0",topic="t"} 2.0' in text
    # Unknown time lag and a missing commit are absent series, not a misleading 0.
    assert 'lag_seconds{group="g",partition="1"' not in text
    assert 'committed_offset{group="g",partition="0",topic="t"} 7.0' in text
    assert 'committed_offset{group="g",partition="1"' not in text
    assert 'guardstream_partition_end_offset{partition="1",topic="t"} 4.0' in text
    assert 'guardstream_consumergroup_members{group="g"} 2.0' in text
    assert "guardstream_lag_exporter_up 1.0" in text


def test_collector_reports_down_and_no_stale_lag_when_the_broker_fails() -> None:
    calls = {"n": 0}

    def query() -> LagSnapshot:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("broker unreachable")
        return _snapshot()

    collector = LagCollector(query, min_interval_s=0)
    assert "guardstream_lag_exporter_up 1.0" in _scrape(collector)
    text = _scrape(collector)
    assert "guardstream_lag_exporter_up 0.0" in text
    assert "guardstream_consumergroup_lag{" not in text
    assert "guardstream_lag_exporter_scrape_duration_seconds" in text


def test_collector_reuses_a_query_younger_than_the_interval() -> None:
    now = {"t": 0.0}
    calls = {"n": 0}

    def query() -> LagSnapshot:
        calls["n"] += 1
        return _snapshot()

    collector = LagCollector(query, min_interval_s=15, clock=lambda: now["t"])
    _scrape(collector)
    now["t"] = 14.9
    _scrape(collector)
    assert calls["n"] == 1
    now["t"] = 15.0
    _scrape(collector)
    assert calls["n"] == 2


@pytest.mark.parametrize("interval", [0.0, 15.0])
def test_failed_query_is_retried_on_the_next_scrape(interval: float) -> None:
    calls = {"n": 0}

    def query() -> LagSnapshot:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("not yet")
        return _snapshot()

    collector = LagCollector(query, min_interval_s=interval, clock=lambda: 0.0)
    assert "guardstream_lag_exporter_up 0.0" in _scrape(collector)
    assert "guardstream_lag_exporter_up 1.0" in _scrape(collector)


def test_collector_exports_lag_status_once_the_window_is_full() -> None:
    # Partition 0 has a frozen commit with lag and the group has members: STALL once judged.
    # Partition 1 has never been committed on: OK, whatever its lag.
    now = {"t": 0.0}
    taken = {"ms": NOW}

    def query() -> LagSnapshot:
        snap = _snapshot()
        return LagSnapshot(snap.rows, snap.groups, snap.end_offsets, taken["ms"])

    tracker = StatusTracker(window=2, interval_s=30)
    collector = LagCollector(query, min_interval_s=15, clock=lambda: now["t"], tracker=tracker)
    text = _scrape(collector)
    assert 'guardstream_consumergroup_lag_status{group="g",partition="0",topic="t"} 0.0' in text
    assert 'guardstream_consumergroup_status{group="g"} 0.0' in text
    # A reused query is not a sample, however much time the snapshot claims has passed.
    now["t"], taken["ms"] = 1.0, NOW + 60_000
    assert 'lag_status{group="g",partition="0",topic="t"} 0.0' in _scrape(collector)
    now["t"] = 15.0
    text = _scrape(collector)
    assert 'guardstream_consumergroup_lag_status{group="g",partition="0",topic="t"} 3.0' in text
    assert 'guardstream_consumergroup_lag_status{group="g",partition="1",topic="t"} 0.0' in text
    assert 'guardstream_consumergroup_status{group="g"} 3.0' in text


def test_collector_without_tracker_exports_no_status() -> None:
    assert "lag_status" not in _scrape(LagCollector(_snapshot, min_interval_s=0))


def test_judge_reads_members_and_commits_from_the_snapshot() -> None:
    snap = _snapshot()
    tracker = StatusTracker(window=2, interval_s=0)
    judge(tracker, snap)
    stopped = LagSnapshot(snap.rows, [GroupInfo("g", "EMPTY", 0)], snap.end_offsets, NOW + 1)
    statuses = judge(tracker, stopped)
    assert statuses[("g", "t", 0)].status is LagStatus.STOP
    assert statuses[("g", "t", 1)].observations == 0  # no commit: nothing to judge
