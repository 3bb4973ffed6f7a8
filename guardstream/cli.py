"""The `guardstream` command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from guardstream import lag_cli
from guardstream.errors import GuardstreamError
from guardstream.settings import get_settings

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
    from guardstream.schema_ops import register_all
    from guardstream.streams.registry import Registry

    settings = get_settings()
    registry = Registry(settings)
    for subject, schema_id in register_all(settings, registry).items():
        console.print(f"[green]✓[/] {subject}  id {schema_id}")


@schemas_app.command("check")
def schemas_check() -> None:
    """Fail (exit 1), naming the field, if a local schema breaks the registry's rule."""
    from guardstream.schema_ops import check_all
    from guardstream.streams.registry import Registry

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
    from guardstream import tenant_ops

    for tenant in tenant_ops.apply(get_settings(), file):
        console.print(f"[green]✓[/] {tenant}")


@tenants_app.command("show")
def tenants_show(
    tenant: Annotated[str | None, typer.Argument(help="one tenant id (default: all)")] = None,
) -> None:
    """Print the configuration in force: each tenant's own values and its tier's defaults."""
    from guardstream import tenant_ops
    from guardstream.tenants import limits_for, load_tiers

    settings = get_settings()
    tiers = load_tiers(settings.tiers_file)
    configs = tenant_ops.read_all(settings)
    ids = [tenant] if tenant else sorted(configs)
    table = Table("tenant", "tier", "req/min", "tok/min", "burst", "daily µ$", "monthly µ$",
                  "policy")  # fmt: skip
    for tid in ids:
        limits = limits_for(tid, configs.get(tid), tiers)
        if limits is None:
            raise GuardstreamError(
                f"tenant '{tid}' is not configured (unknown tenants are rejected)",
                "add it to a tenants file and run `guardstream tenants apply FILE`",
            )
        table.add_row(
            tid, limits.tier + ("" if limits.configured else " (default)"),
            str(limits.requests_per_minute), str(limits.tokens_per_minute),
            f"{limits.burst_requests}/{limits.burst_tokens}",
            str(limits.daily_budget_micros), str(limits.monthly_budget_micros),
            ", ".join(f"{k}={v}" for k, v in sorted(limits.policy.items())) or "default",
        )  # fmt: skip
    console.print(table)


@app.command()
def worker(
    web_port: Annotated[int | None, typer.Option(help="HTTP port for /metrics")] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Run a pipeline worker (Faust) until interrupted."""
    from guardstream import worker as worker_mod

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
    from guardstream import produce

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
    from guardstream import tail

    settings = get_settings()
    for seen in tail.follow(settings, from_beginning=from_beginning, idle_timeout_s=idle_timeout):
        tail.print_seen(console, seen, settings, json_lines)


@app.command()
def demo(
    count: Annotated[int, typer.Option("--count", "-n", help="demo requests")] = 20,
    timeout: Annotated[float, typer.Option(help="seconds to wait for decisions")] = 120.0,
) -> None:
    """Bring up the stack, register schemas, start a worker, send demo traffic, show decisions."""
    from guardstream import demo as demo_mod

    demo_mod.run(get_settings(), console, count, timeout)


bench_app = typer.Typer(help="Benchmarks (figures for the README and closing notes).")
app.add_typer(bench_app, name="bench")


@bench_app.command("ingest")
def bench_ingest_cmd(
    count: Annotated[int, typer.Option("--count", "-n", help="requests to time")] = 20000,
    pii_ratio: Annotated[float, typer.Option(help="share of prompts carrying PII")] = 0.2,
) -> None:
    """Time the pure ingest path (decode, validate, preprocess, encode) on one core."""
    from guardstream.bench import bench_ingest

    with console.status(f"timing {count} requests (1 KB prompts, {pii_ratio:.0%} with PII)"):
        r = bench_ingest(get_settings(), count, pii_ratio)
    console.print(
        f"ingest (pure path, 1 process): {r.requests} requests in {r.seconds:.2f} s = "
        f"[bold]{r.per_second:,.0f} req/s[/] · p50 {r.p50_us:.0f} µs · p99 {r.p99_us:.0f} µs "
        f"· forwarded {r.forwarded}"
    )


@bench_app.command("pipeline")
def bench_pipeline_cmd(
    count: Annotated[int, typer.Option("--count", "-n", help="requests in the flood phase")] = 5000,
) -> None:
    """The whole pipeline through the real broker vs. a plain aiokafka pass-through."""
    from guardstream.bench import bench_pipeline

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
