"""`guardstream chaos SCENARIO`: one fault under steady load on the running stack, judged."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from guardstream.cli.output import console, err

app = typer.Typer()


@app.command("chaos")
def chaos_cmd(
    scenario: Annotated[
        str,
        typer.Argument(
            help="broker-kill, worker-kill, registry-down, broker-pause or disk-full "
            "(the broker ones need `stack up --brokers 3`)"
        ),
    ],
    scale: Annotated[
        float, typer.Option(help="load multiplier: 1 is 30 s of requests at --rate")
    ] = 1.0,
    rate: Annotated[float, typer.Option(help="requests per second")] = 40.0,
    keep: Annotated[
        bool, typer.Option("--keep", help="keep the workers' logs (their directory is printed)")
    ] = False,
) -> None:
    """Inject one fault into the running stack under steady load, then check exactness.

    Two workers of its own run on a private topic prefix (deleted afterwards); requests
    flow at --rate with a usage report for every admission. Reports records lost and
    charged twice (both must be 0), the time to recover, the largest backlog and the
    longest wait for a decision; exits 1 if anything was lost, doubled or refused wrongly.
    """
    from guardstream.chaos.scenarios import check_scenario, run_scenario
    from guardstream.config.settings import get_settings
    from guardstream.stack.services import as_formatted

    # The running stack's node count, however GUARDSTREAM_BROKERS is set in this shell.
    settings = as_formatted(get_settings())
    check_scenario(settings, scenario)
    tmp = Path(tempfile.mkdtemp(prefix=f"gschaos-{scenario}-"))
    ok = False
    try:
        result = run_scenario(
            settings,
            scenario,
            tmp,
            scale=scale,
            rate=rate,
            say=lambda line: err.print(f"[dim]{line}", highlight=False),
        )
        # One row per figure: eight columns of one result wrapped to nothing in a pipe.
        table = Table("figure", "value", title=result.fault)
        for figure, value in (
            ("scenario", result.scenario),
            ("requests", f"{result.requests:,} at {result.rate:g}/s"),
            ("lost", _flag(result.lost)),
            ("charged twice", _flag(result.double_charged)),
            ("time to recover", f"{result.recover_s:.1f} s"),
            ("longest stall", f"{result.longest_stall_s:.1f} s"),
            ("largest backlog", f"{result.max_backlog:,} requests"),
            ("longest wait for a decision", f"{result.max_wait_s:.1f} s"),
        ):
            table.add_row(figure, value)
        console.print(table)
        for problem in result.problems:
            err.print(f"[bold red]problem:[/] {problem}", highlight=False)
        ok = not result.problems
    finally:
        if keep or not ok:
            err.print(f"workers' logs: {tmp}", highlight=False)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        raise typer.Exit(1)


def _flag(count: int) -> str:
    return "[green]0" if count == 0 else f"[bold red]{count}"
