"""`guardstream topics`: the Kafka topics guardstream reads and writes."""

from __future__ import annotations

import typer

from guardstream.cli.output import console
from guardstream.config.settings import get_settings

app = typer.Typer(help="guardstream's Kafka topics.", no_args_is_help=True)


@app.command("create")
def topics_create() -> None:
    """Create every missing guardstream topic (idempotent); starts no local stack."""
    from guardstream.streams.admin import ensure_topics

    created = ensure_topics(get_settings())
    console.print(f"created: {', '.join(sorted(created))}" if created else "every topic exists")
