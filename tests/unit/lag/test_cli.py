"""`guardstream lag --watch`: the status column fills in as samples arrive (no broker)."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from guardstream.cli import lag as lag_cli
from guardstream.config.settings import Settings
from guardstream.lag.reader import GroupInfo, LagReader, LagSnapshot, PartitionOffsets, compute_rows

NOW = 1_700_000_000_000


class FrozenGroup:
    """A reader whose group has members but never moves past offset 7 of 10."""

    def __init__(self) -> None:
        self.settings = Settings(lag_status_window=2, lag_status_interval_s=0)
        self.calls = 0

    def snapshot(self, groups: list[str] | None = None) -> LagSnapshot:
        self.calls += 1
        at = NOW + self.calls * 1000
        rows = compute_rows([PartitionOffsets("g", "t", 0, 7, 0, 10, at - 500)], at)
        return LagSnapshot(rows, [GroupInfo("g", "STABLE", 1)], {("t", 0): 10}, at)


def _run(monkeypatch: pytest.MonkeyPatch, rounds: int, json_lines: bool) -> FrozenGroup:
    reader = FrozenGroup()
    sleeps = {"n": 0}

    def sleep(_: float) -> None:
        sleeps["n"] += 1
        if sleeps["n"] >= rounds:
            raise KeyboardInterrupt

    monkeypatch.setattr(lag_cli.time, "sleep", sleep)
    lag_cli._watch(cast(LagReader, reader), None, json_lines)
    return reader


def test_watch_json_reports_unjudged_then_stall(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(monkeypatch, rounds=2, json_lines=True)
    lines: list[dict[str, Any]] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["status"], x["status_samples"]) for x in lines] == [("OK", 1), ("STALL", 2)]
    assert lines[-1]["lag"] == 3 and lines[-1]["committed"] == 7


def test_watch_table_shows_partition_and_group_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(monkeypatch, rounds=2, json_lines=False)
    out = capsys.readouterr().out
    assert "OK (1/2)" in out  # first round: not judged yet
    assert out.count("STALL") == 2  # second round: the partition and its group
