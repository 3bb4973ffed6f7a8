"""`guardstream stack`: fetch, start, stop and inspect the local broker and registry."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from guardstream.cli.output import console
from guardstream.config.settings import get_settings

app = typer.Typer(help="The local Kafka broker and schema registry.", no_args_is_help=True)


@app.command("up")
def stack_up(
    secured: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="SASL/SCRAM-SHA-512 and ACLs on the broker; one user per role, "
            "credentials in DATA_DIR/secure/",
        ),
    ] = False,
    brokers: Annotated[
        int | None,
        typer.Option(
            "--brokers",
            min=1,
            max=5,
            help="KRaft nodes to run (default GUARDSTREAM_BROKERS, 1); 3 gives topics "
            "replication factor 3 and min.insync.replicas 2",
        ),
    ] = None,
) -> None:
    """Fetch (once), start and health-check Kafka and Apicurio Registry; create topics."""
    from guardstream.stack import secure, services
    from guardstream.streams.admin import ensure_topics

    settings = get_settings()
    if brokers is not None:
        settings = settings.model_copy(update={"brokers": brokers})
    t0 = time.monotonic()
    admin = services.up(settings, console, secured=secured)
    created = ensure_topics(admin)
    if created:
        console.print(f"created topics: {', '.join(sorted(created))}")
    console.print(f"[green]✓[/] stack up in {time.monotonic() - t0:.1f} s")
    console.print(f"  kafka     {settings.kafka_bootstrap}")
    if brokers is not None and brokers != get_settings().brokers:
        # Every other command builds its bootstrap list and replication from this setting.
        console.print(f"  for other commands: export GUARDSTREAM_BROKERS={brokers}")
    console.print(f"  registry  {settings.registry_api}")
    if secured:
        # Paths only: a password printed here would end up in terminals' scrollback and CI logs.
        console.print(
            f"  secured   SASL_PLAINTEXT + {secure.MECHANISM}, ACLs on; credentials (0600):"
        )
        for name, role in secure.wanted_users(settings):
            path = secure.credentials_file(settings, name)
            console.print(f"    {role:<8}  {path}", markup=False, highlight=False, soft_wrap=True)
        console.print(
            f"  use one:  set -a; . {secure.credentials_file(settings, secure.WORKER)}; set +a",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@app.command("down")
def stack_down() -> None:
    """Stop the broker and registry that `stack up` started (nothing else)."""
    from guardstream.stack import services

    services.down(get_settings(), console)


@app.command("status")
def stack_status() -> None:
    """Show each service's pid, address and health; exit 1 if any is unhealthy."""
    from guardstream.stack import services

    table = Table("service", "pid", "address", "healthy")
    health = services.status(get_settings())
    for h in health:
        table.add_row(
            h.name, str(h.pid or "-"), h.address, "[green]yes" if h.healthy else "[red]no"
        )
    console.print(table)
    if not all(h.healthy for h in health):
        raise typer.Exit(1)


@app.command("logs")
def stack_logs(
    service: Annotated[str, typer.Argument(help="kafka or registry")] = "kafka",
    lines: Annotated[int, typer.Option("-n", help="how many lines")] = 50,
    follow: Annotated[bool, typer.Option("-f", help="keep printing new lines")] = False,
) -> None:
    """Print the end of a service's log."""
    from guardstream.stack import services
    from guardstream.stack.process import tail

    path = services.log_file(get_settings(), service)
    for line in tail(path, lines):
        console.print(line, markup=False, highlight=False)
    if follow:
        with path.open() as f:
            f.seek(0, 2)
            while True:
                line = f.readline()
                if line:
                    console.print(line.rstrip("\n"), markup=False, highlight=False)
                else:
                    time.sleep(0.3)
