"""Offset continuity of a stage's input: notice records the consumer never handed over.

Within one consumer generation a partition's offsets normally arrive one after another:
after offset n comes n + 1 (or a replay of something lower). faust-streaming has dropped
records on rebalance paths (see `guardstream.faust_fixes`), which shows as a record arriving
ahead of the next expected offset; the first record of a partition after an assignment
should be its committed offset. A hole is only a suspect: transaction markers (clients that
produce in transactions) and compaction skip offsets too, so `guardstream.continuity` asks
the broker whether records really sit in it before reporting anything.

Detection only. Records that never reached the agent were never acknowledged, and a commit
must start exactly at the committed offset (`faust_fixes`), so the partition's commits stop
before them and `continuity.CommitHoles` reads them again; Faust's own hole filling (for
transaction markers) is the one path that could still commit past them, which is why this
reports rather than assumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TP = tuple[str, int]


@dataclass
class GapTracker:
    """Next expected offset per partition within one consumer generation."""

    generation: int = -1
    expected: dict[TP, int] = field(default_factory=dict)
    reported: set[tuple[TP, int]] = field(default_factory=set)
    # The highest offset this process's agent has received per partition, kept across
    # generations: after a rebalance faust resumes from the committed offset but does not
    # hand over again what the agent already received (its read offset is past it), so a
    # record received before the rebalance and committed after it is no hole.
    received: dict[TP, int] = field(default_factory=dict)

    def begin(self, generation: int) -> None:
        """Forget everything learnt under an older consumer generation."""
        if generation != self.generation:
            self.generation = generation
            self.expected.clear()
            self.reported.clear()

    def see(self, generation: int, tp: TP, offset: int, start: int | None) -> int:
        """Note a record; return how many offsets before it never arrived (0: none).

        `start` is the committed offset the consumer began the partition at, if known; it is
        consulted only for the partition's first record in this generation.
        """
        self.begin(generation)
        expected = self.expected.get(tp, self._start(tp, start))
        self.expected[tp] = max(offset + 1, expected or 0)
        self.received[tp] = max(offset, self.received.get(tp, offset))
        if expected is None or offset <= expected or (tp, expected) in self.reported:
            return 0
        self.reported.add((tp, expected))
        return offset - expected

    def stranded(self, tp: TP, read_offset: int | None, start: int | None) -> int:
        """For an idle stage: how many records the consumer read past the next expected one.

        Called only when the stage has received nothing for a while, so nothing of `tp` can
        still be queued. Faust sets its read offset to the committed offset on a seek, so
        "read == expected" is ambiguous and not counted (a single record lost at the very
        tail shows once the next record arrives). Each hole is reported once.
        """
        expected = self.expected.get(tp, self._start(tp, start))
        if expected is None or read_offset is None or read_offset <= expected:
            return 0
        if (tp, expected) in self.reported:
            return 0
        self.reported.add((tp, expected))
        return read_offset - expected + 1

    def _start(self, tp: TP, committed: int | None) -> int | None:
        """Where a partition's first record in a generation should be."""
        seen = self.received.get(tp)
        if committed is None or seen is None:
            return committed
        return max(committed, seen + 1)
