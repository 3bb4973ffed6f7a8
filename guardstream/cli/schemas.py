"""`guardstream schemas`: register the Avro schemas and check local changes against them."""

from __future__ import annotations

import typer

from guardstream.cli.output import console, err
from guardstream.config.settings import get_settings

app = typer.Typer(help="Avro schemas in the registry.", no_args_is_help=True)


@app.command("register")
def schemas_register() -> None:
    """Set the compatibility rule and register every schema under its topic's subject."""
    from guardstream.ops.schemas import register_all
    from guardstream.serde.registry import Registry

    settings = get_settings()
    registry = Registry(settings)
    for subject, schema_id in register_all(settings, registry).items():
        console.print(f"[green]✓[/] {subject}  id {schema_id}")


@app.command("check")
def schemas_check() -> None:
    """Fail (exit 1), naming the field, if a local schema breaks the registry's rule."""
    from guardstream.ops.schemas import check_all
    from guardstream.serde.registry import Registry

    settings = get_settings()
    bad = 0
    for r in check_all(settings, Registry(settings)):
        if r.compatible:
            note = "new subject" if r.new_subject else "compatible"
            console.print(f"[green]✓[/] {r.subject} ({r.schema}.avsc): {note}")
        else:
            bad += 1
            for p in r.problems:
                err.print(
                    f"[red]✗[/] {r.subject} (schemas/{r.schema}.avsc) is incompatible under "
                    f"{settings.schema_compatibility}: {p}"
                )
    if bad:
        raise typer.Exit(1)
