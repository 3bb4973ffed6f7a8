"""Dispatch table entries read back as written."""

from __future__ import annotations

import pytest

from guardstream.dispatch import journal


def test_entries_round_trip() -> None:
    assert journal.read(None) == journal.Entry()
    assert journal.read(journal.calling()).calling
    entry = journal.read(journal.done(b"\x00completion bytes", b"\x00usage"))
    assert entry.done and not entry.calling
    assert (entry.completion, entry.usage) == (b"\x00completion bytes", b"\x00usage")
    nothing_to_charge = journal.read(journal.done(b"c", None))
    assert nothing_to_charge.completion == b"c" and nothing_to_charge.usage is None


def test_a_foreign_value_is_refused() -> None:
    with pytest.raises(ValueError, match="not a dispatch table entry"):
        journal.read(b"x-something-else")
