"""`guardstream bench`: the benchmarks behind the README's figures."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from guardstream.cli.output import console
from guardstream.config.settings import get_settings

app = typer.Typer(
    help="Benchmarks (figures for the README and closing notes).", no_args_is_help=True
)


@app.command("ingest")
def bench_ingest_cmd(
    count: Annotated[int, typer.Option("--count", "-n", help="requests to time")] = 20000,
    pii_ratio: Annotated[float, typer.Option(help="share of prompts carrying PII")] = 0.2,
) -> None:
    """Time the pure ingest path (decode, validate, guardrails, encode) on one core."""
    from guardstream.ops.bench import bench_ingest

    with console.status(f"timing {count} requests (1 KB prompts, {pii_ratio:.0%} with PII)"):
        r = bench_ingest(get_settings(), count, pii_ratio)
    console.print(
        f"ingest (pure path, 1 process): {r.requests} requests in {r.seconds:.2f} s = "
        f"[bold]{r.per_second:,.0f} req/s[/] · p50 {r.p50_us:.0f} µs · p99 {r.p99_us:.0f} µs "
        f"· forwarded {r.forwarded}"
    )


@app.command("worst")
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


@app.command("pipeline")
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
