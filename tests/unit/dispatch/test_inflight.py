"""Offsets are released in order however the calls finish."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from guardstream.dispatch.inflight import InOrder


def test_a_record_finished_early_waits_for_those_before_it() -> None:
    acks: InOrder[str] = InOrder()
    for offset in (10, 11, 12):
        acks.start("p0", offset)
    assert acks.finish("p0", 12, "c") == []
    assert acks.finish("p0", 11, "b") == []
    assert acks.in_flight() == 3
    assert acks.finish("p0", 10, "a") == ["a", "b", "c"]
    assert acks.in_flight() == 0


def test_partitions_do_not_wait_for_each_other() -> None:
    acks: InOrder[int] = InOrder()
    acks.start("p0", 5)
    acks.start("p1", 7)
    assert acks.finish("p1", 7, 7) == [7]
    acks.forget("p0")  # revoked: its record is taken up again by the next owner
    assert acks.in_flight() == 0


def test_a_repeated_delivery_is_released_with_the_first_never_taken_up_again() -> None:
    acks: InOrder[str] = InOrder()
    assert acks.start("p0", 10) and acks.start("p0", 11)
    assert not acks.start("p0", 11)  # delivered again while its call runs
    acks.repeat("p0", 11, "b again")  # held: acking it now would pass record 10
    assert acks.finish("p0", 11, "b") == []
    assert acks.finish("p0", 10, "a") == ["a", "b", "b again"]
    # Released: a later delivery (a repeat, or the partition sought back) is taken up again.
    assert acks.start("p0", 10)
    assert acks.finish("p0", 10, "a again") == ["a again"]
    assert acks.in_flight() == 0


@given(st.lists(st.integers(0, 3), min_size=1, max_size=60), st.randoms())
def test_every_record_is_released_once_in_offset_order(
    parts: list[int], rnd: random.Random
) -> None:
    acks: InOrder[tuple[int, int]] = InOrder()
    started = [(p, offset) for offset, p in enumerate(parts)]
    for p, offset in started:
        acks.start(p, offset)
    order = started[:]
    rnd.shuffle(order)
    released = [item for p, offset in order for item in acks.finish(p, offset, (p, offset))]
    assert sorted(released) == sorted(started)
    for p in set(parts):
        mine = [offset for q, offset in released if q == p]
        assert mine == sorted(mine)


def test_callers_share_flushes_but_never_one_begun_before_they_called() -> None:
    import asyncio

    from guardstream.dispatch.inflight import SharedFlush

    async def scenario() -> None:
        started: list[int] = []
        gate = asyncio.Event()

        async def flush() -> None:
            started.append(len(started))
            await gate.wait()

        shared = SharedFlush(flush)
        first = [asyncio.ensure_future(shared.wait()) for _ in range(50)]
        await asyncio.sleep(0)  # the first flush starts with these 50 waiting
        late = [asyncio.ensure_future(shared.wait()) for _ in range(50)]
        await asyncio.sleep(0)
        assert started == [0]
        gate.set()
        await asyncio.gather(*first)
        assert not any(t.done() for t in late) or started == [0, 1]
        await asyncio.gather(*late)
        assert started == [0, 1]  # two flushes for a hundred callers

        async def failing() -> None:
            raise RuntimeError("outputs lost")

        broken = SharedFlush(failing)
        results = await asyncio.gather(broken.wait(), broken.wait(), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)

    asyncio.run(scenario())


def test_entries_are_due_for_deletion_once_their_offset_is_committed() -> None:
    from guardstream.dispatch.inflight import Settled

    settled: Settled[str] = Settled()
    for offset, key in ((10, "a"), (11, "b"), (12, "c")):
        settled.taken("p0", offset, key)
    assert settled.due("p0", None) == []  # nothing committed yet
    assert settled.due("p0", 11) == ["a"]  # 11 is the next to read: 10 is settled
    assert settled.due("p0", 11) == []  # once each
    assert settled.due("p0", 13) == ["b", "c"]
    settled.taken("p1", 5, "x")
    settled.forget("p1")
    assert settled.due("p1", 100) == []
