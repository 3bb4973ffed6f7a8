"""`guardstream bench`: the benchmarks behind the README's figures."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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
    signing: Annotated[
        str, typer.Option(help="none, hmac-sha256, ed25519, or all (each in turn)")
    ] = "all",
) -> None:
    """Time the pure ingest path (verify, decode, validate, guardrails, encode) on one core."""
    from guardstream.errors import GuardstreamError
    from guardstream.ops.bench import SIGNINGS, bench_ingest

    if signing not in (*SIGNINGS, "all"):
        raise GuardstreamError(f"unknown signing {signing!r}", f"use one of {SIGNINGS} or all")
    baseline = None
    for scheme in SIGNINGS if signing == "all" else (signing,):
        what = f"{count} requests (1 KB prompts, {pii_ratio:.0%} with PII, signing {scheme})"
        with console.status(f"timing {what}"):
            r = bench_ingest(get_settings(), count, pii_ratio, scheme)
        extra = ""
        if baseline is not None:
            extra = f" · +{1e6 / r.per_second - 1e6 / baseline:.0f} µs/request vs none"
        if r.verify_us is not None:
            extra += f" · signature check alone {r.verify_us:.1f} µs"
        baseline = r.per_second if scheme == "none" else baseline
        console.print(
            f"ingest (pure path, 1 process, signing {scheme}): {r.requests} requests in "
            f"{r.seconds:.2f} s = [bold]{r.per_second:,.0f} req/s[/] · p50 {r.p50_us:.0f} µs "
            f"· p99 {r.p99_us:.0f} µs · forwarded {r.forwarded}{extra}"
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


@app.command("compare")
def bench_compare_cmd(
    count: Annotated[
        int, typer.Option("--count", "-n", help="requests in each system's flood")
    ] = 12000,
    skip: Annotated[
        list[str] | None,
        typer.Option(help="leave a system out: passthrough, minimal, pipeline1, pipeline2"),
    ] = None,
) -> None:
    """The pipeline (1 and 2 workers) vs. a minimal Faust agent vs. an aiokafka pass-through.

    Each system gets the same flood on fresh topics and runs in subprocesses measured from
    outside: records/s from the output end offsets, CPU per record from /proc, produce→output
    latency from the records' timestamps (backlog included).
    """
    from guardstream.ops.compare import LABELS, SYSTEMS, compare

    unknown = set(skip or []) - set(SYSTEMS)
    if unknown:
        raise typer.BadParameter(
            f"unknown system(s): {', '.join(sorted(unknown))}", param_hint="--skip"
        )
    systems = [s for s in SYSTEMS if s not in set(skip or [])]
    started = time.monotonic()
    with _progress(24) as progress:
        tasks = {
            s: progress.add_task(LABELS[s], total=count, start=False, status="waiting")
            for s in systems
        }

        def on_status(system: str, text: str) -> None:
            progress.start_task(tasks[system])
            progress.update(tasks[system], status=text)

        def on_advance(system: str, done: int) -> None:
            progress.update(tasks[system], completed=min(max(done, 0), count))

        results = compare(get_settings(), count, systems, on_status, on_advance)
        for s in systems:
            progress.update(tasks[s], status="done")
    by = {r.system: r for r in results}
    base = by.get("passthrough")
    table = Table(
        "system",
        "rec/s",
        "CPU ms/rec",
        "broker ms/rec",
        "p50 ms",
        "p99 ms",
        "vs pass",
        title=f"{count:,} requests each (1 KB prompts, 20 % PII, 50 tenants), backlog included",
    )
    for r in results:
        table.add_row(
            LABELS[r.system],
            f"{r.per_s:,.0f}",
            f"{r.cpu_ms_per_record:.2f}",
            "-" if r.broker_cpu_ms_per_record is None else f"{r.broker_cpu_ms_per_record:.2f}",
            f"{r.p50_ms:,.0f}",
            f"{r.p99_ms:,.0f}",
            f"{r.per_s / base.per_s:.1%}" if base else "-",
        )
    console.print(table)
    for a, b, what in (
        ("pipeline1", "minimal", "pipeline (1 worker) / minimal agent"),
        ("pipeline2", "pipeline1", "2 workers / 1 worker"),
    ):
        if a in by and b in by:
            console.print(
                f"{what}: throughput {by[a].per_s / by[b].per_s:.2f}x, "
                f"CPU per record {by[a].cpu_ms_per_record / by[b].cpu_ms_per_record:.2f}x"
            )
    console.print(
        f"took {time.monotonic() - started:.0f} s; load average now "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )


@app.command("profile")
def bench_profile_cmd(
    duration: Annotated[int, typer.Option("--duration", "-d", help="seconds to sample")] = 20,
    count: Annotated[
        int | None,
        typer.Option(
            "--count", "-n", help="requests in the flood (default: 600 per second sampled)"
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="also write a py-spy profile here (sampled again)"),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="speedscope or flamegraph")] = "speedscope",
    top: Annotated[int, typer.Option(help="functions to list")] = 25,
    gil: Annotated[
        bool, typer.Option("--gil", help="only samples holding the GIL (Python CPU time)")
    ] = False,
    blocking: Annotated[
        bool,
        typer.Option(
            "--blocking/--nonblocking",
            help="pause the worker for each sample (exact stacks, but slows it several-fold)",
        ),
    ] = False,
) -> None:
    """Profile the one-worker pipeline with py-spy while it drains a flood.

    Prints the top functions by own time (the sampled frame was the function itself) and by
    total time (the function was anywhere on the stack).
    """
    from guardstream.ops.compare import profile

    n = count if count is not None else 600 * duration * (2 if output else 1)
    with console.status("profile") as status:
        p = profile(
            get_settings(),
            duration,
            n,
            output,
            fmt,
            lambda text: status.update(f"profile: {text}"),
            top,
            gil_only=gil,
            nonblocking=not blocking,
        )
    for title, rows in (("own time", p.own), ("total time (entry frames left out)", p.total)):
        table = Table("function", "samples", "%", title=f"top {top} by {title}")
        for name, samples in rows:
            table.add_row(name, f"{samples:,}", f"{samples / max(p.samples, 1):.1%}")
        console.print(table)
    console.print(
        f"{p.samples:,} samples over {duration} s; the worker decided {p.records:,} requests "
        "while sampled" + (f"; {fmt} profile in {p.output}" if p.output else "")
    )


@app.command("restore")
def bench_restore_cmd(
    keys: Annotated[
        list[int] | None,
        typer.Option(
            "--keys",
            "-k",
            help="table entries in the changelog; repeat for several sizes "
            "(default 10,000, 100,000 and 1,000,000)",
        ),
    ] = None,
) -> None:
    """How long a worker takes to restore its table from the changelog after losing its state.

    For each size: a fresh changelog filled with synthetic meter entries, then one worker
    timed from process start to `/health/ready` on an empty state dir (cold: full replay)
    and again on the state it left (warm: nothing to replay).
    """
    from guardstream.errors import GuardstreamError
    from guardstream.ops.restore import MIN_KEYS, growth_per_100k, measure

    sizes = keys or [10_000, 100_000, 1_000_000]
    too_few = [k for k in sizes if k < MIN_KEYS]
    if too_few:
        raise GuardstreamError(
            f"--keys {too_few[0]:,} is too few to measure a restore",
            f"use at least {MIN_KEYS:,} keys",
        )
    started = time.monotonic()
    results = _each_with_progress(
        [(f"{n:,} keys", n, functools.partial(measure, get_settings(), n)) for n in sizes],
        16,
    )
    table = Table(
        "keys",
        "tenants",
        "MB",
        "cold s",
        "keys/s",
        "warm s",
        "cold-warm",
        "RSS MB",
        "restored",
        title="process start → /health/ready, on an empty state dir (cold) and on its own (warm)",
        caption="MB: changelog key+value bytes · keys/s: keys / cold s · RSS: peak (VmHWM) "
        "cold / warm",
    )
    for r in results:
        restored = sum(r.restored)
        table.add_row(
            f"{r.keys:,}",
            f"{r.tenants:,}",
            f"{r.changelog_mb:,.1f}",
            f"{r.cold.ready_s:.2f}",
            f"{r.keys_per_s:,.0f}",
            f"{r.warm.ready_s:.2f}",
            f"{r.cold.ready_s - r.warm.ready_s:.2f}",
            f"{r.cold.peak_rss_mb:,.0f} / {r.warm.peak_rss_mb:,.0f}",
            f"{restored:,}" if restored == r.keys else f"[bold red]{restored:,}[/]",
        )
    console.print(table)
    for lo, hi, seconds in growth_per_100k(results):
        console.print(f"growth {lo:,} → {hi:,} keys: {seconds:.2f} s per 100k keys")
    console.print(
        "cold - warm ≈ the replay itself (warm = imports, app, topics, group join); "
        f"took {time.monotonic() - started:.0f} s; load average now "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )


@app.command("failover")
def bench_failover_cmd(
    keys: Annotated[
        str,
        typer.Option("--keys", "-k", help="table entries in the changelog, comma-separated sizes"),
    ] = "1000,100000",
    standbys: Annotated[
        str, typer.Option(help="table standby replica counts to compare, comma-separated")
    ] = "0,1",
) -> None:
    """Time from a worker's kill -9 to its tenants' decisions, with and without standbys.

    For each size and standby count: a fresh changelog with synthetic meter entries, two
    workers ready with every changelog partition read, probes for the tenants of one of them,
    then kill -9 of that one. Seconds from the kill until the survivor starts rebalancing
    (detection: the session timeout), is ready again holding every partition, and decides
    the first probe sent after the kill.
    """
    from guardstream.errors import GuardstreamError
    from guardstream.ops.failover import measure
    from guardstream.ops.restore import MIN_KEYS

    try:
        sizes = [int(k.replace("_", "")) for k in keys.split(",")]
        counts = [int(n) for n in standbys.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if min(sizes) < MIN_KEYS:
        raise GuardstreamError(
            f"--keys {min(sizes):,} is too few to measure a failover",
            f"use at least {MIN_KEYS:,} keys",
        )
    started = time.monotonic()
    results = _each_with_progress(
        [
            (f"{n:,} keys, {c} standby", n, functools.partial(measure, get_settings(), n, c))
            for n in sizes
            for c in counts
        ],
        28,
    )
    table = Table(
        "keys",
        "standbys",
        "detect s",
        "restore s",
        "ready s",
        "decision s",
        "replayed",
        title="seconds from kill -9 of one of two workers",
        caption="detect: the survivor starts rebalancing (session timeout "
        f"{results[0].session_timeout_s:g} s) · restore: detect → ready again with every "
        "partition · decision: the first probe sent after the kill is decided · replayed: "
        "changelog entries the survivor replayed / entries in the partitions it took over",
    )
    for r in results:
        table.add_row(
            f"{r.keys:,}",
            str(r.standbys),
            f"{r.detect_s:.1f}",
            f"{r.restore_s:.1f}",
            f"{r.ready_s:.1f}",
            f"{r.decision_s:.1f}",
            f"{r.replayed:,} / {r.taken_over_entries:,}",
        )
    console.print(table)
    console.print(
        f"took {time.monotonic() - started:.0f} s; load average now "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )


_Result = TypeVar("_Result")
Measurement = Callable[[Callable[[str], None], Callable[[int], None]], _Result]


def _each_with_progress(
    runs: list[tuple[str, int, Measurement[_Result]]], label_width: int
) -> list[_Result]:
    """Run each (label, keys, measurement) in turn with a progress line each.

    A measurement is called with a status callback (a word for the progress line) and an
    advance callback (keys filled so far, out of the run's total).
    """
    results = []
    with _progress(label_width) as progress:
        tasks = [
            progress.add_task(label, total=total, start=False, status="waiting")
            for label, total, _ in runs
        ]
        for task, (_, _, run) in zip(tasks, runs, strict=True):
            progress.start_task(task)
            results.append(
                run(
                    functools.partial(_task_status, progress, task),
                    functools.partial(_task_done, progress, task),
                )
            )
            progress.update(task, status="done")
    return results


def _task_status(progress: Any, task: Any, text: str) -> None:
    progress.update(task, status=text)


def _task_done(progress: Any, task: Any, done: int) -> None:
    progress.update(task, completed=done)


def _progress(label_width: int) -> Progress:
    """One line per task: its label, a bar, done/total, a status word and the time taken."""
    return Progress(
        TextColumn(f"{{task.description:<{label_width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    )


@app.command("dispatch")
def bench_dispatch_cmd(
    requests: Annotated[int, typer.Option("--requests", "-n", help="requests in the flood")] = 3000,
    latency: Annotated[float, typer.Option(help="the simulated provider's seconds per call")] = 1.0,
    in_flight: Annotated[
        int, typer.Option("--in-flight", help="GUARDSTREAM_DISPATCH_MAX_IN_FLIGHT for the worker")
    ] = 1000,
) -> None:
    """Completions per second and calls in flight for one worker against a slow provider.

    One dispatching worker on a fresh topic prefix, `guardstream provider-sim` answering
    each call after --latency seconds, and a flood of --requests requests. Reports the
    completions/s (against the ceiling in-flight / latency), the peak of concurrent calls
    the provider saw, and the slowest answer of the worker's /health/live probed every
    100 ms meanwhile (how long its event loop could not serve anything else).
    """
    from guardstream.ops.dispatch_bench import measure

    (r,) = _each_with_progress(
        [
            (
                f"{requests:,} requests, {latency:g} s calls",
                requests,
                functools.partial(measure, get_settings(), requests, latency, in_flight),
            )
        ],
        30,
    )
    table = Table(
        "requests",
        "latency s",
        "in flight (max)",
        "completions/s",
        "ceiling/s",
        "peak in flight",
        "probe p99 ms",
        "probe max ms",
        title="one worker, dispatch stage, against the provider simulator",
        caption="ceiling: in-flight limit / latency · peak in flight: concurrent calls the "
        "simulator saw · probe: /health/live every 100 ms (event-loop responsiveness)",
    )
    table.add_row(
        f"{r.requests:,}",
        f"{r.latency_s:g}",
        f"{r.max_in_flight:,}",
        f"{r.completions_per_s:,.0f}",
        f"{r.ceiling_per_s:,.0f}",
        f"{r.peak_in_flight:,}",
        f"{r.p99_probe_ms:,.0f}",
        f"{r.worst_probe_ms:,.0f}",
    )
    console.print(table)
