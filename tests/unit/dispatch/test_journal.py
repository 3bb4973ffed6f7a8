"""Dispatch table entries read back as written, and are deleted after the window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardstream.dispatch import journal
from guardstream.dispatch.journal import Origin

HERE = Origin(3, 41)


def test_entries_round_trip() -> None:
    assert journal.read(None) == journal.Entry()
    calling = journal.read(journal.calling(HERE))
    assert calling.calling and calling.origin == HERE and not calling.done
    entry = journal.read(journal.done(HERE, b"\x00completion bytes", b"\x00usage"))
    assert entry.done and not entry.calling and entry.origin == HERE
    assert (entry.completion, entry.usage) == (b"\x00completion bytes", b"\x00usage")
    nothing_to_charge = journal.read(journal.done(HERE, b"c", None))
    assert nothing_to_charge.completion == b"c" and nothing_to_charge.usage is None
    settled = journal.read(journal.settled())
    assert settled.settled and not settled.done and not settled.calling


def test_a_foreign_value_is_refused() -> None:
    with pytest.raises(ValueError, match="not a dispatch table entry"):
        journal.read(b"x-something-else")
    with pytest.raises(ValueError, match="not a dispatch table entry"):
        journal.read(b"d\x00")  # cut short


def test_entries_go_once_the_window_has_passed_in_record_time() -> None:
    table: dict[bytes, bytes] = {}
    for i, ts in enumerate((1_000, 2_000, 3_000)):
        key = journal.entry_key(f"decision-{i}")
        table[key] = journal.calling(Origin(0, i))
        journal.track(table, 0, key, ts)
    assert journal.collect(table, 0, now_ms=3_000, window_ms=1_000) == 2
    assert journal.entry_key("decision-0") not in table
    assert journal.entry_key("decision-1") not in table
    assert journal.entry_key("decision-2") in table
    assert journal.collect(table, 0, now_ms=3_500, window_ms=1_000) == 0
    # Only the kept entry, its queue item and the queue's head are left.
    assert len(table) == 3


def test_partitions_keep_queues_of_their_own() -> None:
    table: dict[bytes, bytes] = {}
    for p in (0, 1):
        key = journal.entry_key(f"decision-{p}")
        table[key] = journal.calling(Origin(p, 0))
        journal.track(table, p, key, 1_000)
    assert journal.collect(table, 1, now_ms=10_000, window_ms=1_000) == 1
    assert journal.entry_key("decision-0") in table
    assert journal.entry_key("decision-1") not in table


@given(st.lists(st.integers(0, 50), min_size=1, max_size=80))
def test_collecting_at_every_record_keeps_up_and_leaves_nothing_behind(gaps: list[int]) -> None:
    table: dict[bytes, bytes] = {}
    now = 0
    window = 100
    created: list[int] = []
    for i, gap in enumerate(gaps):
        now += gap
        journal.collect(table, 0, now, window)
        key = journal.entry_key(f"d{i}")
        table[key] = journal.calling(Origin(0, i))
        journal.track(table, 0, key, now)
        created.append(now)
        # Every entry younger than the window is still there.
        for j, ts in enumerate(created):
            if ts + window > now:
                assert journal.entry_key(f"d{j}") in table
    # Long after: records keep coming, and everything old goes.
    for _ in range(len(gaps)):
        now += window
        journal.collect(table, 0, now, window)
    assert [k for k in table if not k.startswith(b"h:")] == []
