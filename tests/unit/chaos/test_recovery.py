"""The time to recover, read from the backlog samples a steady load takes."""

from __future__ import annotations

from typing import Any

from guardstream.chaos.exactness import SteadyLoad


def _load(samples: list[tuple[float, int]], fault_at: float, lifted_at: float | None = None) -> Any:
    load = SteadyLoad(object(), rate=10.0)  # type: ignore[arg-type]  # never started
    load.samples, load.fault_at, load.lifted_at = samples, fault_at, lifted_at
    return load


def test_an_instant_fault_recovers_when_the_backlog_is_back_to_its_level_before() -> None:
    # 25 before the fault (above two seconds of load, 20), then a rise, a dip, a second rise.
    samples = [(0.0, 25), (1.0, 20), (2.0, 60), (3.0, 90), (4.0, 24), (5.0, 40), (6.0, 10)]
    assert _load(samples, fault_at=1.5).recover_s() == 5.0 + SteadyLoad.SAMPLE_S - 1.5


def test_a_lasting_fault_is_timed_from_its_end() -> None:
    samples = [(0.0, 5), (10.0, 300), (20.0, 600), (21.0, 100), (22.0, 15)]
    assert _load(samples, fault_at=5.0, lifted_at=20.0).recover_s() == 1.0 + SteadyLoad.SAMPLE_S


def test_a_fault_the_backlog_never_shows_recovers_at_once() -> None:
    assert _load([(0.0, 5), (1.0, 19), (2.0, 3)], fault_at=0.5).recover_s() == 0.0
    assert _load([(0.0, 5)], fault_at=None).recover_s() == 0.0  # type: ignore[arg-type]
