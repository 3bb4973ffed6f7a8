"""The recovery patch: Faust's end-of-recovery runs with flow control suspended."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
from aiokafka.coordinator.protocol import ConsumerProtocol
from faust.tables.recovery import Recovery
from mode.utils.queues import FlowControlEvent

from guardstream.runtime import faust_fixes


def test_the_end_of_recovery_runs_with_flow_suspended_and_faust_resumes_it() -> None:
    flow = FlowControlEvent()
    flow.resume()
    seen: list[bool] = []

    async def original(self: Any, generation_id: int = 0) -> None:
        seen.append(self.app.flow_control.is_active())  # a fetched record would wait now
        self.app.flow_control.resume()  # what Faust does at its end

    patched = faust_fixes._suspending(original)
    asyncio.run(patched(SimpleNamespace(app=SimpleNamespace(flow_control=flow)), 3))
    assert seen == [False] and flow.is_active()


def test_apply_patches_both_recovery_endings_once() -> None:
    faust_fixes.apply()
    first = {name: getattr(Recovery, name) for name in faust_fixes._METHODS}
    faust_fixes.apply()
    assert {name: getattr(Recovery, name) for name in faust_fixes._METHODS} == first
    assert all(m.__name__ == "without_loss" for m in first.values())


def _records(tp: str, first: int, n: int) -> list[Any]:
    return [SimpleNamespace(offset=first + i) for i in range(n)]


def test_records_that_do_not_start_where_a_seek_put_them_are_dropped_and_fetched_again() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        seeks: list[tuple[str, int]] = []

        async def base_seek(self: Any, tp: str, offset: int) -> None:
            seeks.append((tp, offset))

        async def base_perform_seek(self: Any) -> None:
            self._read_offset.update({"usage[0]": 120, "usage[1]": 7, "usage[2]": None})

        consumer = SimpleNamespace(
            _read_offset={},
            _active_partitions=None,
            _buffered_partitions=set(),
            log=SimpleNamespace(info=lambda *a: None),
        )
        seek = faust_fixes._noting_seek(base_seek)
        consumer.seek = lambda tp, offset: seek(consumer, tp, offset)
        perform_seek = faust_fixes._noting_perform_seek(base_perform_seek)

        async def fetch(self: Any, timeout: float) -> tuple[Any, Any]:
            # While the consumer thread fetched, a rebalance's recovery sought every
            # partition to its committed offset.
            await perform_seek(self)
            return {
                "usage[0]": _records("usage[0]", 141, 3),  # drained before the seek: stale
                "usage[1]": _records("usage[1]", 7, 2),  # drained after it: fresh
                "usage[2]": _records("usage[2]", 50, 1),  # no committed offset: unknown
            }, None

        async def plain(self: Any, timeout: float) -> tuple[Any, Any]:
            return {"usage[0]": _records("usage[0]", 300, 1)}, None

        got, _ = await faust_fixes._fresh_batches(fetch)(consumer, 1.0)
        # No seek during the next fetch: whatever it returns is kept.
        later, _ = await faust_fixes._fresh_batches(plain)(consumer, 1.0)
        return [sorted(got), seeks], [later]

    (kept, seeks), (later,) = asyncio.run(scenario())
    assert kept == ["usage[1]", "usage[2]"]
    assert seeks == [("usage[0]", 120)]  # fetched again from the committed offset
    assert list(later) == ["usage[0]"]


def test_apply_notes_seeks_and_guards_the_fetcher() -> None:
    from faust.transport.consumer import Consumer

    faust_fixes.apply()
    assert Consumer._wait_next_records.__name__ == "without_stale"
    assert Consumer.perform_seek.__name__ == "noted_perform_seek"
    assert Consumer.seek.__name__ == "noted_seek"
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert AIOKafkaConsumerThread._fetch_records.__name__ == "fetch_records"


def test_a_commit_starts_exactly_at_the_committed_offset() -> None:
    from intervaltree import IntervalTree

    # Everything from the committed offset acknowledged: committed up to the first hole.
    acked = [7, 5, 6, 9]
    assert faust_fixes.next_commit(acked, IntervalTree(), committed=5) == (8, [5, 6, 7], None)
    assert acked == [9]
    # The record at the committed offset never acknowledged: Faust's own rule committed
    # past it (it lets a run start one after); here nothing is, and the hole is named.
    acked = [6, 7, 8]
    assert faust_fixes.next_commit(acked, IntervalTree(), committed=5) == (None, [], (5, 6))
    assert acked == [6, 7, 8]  # kept for when the hole is settled
    # Faust's hole filling (transaction markers) counts as acknowledged; so does a filled hole.
    gaps = IntervalTree()
    gaps.addi(5, 6)
    gaps.addi(9, 11)
    acked = [6, 7, 8, 11]
    assert faust_fixes.next_commit(acked, gaps, committed=5) == (12, [5, 6, 7, 8, 9, 10, 11], None)
    assert not gaps
    # Nothing known to check against (a partition never committed): as Faust does.
    acked = [40, 41]
    assert faust_fixes.next_commit(acked, IntervalTree(), committed=None) == (42, [40, 41], None)


def test_the_patched_consumer_notes_a_hole_until_it_closes() -> None:
    from collections import defaultdict

    from intervaltree import IntervalTree

    consumer = SimpleNamespace(
        _acked=defaultdict(list, {"tp": [6, 7]}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {"tp": 5}),
        _acked_index=defaultdict(set, {"tp": {6, 7}}),
    )
    assert faust_fixes._strict_new_offset(consumer, "tp") is None
    first, end, since = faust_fixes.holes(consumer)["tp"]
    assert (first, end) == (5, 6)
    assert faust_fixes._strict_new_offset(consumer, "tp") is None
    assert faust_fixes.holes(consumer)["tp"][2] == since  # the same hole: noticed once
    consumer._acked["tp"].append(5)  # acknowledged late
    assert faust_fixes._strict_new_offset(consumer, "tp") == 8
    assert faust_fixes.holes(consumer) == {}
    assert consumer._acked_index["tp"] == set()


def test_a_resume_keeps_queued_changelog_records_and_a_rebalance_clears_them() -> None:
    faust_fixes.apply()
    app = faust.App("resume-keeps-changelog", broker="kafka://127.0.0.1:9")  # never started
    changelog = app.tables.changelog_queue
    stream = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    for queue in (changelog, stream):
        queue.put_nowait("a record fetched before the resume")
    app.flow_control.resume()  # what recovery does after starting standbys, and at its end
    assert (changelog.qsize(), stream.qsize()) == (1, 0)
    app.flow_control.suspend()
    app.flow_control.clear()  # what a rebalance does; the changelogs are sought again after it
    assert changelog.qsize() == 0


def _member(member_id: str, topics: list[str]) -> tuple[str, bytes]:
    return member_id, ConsumerProtocol.METADATA(0, topics, b"").encode()


def test_the_group_leader_assigns_only_once_its_metadata_knows_every_subscribed_topic() -> None:
    # The first metadata answer comes from a broker that has not heard of the changelog yet;
    # the second from one that has.
    known = {"m.metering": {0, 1}}
    answers = [{}, {"m-meter-changelog": {0, 1}}]
    seen_at_assign: list[set[str]] = []

    async def refresh() -> None:
        known.update(answers.pop(0))

    client = SimpleNamespace(
        set_topics=lambda topics: None, force_metadata_update=lambda: refresh()
    )
    coordinator = SimpleNamespace(
        _subscription=SimpleNamespace(subscribed_pattern=None),
        _client=client,
        _cluster=SimpleNamespace(partitions_for_topic=known.get),
    )

    async def original(self: Any, response: Any) -> str:
        seen_at_assign.append(set(known))
        return "assigned"

    response = SimpleNamespace(
        members=[
            _member("a", ["m.metering", "m-meter-changelog"]),
            _member("b", ["m.metering", "m-meter-changelog"]),
        ]
    )
    result = asyncio.run(faust_fixes._knowing_every_topic(original)(coordinator, response))
    assert result == "assigned" and not answers
    assert seen_at_assign == [{"m.metering", "m-meter-changelog"}]


def test_the_thread_fetches_a_copy_of_the_active_partitions_and_nothing_when_none() -> None:
    async def scenario() -> tuple[Any, list[Any]]:
        asked: list[Any] = []

        async def fetch(self: Any, consumer: Any, partitions: Any, **kwargs: Any) -> Any:
            asked.append(partitions)
            return {"cl[2]": ["r"]}

        patched = faust_fixes._snapshot_fetch(fetch)
        live = {"cl[1]"}
        first = await patched(None, None, live, timeout=1.0)
        live.clear()  # Faust pauses its last active partition: aiokafka would take "all"
        second = await patched(None, None, live, timeout=1.0)
        return (first, second), asked

    (first, second), asked = asyncio.run(scenario())
    assert first == {"cl[2]": ["r"]} and second == {}
    assert asked == [{"cl[1]"}]  # a copy (the live set was emptied after), never an empty set


def test_records_of_partitions_paused_while_fetched_are_sought_back_not_skipped() -> None:
    async def scenario() -> tuple[list[str], list[tuple[str, int]]]:
        seeks: list[tuple[str, int]] = []

        async def base_seek(self: Any, tp: str, offset: int) -> None:
            seeks.append((tp, offset))

        seek = faust_fixes._noting_seek(base_seek)
        consumer = SimpleNamespace(
            _read_offset={},
            _active_partitions={"cl[1]"},
            _buffered_partitions={"usage[0]"},
            assignment=lambda: {"cl[1]", "cl[2]", "usage[0]"},
            log=SimpleNamespace(info=lambda *a: None),
        )
        consumer.seek = lambda tp, offset: seek(consumer, tp, offset)

        async def fetch(self: Any, timeout: float) -> tuple[Any, Any]:
            # A standby partition sought to 0 and paused while the thread drained it, and a
            # partition revoked meanwhile.
            return {
                "cl[1]": _records("cl[1]", 40, 2),
                "cl[2]": _records("cl[2]", 0, 3595),
                "usage[0]": _records("usage[0]", 9, 1),
                "cl[3]": _records("cl[3]", 5, 1),
            }, None

        got, _ = await faust_fixes._fresh_batches(fetch)(consumer, 1.0)
        return sorted(got), seeks

    kept, seeks = asyncio.run(scenario())
    assert kept == ["cl[1]", "usage[0]"]  # active, and buffered (Faust delivers those)
    assert seeks == [("cl[2]", 0)]  # fetched again from its first record; cl[3] is not ours
