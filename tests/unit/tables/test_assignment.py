"""A table's source partitions must come with their changelog partitions."""

from __future__ import annotations

from faust.types import TP

from guardstream.tables.assignment import unrestored

CHANGELOG_OF = {"p.metering": "app-meter-changelog", "p.admitted": "app-dispatch-changelog"}


def test_sources_assigned_with_their_changelog_partitions_are_restored() -> None:
    actives = [TP("p.metering", p) for p in (0, 2)] + [TP("app-meter-changelog", p) for p in (0, 2)]
    assert unrestored([*actives, TP("p.requests", 1)], CHANGELOG_OF) == {}


def test_sources_assigned_without_their_changelog_partition_are_named() -> None:
    # What Faust assigns when the leader's metadata lacks the changelog: the sources alone.
    actives = [TP("p.metering", p) for p in range(4)] + [TP("app-meter-changelog", 1)]
    actives += [TP("p.admitted", 3)]
    assert unrestored(actives, CHANGELOG_OF) == {"p.metering": [0, 2, 3], "p.admitted": [3]}
