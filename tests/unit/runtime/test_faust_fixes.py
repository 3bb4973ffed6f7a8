"""The recovery patch: Faust's end-of-recovery runs with flow control suspended."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

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


def test_a_batch_fetched_across_a_rebalance_or_a_seek_is_dropped_and_fetched_again() -> None:
    batch = {"usage[0]": ["record 94", "record 95"]}

    async def noop_seek(self: Any) -> None:
        return None

    seek = faust_fixes._counting_seeks(noop_seek)

    def fetch_while(meanwhile: Any) -> Any:
        async def fetch(self: Any, timeout: float) -> tuple[Any, Any]:
            await meanwhile(self)  # what happens while the consumer thread fetches
            return dict(batch), {"usage[0]"}

        return faust_fixes._fresh_batches(fetch)

    async def nothing(c: Any) -> None:
        return None

    async def rebalance(c: Any) -> None:
        c.app.consumer_generation_id += 1

    async def scenario() -> list[Any]:
        consumer = SimpleNamespace(app=SimpleNamespace(consumer_generation_id=2))
        return [(await fetch_while(what)(consumer, 1.0))[0] for what in (nothing, rebalance, seek)]

    delivered, after_rebalance, after_seek = asyncio.run(scenario())
    assert delivered == batch
    assert after_rebalance == {} and after_seek == {}  # fetched again from the new position


def test_apply_counts_seeks_and_guards_the_fetcher() -> None:
    from faust.transport.consumer import Consumer

    faust_fixes.apply()
    assert Consumer._wait_next_records.__name__ == "without_stale"
    assert Consumer.perform_seek.__name__ == Consumer.seek.__name__ == "counted"
