"""Holes that stop a partition's commits are settled: filled when the broker holds nothing
there, read again when it holds records."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.types import TP as TopicPartition
from intervaltree import IntervalTree

from guardstream.config.settings import Settings
from guardstream.runtime import faust_fixes
from guardstream.runtime.continuity import HOLE_GRACE_S, CommitHoles

TP = TopicPartition("gs.usage", 0)


def _world(records_in_hole: int, noticed_s_ago: float) -> tuple[CommitHoles, Any, list[Any]]:
    seeks: list[Any] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp, offset))

    consumer = SimpleNamespace(
        _acked=defaultdict(list, {TP: [6, 7]}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {TP: 5}),
        assignment=lambda: {TP},
        seek=seek,
    )
    faust_fixes.holes(consumer)[TP] = (5, 6, time.monotonic() - noticed_s_ago)
    app = SimpleNamespace(_consumer=consumer, rebalancing=False, in_recovery=False)
    holes = CommitHoles(app, Settings())  # type: ignore[arg-type]
    holes.broker = SimpleNamespace(count=lambda topic, p, first, end: records_in_hole)  # type: ignore[assignment]
    return holes, consumer, seeks


def test_a_hole_holding_records_is_read_again() -> None:
    holes, consumer, seeks = _world(records_in_hole=1, noticed_s_ago=HOLE_GRACE_S + 1)
    asyncio.run(holes.settle())
    assert seeks == [(TP, 5)]
    assert faust_fixes.holes(consumer) == {}


def test_a_hole_holding_no_records_is_filled_and_commits_resume() -> None:
    holes, consumer, seeks = _world(records_in_hole=0, noticed_s_ago=HOLE_GRACE_S + 1)
    asyncio.run(holes.settle())
    assert seeks == []
    acked = consumer._acked[TP]
    assert faust_fixes.next_commit(acked, consumer._gap[TP], 5) == (8, [5, 6, 7], None)


def test_a_young_or_closed_hole_is_left_alone() -> None:
    holes, consumer, seeks = _world(records_in_hole=1, noticed_s_ago=0.0)
    asyncio.run(holes.settle())
    assert seeks == [] and TP in faust_fixes.holes(consumer)  # within the grace period
    holes, consumer, seeks = _world(records_in_hole=1, noticed_s_ago=HOLE_GRACE_S + 1)
    consumer._acked[TP].append(5)  # acknowledged late: the hole closed by itself
    asyncio.run(holes.settle())
    assert seeks == [] and faust_fixes.holes(consumer) == {}
