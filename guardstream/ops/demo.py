"""`guardstream demo`: stack up, schemas, a worker, demo traffic, decisions on screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from guardstream.auth.client import ClientKey, load_client_keys, save_client_keys
from guardstream.auth.signature import Scheme
from guardstream.config.secrets import load_secrets
from guardstream.config.settings import Settings
from guardstream.config.tenants import load_tenants_file, load_tiers
from guardstream.errors import GuardstreamError
from guardstream.ops import produce, tail
from guardstream.ops import schemas as schema_ops
from guardstream.ops import tenants as tenant_ops
from guardstream.ops.keys import KeyScheme, new_key
from guardstream.serde.registry import Registry
from guardstream.stack import services
from guardstream.stack.process import port_open
from guardstream.streams.admin import ensure_topics


def demo_keys(settings: Settings) -> tuple[Path, dict[str, list[ClientKey]]]:
    """The demo tenants with a signing key each, and the client's side of those keys.

    Made once under `data_dir/demo` the way an operator would (`guardstream keys new` on a
    copy of the demo tenants file: Ed25519 and HMAC alternately) and reused while the
    workers' HMAC secrets are still there, so a worker already running knows the keys.
    """
    home = settings.data_dir / "demo"
    tenants_file, keys_file = home / "tenants.yaml", home / "client-keys.yaml"
    if tenants_file.exists() and keys_file.exists():
        keys = load_client_keys(keys_file)
        held = load_secrets(settings.auth_secrets_path)
        if all(
            k.scheme is not Scheme.HMAC_SHA256 or k.key_id in held.get(t, {})
            for t, ks in keys.items()
            for k in ks
        ):
            return tenants_file, keys
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.demo_tenants_file, tenants_file)
    tiers = load_tiers(settings.tiers_file)
    names = [c.tenant_id for c in load_tenants_file(tenants_file, tiers)]
    keys = {}
    for i, tenant in enumerate(names):
        scheme: KeyScheme = "ed25519" if i % 2 == 0 else "hmac-sha256"
        made = new_key(tenants_file, tiers, tenant, scheme, settings.auth_secrets_path)
        keys[tenant] = [ClientKey.from_shown(made.key_id, made.scheme, made.client_secret)]
    save_client_keys(keys_file, keys)
    return tenants_file, keys


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
    tenants_file, client_keys = demo_keys(settings)
    applied = tenant_ops.apply(settings, tenants_file)
    console.print(
        f"[green]✓[/] tenants applied: {', '.join(applied)} "
        f"(each signs with its own key: {tenants_file.parent})"
    )

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
        sent = set(produce.RequestProducer(settings, client_keys).send_all(requests))
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
