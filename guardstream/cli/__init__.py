"""The `guardstream` command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from guardstream.config.settings import get_settings
from guardstream.errors import GuardstreamError
from guardstream.lag import exporter as lag_cli

if TYPE_CHECKING:
    from guardstream.config.tenants import Limits

app = typer.Typer(
    help="guardstream: guardrails and metering for LLM requests, on Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stack_app = typer.Typer(help="The local Kafka broker and schema registry.", no_args_is_help=True)
schemas_app = typer.Typer(help="Avro schemas in the registry.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenant configuration.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")
app.add_typer(tenants_app, name="tenants")
console = Console()
err = Console(stderr=True)


lag_cli.register(app)
topics_app = typer.Typer(help="guardstream's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def topics_create() -> None:
    """Create every missing guardstream topic (idempotent); starts no local stack."""
    from guardstream.streams.admin import ensure_topics

    created = ensure_topics(get_settings())
    console.print(f"created: {', '.join(sorted(created))}" if created else "every topic exists")


@stack_app.command("up")
def stack_up() -> None:
    """Fetch (once), start and health-check Kafka and Apicurio Registry; create topics."""
    from guardstream.stack import services
    from guardstream.streams.admin import ensure_topics

    settings = get_settings()
    t0 = time.monotonic()
    services.up(settings, console)
    created = ensure_topics(settings)
    if created:
        console.print(f"created topics: {', '.join(sorted(created))}")
    console.print(f"[green]✓[/] stack up in {time.monotonic() - t0:.1f} s")
    console.print(f"  kafka     {settings.kafka_bootstrap}")
    console.print(f"  registry  {settings.registry_api}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the broker and registry that `stack up` started (nothing else)."""
    from guardstream.stack import services

    services.down(get_settings(), console)


@stack_app.command("status")
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


@stack_app.command("logs")
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


@schemas_app.command("register")
def schemas_register() -> None:
    """Set the compatibility rule and register every schema under its topic's subject."""
    from guardstream.ops.schemas import register_all
    from guardstream.serde.registry import Registry

    settings = get_settings()
    registry = Registry(settings)
    for subject, schema_id in register_all(settings, registry).items():
        console.print(f"[green]✓[/] {subject}  id {schema_id}")


@schemas_app.command("check")
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


@tenants_app.command("apply")
def tenants_apply(file: Annotated[Path, typer.Argument(help="YAML file with `tenants:`")]) -> None:
    """Validate a tenants file and publish it; workers pick it up within seconds."""
    from guardstream.ops import tenants as tenant_ops

    for tenant in tenant_ops.apply(get_settings(), file):
        console.print(f"[green]✓[/] {tenant}")


@tenants_app.command("show")
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


@app.command()
def worker(
    web_port: Annotated[int | None, typer.Option(help="HTTP port for /metrics")] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Run a pipeline worker (Faust) until interrupted."""
    from guardstream.ops import worker as worker_mod

    settings = get_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"worker_web_port": web_port})
    worker_mod.run(settings, loglevel)


@app.command("produce")
def produce_cmd(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="JSON-lines file of requests")
    ] = None,
    count: Annotated[int, typer.Option("--count", "-n", help="demo requests to send")] = 10,
) -> None:
    """Send requests as binary-mode Avro CloudEvents (demo traffic, or from a file)."""
    from guardstream.ops import produce

    settings = get_settings()
    requests = list(produce.file_requests(file)) if file else produce.demo_requests(count)
    ids = produce.RequestProducer(settings).send_all(requests)
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


bench_app = typer.Typer(help="Benchmarks (figures for the README and closing notes).")
app.add_typer(bench_app, name="bench")


@bench_app.command("ingest")
def bench_ingest_cmd(
    count: Annotated[int, typer.Option("--count", "-n", help="requests to time")] = 20000,
    pii_ratio: Annotated[float, typer.Option(help="share of prompts carrying PII")] = 0.2,
) -> None:
    """Time the pure ingest path (decode, validate, preprocess, encode) on one core."""
    from guardstream.ops.bench import bench_ingest

    with console.status(f"timing {count} requests (1 KB prompts, {pii_ratio:.0%} with PII)"):
        r = bench_ingest(get_settings(), count, pii_ratio)
    console.print(
        f"ingest (pure path, 1 process): {r.requests} requests in {r.seconds:.2f} s = "
        f"[bold]{r.per_second:,.0f} req/s[/] · p50 {r.p50_us:.0f} µs · p99 {r.p99_us:.0f} µs "
        f"· forwarded {r.forwarded}"
    )


@bench_app.command("worst")
def bench_worst_cmd(
    largest: Annotated[int, typer.Option(help="largest prompt, in characters")] = 131_072,
) -> None:
    """Time per KB of the ingest path on adversarial text at growing sizes (flat = linear)."""
    from guardstream.ops.bench import bench_worst

    sizes = (largest // 16, largest // 4, largest)
    table = Table("family", *(f"{n:,} chars µs/KB" for n in sizes), "growth", "outcome")
    with console.status("timing adversarial families…"):
        rows = bench_worst(get_settings(), sizes)
    worst = max(rows, key=lambda r: r.us_per_kb)
    for i in range(0, len(rows), len(sizes)):
        group = rows[i : i + len(sizes)]
        growth = group[-1].us_per_kb / group[0].us_per_kb
        table.add_row(
            group[0].family,
            *(f"{r.us_per_kb:,.0f}" for r in group),
            f"{growth:.1f}x",
            group[-1].code,
        )
    console.print(table)
    console.print(
        f"worst: {worst.us_per_kb:,.0f} µs/KB ({worst.family}, {worst.chars:,} chars, "
        f"{worst.ms:,.0f} ms for the record); growth = µs/KB at the largest size over the "
        "smallest (1x is linear, 16x quadratic)"
    )


@bench_app.command("pipeline")
def bench_pipeline_cmd(
    count: Annotated[int, typer.Option("--count", "-n", help="requests in the flood phase")] = 5000,
) -> None:
    """The whole pipeline through the real broker vs. a plain aiokafka pass-through."""
    from guardstream.ops.bench import bench_pipeline

    r = bench_pipeline(get_settings(), count, console)
    console.print(
        f"pipeline (1 worker): [bold]{r.decisions_per_s:,.0f} decisions/s[/] sustained over "
        f"{r.requests} requests, produce→decision p50 {r.p50_ms:.0f} ms p99 {r.p99_ms:.0f} ms "
        f"(backlog included)\n"
        f"at half that rate ({r.paced_rate:,.0f}/s): p50 {r.paced_p50_ms:.0f} ms, "
        f"p99 {r.paced_p99_ms:.0f} ms\n"
        f"aiokafka pass-through of the same records: {r.passthrough_per_s:,.0f} records/s; "
        f"pipeline / pass-through = {r.decisions_per_s / r.passthrough_per_s:.0%}"
    )


@app.command()
def reasons() -> None:
    """List every reason code, where it ends, and what it means."""
    from guardstream.reasons import DESCRIPTIONS

    table = Table("code", "ends on", "meaning")
    for code, (route, text) in DESCRIPTIONS.items():
        table.add_row(str(code), str(route), text)
    console.print(table)


def main() -> None:
    """Entry point: user-caused errors print one line (cause — fix) and exit 2."""
    try:
        app()
    except GuardstreamError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
