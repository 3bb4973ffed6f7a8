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
