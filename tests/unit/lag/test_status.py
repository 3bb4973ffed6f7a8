"""Lag status rules (OK / WARN / STOP / STALL / REWIND) over a window of samples."""

from __future__ import annotations

import pytest

from guardstream.lag.status import (
    LagStatus,
    Observation,
    PartitionStatus,
    StatusTracker,
    evaluate,
    group_statuses,
)

SIZE = 5


def win(offsets: list[int], lags: list[int], members: int = 1) -> list[Observation]:
    assert len(offsets) == len(lags)
    return [
        Observation(offset=o, lag=lag, members=members, at_ms=i * 30_000)
        for i, (o, lag) in enumerate(zip(offsets, lags, strict=True))
    ]


def judge(offsets: list[int], lags: list[int], members: int = 1) -> LagStatus:
    window = win(offsets, lags, members)
    return evaluate(window, window[-1], SIZE)


def test_window_not_full_is_ok_whatever_it_shows() -> None:
    # Four frozen samples with lag would be STALL with a fifth: not judged yet.
    assert judge([10] * 4, [5] * 4) is LagStatus.OK


def test_caught_up_now_is_ok_even_after_a_frozen_window() -> None:
    assert judge([10] * 5, [5, 5, 5, 5, 0]) is LagStatus.OK


def test_lag_zero_once_in_the_window_is_ok() -> None:
    assert judge([10, 10, 10, 10, 10], [0, 3, 4, 5, 6]) is LagStatus.OK
    assert judge([10, 12, 14, 16, 18], [4, 5, 0, 6, 9]) is LagStatus.OK


def test_frozen_offset_with_lag_and_members_is_stall() -> None:
    assert judge([10] * 5, [5, 6, 7, 8, 9]) is LagStatus.STALL


def test_frozen_offset_with_lag_and_no_members_is_stop() -> None:
    assert judge([10] * 5, [5] * 5, members=0) is LagStatus.STOP


def test_members_now_decide_stop_or_stall() -> None:
    window = win([10] * 5, [5] * 5, members=0)
    restarted = Observation(offset=10, lag=5, members=2, at_ms=window[-1].at_ms + 1)
    assert evaluate(window, restarted, SIZE) is LagStatus.STALL


def test_advancing_but_lag_never_decreasing_is_warn() -> None:
    assert judge([10, 20, 30, 40, 50], [5, 5, 8, 9, 9]) is LagStatus.WARN


def test_advancing_and_lag_decreasing_somewhere_is_ok() -> None:
    assert judge([10, 20, 30, 40, 50], [5, 9, 8, 9, 12]) is LagStatus.OK


def test_offset_going_back_with_lag_is_rewind() -> None:
    assert judge([100, 110, 120, 5, 15], [10, 10, 10, 125, 120]) is LagStatus.REWIND


def test_reset_of_a_caught_up_group_is_rewind_despite_earlier_zero_lag() -> None:
    # The commonest rewind: auto.offset.reset=earliest after offsets expired, or an operator
    # reset. Burrow's older order would call this OK until the zero-lag samples left.
    assert judge([100, 100, 100, 100, 0], [0, 0, 0, 0, 100]) is LagStatus.REWIND


def test_rewind_recovered_falls_back_to_the_other_rules() -> None:
    # Back past 120 (where it was before the drop) and draining: OK again.
    assert judge([100, 120, 5, 60, 130], [30, 30, 150, 95, 20]) is LagStatus.OK


def test_rewind_wins_over_a_frozen_offset() -> None:
    assert judge([100, 50, 50, 50, 50], [10, 60, 60, 60, 60]) is LagStatus.REWIND


def test_rewind_with_no_lag_now_is_ok() -> None:
    assert judge([100, 110, 5, 5, 5], [10, 10, 3, 2, 0]) is LagStatus.OK


def test_statuses_are_ordered_by_severity() -> None:
    assert list(LagStatus) == sorted(LagStatus)
    assert [s.value for s in LagStatus] == [0, 1, 2, 3, 4]


def obs(offset: int, lag: int, at_s: float, members: int = 1) -> Observation:
    return Observation(offset, lag, members, int(at_s * 1000))


KEY = ("g", "t", 0)


def test_tracker_samples_at_most_once_per_interval() -> None:
    tracker = StatusTracker(window=3, interval_s=30)
    for at in (0, 10, 20, 29):
        [status] = tracker.update({KEY: obs(10, 5, at)}).values()
    assert status == PartitionStatus(LagStatus.OK, 1, 3) and not status.judged
    assert status.label() == "OK (1/3)"
    tracker.update({KEY: obs(10, 5, 30)})
    [status] = tracker.update({KEY: obs(10, 5, 60)}).values()
    assert status == PartitionStatus(LagStatus.STALL, 3, 3) and status.judged
    assert status.label() == "STALL"


def test_tracker_judges_a_reading_between_samples_by_its_current_lag() -> None:
    tracker = StatusTracker(window=2, interval_s=30)
    tracker.update({KEY: obs(10, 5, 0)})
    assert tracker.update({KEY: obs(10, 5, 30)})[KEY].status is LagStatus.STALL
    # Caught up 5 s later: not a new sample yet, but no longer in error.
    assert tracker.update({KEY: obs(15, 0, 35)})[KEY].status is LagStatus.OK


def test_tracker_window_slides() -> None:
    tracker = StatusTracker(window=3, interval_s=0)
    for at, (offset, lag) in enumerate([(0, 0), (10, 5), (10, 5), (10, 5)]):
        status = tracker.update({KEY: obs(offset, lag, at)})[KEY]
    # The zero-lag sample has slid out: three frozen samples with lag remain.
    assert status == PartitionStatus(LagStatus.STALL, 3, 3)


def test_tracker_forgets_partitions_no_longer_reported_and_lost_commits() -> None:
    tracker = StatusTracker(window=2, interval_s=0)
    other = ("g", "t", 1)
    tracker.update({KEY: obs(10, 5, 0), other: obs(1, 1, 0)})
    statuses = tracker.update({KEY: None})
    assert statuses == {KEY: PartitionStatus(LagStatus.OK, 0, 2)}
    # Both start over: one sample each is not a judgement.
    statuses = tracker.update({KEY: obs(10, 5, 1), other: obs(1, 1, 1)})
    assert {s.observations for s in statuses.values()} == {1}


def test_partition_just_created_without_commit_is_unjudged_ok() -> None:
    tracker = StatusTracker(window=2, interval_s=0)
    assert tracker.update({KEY: None})[KEY] == PartitionStatus(LagStatus.OK, 0, 2)


def test_tracker_needs_a_window_that_can_show_movement() -> None:
    with pytest.raises(ValueError):
        StatusTracker(window=1)


def test_group_status_is_the_worst_partition() -> None:
    statuses = {
        ("a", "t", 0): PartitionStatus(LagStatus.OK, 3, 3),
        ("a", "t", 1): PartitionStatus(LagStatus.STALL, 3, 3),
        ("a", "u", 0): PartitionStatus(LagStatus.WARN, 3, 3),
        ("b", "t", 0): PartitionStatus(LagStatus.OK, 1, 3),
    }
    assert group_statuses(statuses) == {"a": LagStatus.STALL, "b": LagStatus.OK}
