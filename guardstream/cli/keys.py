"""`guardstream keys`: make, list and retire a tenant's signing keys (in the tenants file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from guardstream.cli.output import console
from guardstream.config.settings import get_settings

app = typer.Typer(help="Signing keys of tenants (rotation).", no_args_is_help=True)

FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="the tenants file (`tenants apply` publishes it)")
]


@app.command("new")
def keys_new(
    tenant: Annotated[str, typer.Argument(help="tenant id")],
    file: FileOption,
    scheme: Annotated[
        str, typer.Option(help="ed25519 (public key in config) or hmac-sha256 (shared secret)")
    ] = "ed25519",
    key_id: Annotated[str | None, typer.Option("--id", help="key id (default: generated)")] = None,
) -> None:
    """Make a key valid from now, add it to the tenant in the file, and show its secret once."""
    from guardstream.config.tenants import load_tiers
    from guardstream.errors import GuardstreamError
    from guardstream.ops.keys import new_key

    if scheme not in ("ed25519", "hmac-sha256"):
        raise GuardstreamError(f"unknown scheme {scheme!r}", "use ed25519 or hmac-sha256")
    settings = get_settings()
    chosen: Literal["ed25519", "hmac-sha256"] = "ed25519" if scheme == "ed25519" else "hmac-sha256"
    made = new_key(
        file, load_tiers(settings.tiers_file), tenant, chosen, settings.auth_secrets_path, key_id
    )
    console.print(f"[green]✓[/] {tenant}: key [bold]{made.key_id}[/] ({made.scheme}) in {file}")
    if made.scheme == "ed25519":
        console.print("private key for the client (shown once; guardstream keeps the public key):")
    else:
        console.print(
            "secret for the client (shown once; the workers' copy is in "
            f"{settings.auth_secrets_path}):"
        )
    console.print(made.client_secret, soft_wrap=True, highlight=False)
    console.print(f"next: guardstream tenants apply {file}")


@app.command("list")
def keys_list(tenant: Annotated[str, typer.Argument(help="tenant id")], file: FileOption) -> None:
    """The tenant's keys in the file and whether each is valid now."""
    from guardstream.config.tenants import load_tiers
    from guardstream.ops.keys import list_keys

    settings = get_settings()
    rows = list_keys(file, load_tiers(settings.tiers_file), tenant, settings.auth_secrets_path)
    table = Table("key id", "scheme", "not before", "not after", "now", "secret here")
    for row in rows:
        k = row.key
        table.add_row(
            k.key_id,
            k.scheme,
            str(k.not_before or "-"),
            str(k.not_after or "-"),
            row.state,
            "-" if row.secret_here is None else ("yes" if row.secret_here else "[red]no[/]"),
        )
    console.print(table)


@app.command("retire")
def keys_retire(
    tenant: Annotated[str, typer.Argument(help="tenant id")],
    key_id: Annotated[str, typer.Argument(help="the key to retire")],
    file: FileOption,
) -> None:
    """End a key's validity now (refused if the tenant would be left with no valid key)."""
    from guardstream.config.tenants import load_tiers
    from guardstream.ops.keys import retire_key

    retire_key(file, load_tiers(get_settings().tiers_file), tenant, key_id)
    console.print(f"[green]✓[/] {tenant}: key {key_id} retired in {file}")
    console.print(f"next: guardstream tenants apply {file}")
