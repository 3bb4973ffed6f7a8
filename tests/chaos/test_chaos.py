"""Faults under steady load on a three-broker cluster: nothing lost, nothing charged twice.

Each scenario (`guardstream.chaos.scenarios`, also `guardstream chaos SCENARIO`) runs two
workers, sends requests at a steady rate with a usage report for every admission as it
arrives, injects its fault part-way, and applies the kill tests' exactness checks. Each
prints what the fault cost: the time to recover, the longest stall, the largest backlog and
the longest wait for a decision.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guardstream.chaos.scenarios import SCENARIOS, run_scenario
from guardstream.config.settings import Settings

from .conftest import SCALE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_nothing_is_lost_or_charged_twice_when(
    name: str, cluster: Settings, tmp_path: Path
) -> None:
    result = run_scenario(cluster, name, tmp_path, scale=SCALE)
    print(
        f"\n[chaos] {result.fault}: {result.requests} requests at {result.rate:.0f}/s, "
        f"lost {result.lost}, charged twice {result.double_charged}, "
        f"recovered in {result.recover_s:.1f} s, longest stall {result.longest_stall_s:.1f} s, "
        f"largest backlog {result.max_backlog}, longest wait {result.max_wait_s:.1f} s"
    )
    assert (result.lost, result.double_charged) == (0, 0), result.problems
    assert not result.problems, f"{result.problems}; logs in {tmp_path}"
