"""`guardstream tenants`: apply tenant configuration and show a tenant's limits and state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from guardstream.cli.output import console, err
from guardstream.config.settings import get_settings
from guardstream.errors import GuardstreamError

if TYPE_CHECKING:
    from guardstream.config.tenants import Limits

app = typer.Typer(help="Tenant configuration.", no_args_is_help=True)


@app.command("apply")
def tenants_apply(file: Annotated[Path, typer.Argument(help="YAML file with `tenants:`")]) -> None:
    """Validate a tenants file and publish it; workers pick it up within seconds."""
    from guardstream.ops import tenants as tenant_ops

    for tenant in tenant_ops.apply(get_settings(), file):
        console.print(f"[green]✓[/] {tenant}")


@app.command("show")
def tenants_show(
    tenant: Annotated[str | None, typer.Argument(help="one tenant id (default: all)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Print the configuration in force; for one tenant, also its live spend and buckets.

    The live part comes from a worker (GUARDSTREAM_WORKER_URL); when none answers, the
    configuration is still printed and one line says why the live part is missing.
    """
    from guardstream.config.tenants import limits_for, load_tiers
    from guardstream.ops import tenants as tenant_ops

    settings = get_settings()
    tiers = load_tiers(settings.tiers_file)
    configs = tenant_ops.read_all(settings)
    if tenant is None:
        every = {tid: limits_for(tid, configs.get(tid), tiers) for tid in sorted(configs)}
        if json_out:
            typer.echo(
                json.dumps(
                    {
                        "tenants": {
                            tid: tenant_ops.limits_json(lim) for tid, lim in every.items() if lim
                        }
                    }
                )
            )
        else:
            console.print(_limits_table(every))
        return
    limits = limits_for(tenant, configs.get(tenant), tiers)
    live = tenant_ops.fetch_live(settings, tenant)
    # A tenant removed from the configuration may still hold state a worker reports.
    if limits is None and live.view is None:
        raise GuardstreamError(
            f"tenant '{tenant}' is not configured (unknown tenants are rejected)",
            "add it to a tenants file and run `guardstream tenants apply FILE`",
        )
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "tenant_id": tenant,
                    "config": tenant_ops.limits_json(limits) if limits else None,
                    "live": live.view,
                    "live_error": live.problem,
                    "worker_url": settings.worker_base_url,
                }
            )
        )
    else:
        if limits is not None:
            console.print(_limits_table({tenant: limits}))
        if live.view is not None:
            _print_live(live.view)
    if live.problem:
        err.print(
            f"[yellow]live state unavailable:[/] {live.problem}", highlight=False, soft_wrap=True
        )


def _limits_table(every: dict[str, Limits | None]) -> Table:
    table = Table(
        "tenant", "tier", "req/min", "tok/min", "burst", "daily µ$", "monthly µ$", "policy"
    )
    for tid, limits in every.items():
        if limits is None:
            continue
        table.add_row(
            tid,
            limits.tier + ("" if limits.configured else " (default)"),
            str(limits.requests_per_minute),
            str(limits.tokens_per_minute),
            f"{limits.burst_requests}/{limits.burst_tokens}",
            str(limits.daily_budget_micros),
            str(limits.monthly_budget_micros),
            ", ".join(f"{k}={v}" for k, v in sorted(limits.policy.items())) or "default",
        )
    return table


def _micros(value: int | None) -> str:
    return "unlimited" if value is None else f"{value:,}"


def _print_live(view: dict[str, Any]) -> None:
    as_of = view["as_of"]
    console.print(
        f"live state of [bold]{view['tenant_id']}[/] at {as_of['now']} "
        f"(last metered {as_of['last_metered'] or 'never'}; answered by {view['answered_by']})",
        highlight=False,
    )
    budget = Table(
        "budget",
        "period",
        "limit µ$",
        "charged µ$",
        "reserved µ$",
        "remaining µ$",
        "alerts crossed",
    )
    for name in ("daily", "monthly"):
        p = view["budget"][name]
        budget.add_row(
            name,
            p["period"],
            _micros(p["limit_micros"]),
            _micros(p["charged_micros"]),
            _micros(p["reserved_micros"]),
            _micros(p["remaining_micros"]),
            ", ".join(f"{pct}%" for pct in p["alerts_crossed_pct"]) or "-",
        )
    console.print(budget)
    rate = Table("bucket", "level now", "capacity", "refill / min")
    for name in ("requests", "tokens"):
        b = view["rate"][name]
        rate.add_row(
            name,
            *(("-" if b[k] is None else f"{b[k]:,}") for k in ("level", "capacity", "per_minute")),
        )
    console.print(rate)
