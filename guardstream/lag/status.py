"""Lag status: judging a consumer by how its committed offsets move, the way Burrow does.

A lag threshold in records or seconds has to be tuned per group and still fires on every
burst; Burrow (linkedin/Burrow, wiki "Consumer Lag Evaluation Rules" and its caching
evaluator) instead looks at a sliding window of the last N observations of each partition
and asks whether the consumer is keeping up, falling behind, or not moving at all. This
module is that judgement as plain Python: no Kafka, no Faust, no clock of its own.

Observations, not commits
-------------------------
Burrow reads ``__consumer_offsets`` and so sees every commit with its commit time, including
commits that repeat the same offset. The Admin API the lag exporter uses returns only the
current committed offset, without a commit time. So here the window holds *samples*: the
committed offset, the lag and the group's member count, taken at most once per
``interval_s`` per partition (`StatusTracker`). With the defaults (10 samples, 30 s apart)
the window spans about 5 minutes, close to Burrow's 10 commits at a 60 s commit interval.

Burrow tells STOP ("no commits for longer than the window spans") from STALL ("commits that
repeat the same offset") by commit timestamps, which samples do not carry. What the two
mean to an operator is "nobody is consuming" and "a consumer is there but does not move";
the group's member count says exactly that. So a frozen offset is STOP when the group has
no members and STALL when it has some.

Rules, per partition, first match wins
--------------------------------------
0. Fewer than `window` samples (exporter just started, partition just created, the group
   has never committed on it) → OK. Burrow likewise reports OK for an incomplete window; an
   unjudged partition must not page anyone, and the time-lag alerts cover it meanwhile.
   `PartitionStatus.observations` tells a judged OK from an unjudged one.
1. Current lag is 0 → OK (Burrow: a partition with no lag is never in error).
2. The committed offset went backwards somewhere in the window and has not yet climbed
   back to where it was before → REWIND. Burrow checks this only when the lag was never
   zero in the window, which hides the commonest rewind (a caught-up group reset to the
   earliest offset) for a whole window; Burrow PR #716 argues the same. Checking it before
   rule 3 catches it on the next sample.
3. The lag was 0 in any sample of the window → OK (Burrow rule 1).
4. The committed offset did not change over the window (lag > 0 throughout) → STOP if the
   group has no members now, else STALL (see above).
5. The offset moved but the lag never decreased from one sample to the next → WARN
   (Burrow rule 5: consuming, but slower than the producers).
6. Otherwise → OK.

A group's status is its worst partition's. The numeric values order the statuses by
severity, as Burrow's constants do, so ``max`` is "worst" here and in PromQL alike. Unlike
Burrow, a group is not capped at a generic ERR: STOP, STALL and REWIND each call for a
different action, so the group status keeps the partition's.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

DEFAULT_WINDOW = 10
DEFAULT_INTERVAL_S = 30.0

# (group, topic, partition), the exporter's label scheme.
PartitionKey = tuple[str, str, int]


class LagStatus(IntEnum):
    """A partition's (or group's) status; larger is worse, and the value is the metric's."""

    OK = 0
    WARN = 1
    STOP = 2
    STALL = 3
    REWIND = 4


@dataclass(frozen=True)
class Observation:
    """One sample of a partition: committed offset, lag, group members, and when (ms)."""

    offset: int
    lag: int
    members: int
    at_ms: int


@dataclass(frozen=True)
class PartitionStatus:
    """The judgement of one partition and how many samples (of `window`) it rests on."""

    status: LagStatus
    observations: int
    window: int

    @property
    def judged(self) -> bool:
        """Whether the window was full, i.e. the status is a judgement, not a default."""
        return self.observations >= self.window

    def label(self) -> str:
        """The status name, with the fill of the window while it is not yet judged."""
        if self.judged:
            return self.status.name
        return f"{self.status.name} ({self.observations}/{self.window})"


def evaluate(window: Sequence[Observation], current: Observation, size: int) -> LagStatus:
    """The status of a partition from its sampled `window` and its `current` reading.

    `current` is the newest reading, which may be more recent than the last sample (the
    exporter reads more often than it samples); like Burrow's current lag it decides rule 1.
    """
    if len(window) < size:
        return LagStatus.OK
    if current.lag == 0:
        return LagStatus.OK
    if _unrecovered_rewind(window):
        return LagStatus.REWIND
    if any(o.lag == 0 for o in window):
        return LagStatus.OK
    if all(o.offset == window[0].offset for o in window):
        return LagStatus.STOP if current.members == 0 else LagStatus.STALL
    if all(b.lag >= a.lag for a, b in itertools.pairwise(window)):
        return LagStatus.WARN
    return LagStatus.OK


def _unrecovered_rewind(window: Sequence[Observation]) -> bool:
    last_drop = None
    for i, (a, b) in enumerate(itertools.pairwise(window), start=1):
        if b.offset < a.offset:
            last_drop = i
    if last_drop is None:
        return False
    before = max(o.offset for o in window[:last_drop])
    return window[-1].offset < before


def worst(statuses: Sequence[LagStatus]) -> LagStatus:
    """The worst of some statuses (OK for none)."""
    return max(statuses, default=LagStatus.OK)


def group_statuses(statuses: Mapping[PartitionKey, PartitionStatus]) -> dict[str, LagStatus]:
    """Each group's status: its worst partition's."""
    by_group: dict[str, list[LagStatus]] = {}
    for (group, _, _), status in statuses.items():
        by_group.setdefault(group, []).append(status.status)
    return {group: worst(found) for group, found in sorted(by_group.items())}


class StatusTracker:
    """Keeps each partition's sliding window of samples and judges it on every update.

    Memory is bounded by the partitions reported times `window`: a partition missing from an
    update (group deleted, topic removed) loses its history, and so does one whose group
    has no commit on it any more (offsets expired or deleted), which starts over unjudged.
    """

    def __init__(
        self, window: int = DEFAULT_WINDOW, interval_s: float = DEFAULT_INTERVAL_S
    ) -> None:
        if window < 2:
            raise ValueError("a lag status window needs at least 2 samples to see movement")
        self.window = window
        self.interval_ms = interval_s * 1000.0
        self._history: dict[PartitionKey, deque[Observation]] = {}

    def update(
        self, readings: Mapping[PartitionKey, Observation | None]
    ) -> dict[PartitionKey, PartitionStatus]:
        """Record one reading per partition (None = no commit) and judge every partition.

        A reading joins the window only when `interval_s` has passed since the partition's
        last sample, so how often Prometheus scrapes does not change how long the window is.
        """
        for key in set(self._history) - set(readings):
            del self._history[key]
        out: dict[PartitionKey, PartitionStatus] = {}
        for key, reading in sorted(readings.items()):
            if reading is None:
                self._history.pop(key, None)
                out[key] = PartitionStatus(LagStatus.OK, 0, self.window)
                continue
            history = self._history.setdefault(key, deque(maxlen=self.window))
            if not history or reading.at_ms - history[-1].at_ms >= self.interval_ms:
                history.append(reading)
            status = evaluate(history, reading, self.window)
            out[key] = PartitionStatus(status, len(history), self.window)
        return out
