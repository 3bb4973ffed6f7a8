"""A per-record time budget for the ingest steps, checked between steps.

Every step is linear in the record's size, but a linear step over a megabyte of the most
expensive text (thousands of phone-number candidates, say) still costs real time, and
Python cannot interrupt a running step. So the judge checks a deadline between steps and
between messages: a record still being worked on when the budget is spent is refused
(`PROCESSING_BUDGET_EXCEEDED`) instead of holding the partition and the consumer's
heartbeats, and the overrun is bounded by the longest single step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


class OverBudget(Exception):
    """The record's time budget ran out; `step` names the step that found out."""

    def __init__(self, step: str, budget_ms: int) -> None:
        super().__init__(f"over the {budget_ms} ms budget at {step}")
        self.step = step
        self.budget_ms = budget_ms


@dataclass(frozen=True)
class Deadline:
    """When the record's budget runs out, on the monotonic clock."""

    at: float
    budget_ms: int

    @classmethod
    def after(cls, budget_ms: int) -> Deadline:
        """A deadline `budget_ms` from now."""
        return cls(time.monotonic() + budget_ms / 1000, budget_ms)

    def extended(self, seconds: float) -> Deadline:
        """The same budget with `seconds` more (time that is not this record's to pay)."""
        return Deadline(self.at + seconds, self.budget_ms) if seconds else self

    def check(self, step: str) -> None:
        """Raise OverBudget once the deadline has passed."""
        if time.monotonic() > self.at:
            raise OverBudget(step, self.budget_ms)


# For callers that impose no budget (unit tests, benchmarks of the detectors alone).
NO_DEADLINE = Deadline(float("inf"), 0)
