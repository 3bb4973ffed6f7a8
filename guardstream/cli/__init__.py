"""The `guardstream` command line: thin typer wiring, one command group per module."""

from __future__ import annotations

import sys

import typer

from guardstream.cli import (
    bench,
    chaos,
    keys,
    lag,
    pipeline,
    provider_sim,
    schemas,
    stack,
    tenants,
    topics,
)
from guardstream.cli.output import err
from guardstream.errors import GuardstreamError

app = typer.Typer(
    help="guardstream: guardrails and metering for LLM requests, on Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for group in (stack, schemas, tenants, keys, topics, bench):
    app.add_typer(group.app, name=group.__name__.rsplit(".", 1)[-1])
# Top-level commands (`guardstream worker`, `guardstream lag`, ...) keep their own names.
for commands in (pipeline, lag, chaos, provider_sim):
    for info in commands.app.registered_commands:
        app.registered_commands.append(info)


def main() -> None:
    """Entry point: user-caused errors print one line (cause — fix) and exit 2."""
    try:
        app()
    except GuardstreamError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
