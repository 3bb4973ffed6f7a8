"""`guardstream lag` and `guardstream lag-exporter`: consumer lag in a table or as metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Annotated

import typer
from rich.table import Table

from guardstream.cli.output import console
from guardstream.config.settings import get_settings
from guardstream.lag.exporter import (
    DEFAULT_EXPORTER_PORT,
    configured_groups,
    exporter_interval,
    exporter_port,
    judge,
    serve_exporter,
    status_tracker,
)
from guardstream.lag.reader import LagReader, LagSnapshot
from guardstream.lag.status import LagStatus, PartitionKey, PartitionStatus, group_statuses

app = typer.Typer()


# Rich styles per status, matching the Lag dashboard's colours.
STATUS_STYLE = {
    LagStatus.OK: "green",
    LagStatus.WARN: "yellow",
    LagStatus.STOP: "red",
    LagStatus.STALL: "red",
    LagStatus.REWIND: "magenta",
}


def _styled(status: PartitionStatus) -> str:
    if not status.judged:
        return f"[dim]{status.label()}"
    return f"[{STATUS_STYLE[status.status]}]{status.label()}"


def lag_table(
    snap: LagSnapshot, statuses: Mapping[PartitionKey, PartitionStatus] | None = None
) -> Table:
    """The rows as a rich table, with a status column when statuses are given."""
    columns = ["group", "topic", "partition", "committed", "end", "lag", "lag_s"]
    table = Table(*columns, *(["status"] if statuses is not None else []))
    for r in snap.rows:
        cells = [
            r.group,
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.end),
            f"[red]{r.lag}" if r.lag else "0",
            "?" if r.lag_seconds is None else f"{r.lag_seconds:.1f}",
        ]
        if statuses is not None:
            status = statuses.get((r.group, r.topic, r.partition))
            cells.append("-" if status is None else _styled(status))
        table.add_row(*cells)
    return table


def group_table(statuses: Mapping[PartitionKey, PartitionStatus]) -> Table:
    """Each group's status (its worst partition's) as a rich table."""
    table = Table("group", "status")
    for group, status in group_statuses(statuses).items():
        table.add_row(group, f"[{STATUS_STYLE[status]}]{status.name}")
    return table


@app.command("lag")
def lag_cmd(
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="only this group (repeatable)")
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="one JSON object per partition per line")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="query again every GUARDSTREAM_LAG_STATUS_INTERVAL_S and show the lag status "
            "(OK/WARN/STOP/STALL/REWIND) once GUARDSTREAM_LAG_STATUS_WINDOW samples are in",
        ),
    ] = False,
) -> None:
    """Show each consumer group's lag per partition, in records and seconds."""
    settings = get_settings()
    groups = group or configured_groups(settings)
    if watch:
        _watch(LagReader(settings), groups, json_lines)
        return
    snap = LagReader(settings).snapshot(groups)
    if json_lines:
        for row in snap.rows:
            typer.echo(json.dumps(row.as_dict()))
        return
    if not snap.rows:
        console.print("no committed offsets or assignments for the selected groups")
        return
    console.print(lag_table(snap))
    console.print(
        "[dim]lag status needs a window of samples: `guardstream lag --watch`, or the "
        "exporter's guardstream_consumergroup_lag_status"
    )


def _watch(reader: LagReader, groups: list[str] | None, json_lines: bool) -> None:
    """Query, judge and print until interrupted; the status fills in as samples arrive."""
    tracker = status_tracker(reader.settings)
    # Sampling faster than the interval would add no samples; never spin on interval 0.
    pause = max(reader.settings.lag_status_interval_s, 1.0)
    try:
        while True:
            snap = reader.snapshot(groups)
            statuses = judge(tracker, snap)
            if json_lines:
                for row in snap.rows:
                    status = statuses[(row.group, row.topic, row.partition)]
                    line = row.as_dict() | {
                        "status": status.status.name,
                        "status_samples": status.observations,
                    }
                    typer.echo(json.dumps(line), nl=True)
            else:
                console.clear()
                console.print(lag_table(snap, statuses))
                console.print(group_table(statuses))
            time.sleep(pause)
    except KeyboardInterrupt:
        pass


@app.command("lag-exporter")
def lag_exporter_cmd(
    port: Annotated[
        int | None, typer.Option(help=f"HTTP port (default {DEFAULT_EXPORTER_PORT})")
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(help="minimum seconds between broker queries (default 15)"),
    ] = None,
    bind: Annotated[
        str | None, typer.Option(help="interface to listen on (default GUARDSTREAM_HOST)")
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="only this group (repeatable)")
    ] = None,
) -> None:
    """Serve consumer lag as Prometheus metrics, independent of the workers."""
    settings = get_settings()
    port = exporter_port(settings) if port is None else port
    interval = exporter_interval(settings) if interval is None else interval
    console.print(f"lag exporter on http://{bind or settings.host}:{port}/metrics")
    serve_exporter(
        settings, port, bind or settings.host, interval, group or configured_groups(settings)
    )
