"""The input-continuity tracker: holes are counted once; replays and new generations are not."""

from guardstream.runtime.gaps import GapTracker

TP = ("t", 0)


def test_contiguous_offsets_have_no_gap() -> None:
    g = GapTracker()
    assert [g.see(1, TP, o, 10) for o in range(10, 20)] == [0] * 10


def test_a_record_ahead_of_the_committed_offset_is_a_head_gap() -> None:
    g = GapTracker()
    assert g.see(1, TP, 12, 10) == 2
    assert g.see(1, TP, 13, 10) == 0


def test_a_hole_in_the_middle_is_counted_once() -> None:
    g = GapTracker()
    g.see(1, TP, 0, 0)
    assert g.see(1, TP, 5, 0) == 4
    assert g.see(1, TP, 6, 0) == 0


def test_replays_after_a_seek_back_are_not_gaps() -> None:
    g = GapTracker()
    for o in range(0, 5):
        g.see(1, TP, o, 0)
    assert g.see(1, TP, 2, 0) == 0  # re-delivered after a seek to an older offset
    assert g.see(1, TP, 5, 0) == 0


def test_a_new_generation_starts_over_from_the_committed_offset() -> None:
    g = GapTracker()
    g.see(1, TP, 0, 0)
    assert g.see(2, TP, 100, 100) == 0  # another worker processed 1..99 meanwhile
    assert g.see(2, ("t", 1), 7, None) == 0  # never committed: nothing to compare with


def test_an_idle_partition_read_past_its_next_offset_is_stranded_once() -> None:
    g = GapTracker()
    g.begin(1)
    assert g.stranded(TP, 10, 10) == 0  # after a seek faust reports read == committed
    assert g.stranded(TP, 12, 10) == 3  # 10, 11 and 12 were read and never arrived
    assert g.stranded(TP, 12, 10) == 0  # reported already
    g.see(1, ("t", 1), 5, 5)
    assert g.stranded(("t", 1), 5, 5) == 0  # processed up to what was read


def test_records_received_before_a_rebalance_are_not_holes_after_it() -> None:
    g = GapTracker()
    for o in range(520, 526):
        g.see(1, TP, o, 520)  # received 520..525; only 520..524 committed by the rebalance
    assert g.see(2, TP, 526, 525) == 0  # faust does not hand 525 over again: not lost
    assert g.see(3, TP, 530, 527) == 3  # 527..529 were never received: a hole


def test_a_partition_back_from_another_worker_uses_the_higher_committed_offset() -> None:
    g = GapTracker()
    g.see(1, TP, 10, 10)
    assert g.see(2, TP, 50, 40) == 10  # the other worker committed 40: 40..49 are missing
