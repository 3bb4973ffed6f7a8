"""The top-level commands: run a worker, produce requests, tail decisions, the demo, reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from guardstream.cli.output import console
from guardstream.config.settings import get_settings

app = typer.Typer()


@app.command()
def worker(
    web_port: Annotated[int | None, typer.Option(help="HTTP port for /metrics")] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Run a pipeline worker (Faust) until interrupted."""
    from guardstream.app import run_worker

    settings = get_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"worker_web_port": web_port})
    run_worker(settings, loglevel)


@app.command("produce")
def produce_cmd(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="JSON-lines file of requests")
    ] = None,
    count: Annotated[int, typer.Option("--count", "-n", help="demo requests to send")] = 10,
    keys: Annotated[
        Path | None,
        typer.Option("--keys", help="client keys file: sign each tenant's requests with its keys"),
    ] = None,
) -> None:
    """Send requests as binary-mode Avro CloudEvents (demo traffic, or from a file)."""
    from guardstream.auth.client import load_client_keys
    from guardstream.ops import produce

    settings = get_settings()
    requests = list(produce.file_requests(file)) if file else produce.demo_requests(count)
    signing = load_client_keys(keys) if keys else None
    ids = produce.RequestProducer(settings, signing).send_all(requests)
    console.print(f"[green]✓[/] sent {len(ids)} requests to {settings.topic('requests')}")
    for i in ids[:20]:
        console.print(f"  {i}")


@app.command("tail")
def tail_cmd(
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest decision")] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    idle_timeout: Annotated[
        float | None, typer.Option(help="exit after this many seconds without a record")
    ] = None,
) -> None:
    """Follow admitted, rejected and deadletter and print each decision."""
    from guardstream.ops import tail

    settings = get_settings()
    for seen in tail.follow(settings, from_beginning=from_beginning, idle_timeout_s=idle_timeout):
        tail.print_seen(console, seen, settings, json_lines)


@app.command()
def demo(
    count: Annotated[int, typer.Option("--count", "-n", help="demo requests")] = 20,
    timeout: Annotated[float, typer.Option(help="seconds to wait for decisions")] = 120.0,
) -> None:
    """Bring up the stack, register schemas, start a worker, send demo traffic, show decisions."""
    from guardstream.ops import demo as demo_mod

    demo_mod.run(get_settings(), console, count, timeout)


@app.command()
def reasons() -> None:
    """List every reason code, where it ends, and what it means."""
    from guardstream.reasons import DESCRIPTIONS

    table = Table("code", "ends on", "meaning")
    for code, (route, text) in DESCRIPTIONS.items():
        table.add_row(str(code), str(route), text)
    console.print(table)
