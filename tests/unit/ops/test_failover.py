"""Reading Faust's recovery tables from a worker log (`bench failover` and the failover test)."""

from __future__ import annotations

import json

from guardstream.ops.failover import HIGHWATER_TITLE, STARTS_TITLE, recovery_table, takeover_replay

TOPIC = "app-meter-changelog"


def _table(title: str, heading: str, rows: list[tuple[str, int, int]]) -> str:
    # The shape of Faust's `terminal.logtable`, ditto marks included.
    lines = [f"[^---Recovery]: {title}:", f"+{heading}---+", "| topic | partition | offset |"]
    lines += [f"| {t} | {p} | {o} |" for t, p, o in rows]
    return "\n".join(lines)


def _json_line(message: str) -> str:
    return json.dumps({"level": "info", "logger": "faust.tables.recovery", "message": message})


def test_the_last_table_of_a_title_wins_and_ditto_marks_repeat_the_topic() -> None:
    first = _table("active offsets at start of reading", "Reading Starts At", [(TOPIC, 0, -1)])
    second = _table(
        "active offsets at start of reading",
        "Reading Starts At",
        [("other-changelog", 1, 9), (TOPIC, 2, 40), ("〃", 3, -1)],
    )
    log = "\n".join([_json_line(first), "not json {", _json_line(second)])
    assert recovery_table(log, STARTS_TITLE, TOPIC) == {2: 40, 3: -1}


def test_text_logs_are_read_too_and_replay_counts_from_the_start_offsets() -> None:
    highwaters = _table(
        "Highwater for active changelog partitions", "Highwater", [(TOPIC, 2, 99), ("〃", 3, 9)]
    )
    starts = _table(
        "active offsets at start of reading", "Reading Starts At", [(TOPIC, 2, 89), ("〃", 3, -1)]
    )
    log = f"{highwaters}\n{starts}"
    # Partition 2 lacks offsets 90-99, partition 3 all ten; a partition not held counts 0.
    assert takeover_replay(log, TOPIC, [2, 3]) == (20, 110)
    assert recovery_table(log, HIGHWATER_TITLE, TOPIC) == {2: 99, 3: 9}
    assert takeover_replay("", TOPIC, [0]) == (0, 0)
