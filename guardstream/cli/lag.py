"""`guardstream lag` and `guardstream lag-exporter`: consumer lag in a table or as metrics."""

from __future__ import annotations

import json
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
    serve_exporter,
)
from guardstream.lag.reader import LagReader, LagSnapshot

app = typer.Typer()


def lag_table(snap: LagSnapshot) -> Table:
    """The rows as a rich table."""
    table = Table("group", "topic", "partition", "committed", "end", "lag", "lag_s")
    for r in snap.rows:
        table.add_row(
            r.group,
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.end),
            f"[red]{r.lag}" if r.lag else "0",
            "?" if r.lag_seconds is None else f"{r.lag_seconds:.1f}",
        )
    return table


@app.command("lag")
def lag_cmd(
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="only this group (repeatable)")
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="one JSON object per partition per line")
    ] = False,
) -> None:
    """Show each consumer group's lag per partition, in records and seconds."""
    settings = get_settings()
    snap = LagReader(settings).snapshot(group or configured_groups(settings))
    if json_lines:
        for row in snap.rows:
            typer.echo(json.dumps(row.as_dict()))
        return
    if not snap.rows:
        console.print("no committed offsets or assignments for the selected groups")
        return
    console.print(lag_table(snap))


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
