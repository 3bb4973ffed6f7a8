"""`guardstream demo`: stack up, schemas, a worker, demo traffic, decisions on screen."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.ops import produce, tail
from guardstream.ops import schemas as schema_ops
from guardstream.ops import tenants as tenant_ops
from guardstream.serde.registry import Registry
from guardstream.stack import services
from guardstream.stack.process import port_open
from guardstream.streams.admin import ensure_topics


def run(settings: Settings, console: Console, count: int, timeout_s: float) -> int:
    """Run the demo end to end; return how many decisions were shown."""
    t0 = time.monotonic()
    services.up(settings, console)
    console.print(f"[green]✓[/] stack up ({time.monotonic() - t0:.1f} s)")
    created = ensure_topics(settings)
    if created:
        console.print(f"[green]✓[/] created topics: {', '.join(sorted(created))}")
    registry = Registry(settings)
    ids = schema_ops.register_all(settings, registry)
    registry.close()
    console.print(f"[green]✓[/] schemas registered: {len(ids)} subjects")
    applied = tenant_ops.apply(settings, settings.demo_tenants_file)
    console.print(f"[green]✓[/] tenants applied: {', '.join(applied)}")

    log_path = settings.data_dir / "logs" / f"worker-{settings.worker_web_port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = None
    if port_open(settings.host, settings.worker_web_port):
        console.print(f"a worker already answers on port {settings.worker_web_port}: using it")
    else:
        with log_path.open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "guardstream", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
            )
        console.print(f"[green]✓[/] worker started (pid {worker.pid}, log {log_path})")
    try:
        start = tail.end_offsets(settings)
        requests = produce.demo_requests(count, seed=int(time.time()))
        sent = set(produce.RequestProducer(settings).send_all(requests))
        console.print(f"[green]✓[/] sent {len(sent)} demo requests; decisions:")
        shown: set[str] = set()
        deadline = time.monotonic() + timeout_s

        def done() -> bool:
            died = worker is not None and worker.poll() is not None
            return died or time.monotonic() > deadline or len(shown) >= count

        for seen in tail.follow(settings, start=start, stop=done):
            rid = seen.record.get("request_id")
            if rid in sent and rid not in shown:
                tail.print_seen(console, seen, settings, json_lines=False)
                shown.add(rid)
        if worker is not None and worker.poll() is not None:
            raise GuardstreamError(
                f"the worker exited with code {worker.returncode}",
                f"read its log {log_path}",
            )
        if len(shown) < count:
            raise GuardstreamError(
                f"only {len(shown)} of {count} decisions arrived within {timeout_s:.0f} s",
                f"read the worker log {log_path}",
            )
        console.print(
            f"[bold green]demo done[/]: {len(shown)} decisions in {time.monotonic() - t0:.1f} s. "
            "The stack keeps running; `guardstream stack down` stops it."
        )
        return len(shown)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
