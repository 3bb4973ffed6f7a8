"""`guardstream demo`: stack up, schemas, a worker, demo traffic, decisions on screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
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
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.stack import services
from guardstream.stack.process import port_open
from guardstream.streams.admin import ensure_topics, high_watermark
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import Topic


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
    sim = _provider_simulator(settings, console)
    worker = None
    # The demo's own worker runs the dispatch stage; one already running may not.
    dispatching = True
    if port_open(settings.host, settings.worker_web_port):
        console.print(
            f"a worker already answers on port {settings.worker_web_port}: using it "
            "(completions show only if it runs with GUARDSTREAM_DISPATCH=true)"
        )
        dispatching = settings.dispatch
    else:
        with log_path.open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "guardstream", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "GUARDSTREAM_DISPATCH": "true"},
            )
        console.print(
            f"[green]✓[/] worker started with the dispatch stage (pid {worker.pid}, log {log_path})"
        )
    try:
        audit_start = _audit_end(settings)
        start = tail.end_offsets(settings)
        requests = produce.demo_requests(count, seed=int(time.time()))
        sent = set(produce.RequestProducer(settings, client_keys).send_all(requests))
        console.print(
            f"[green]✓[/] sent {len(sent)} demo requests; decisions"
            + (" and the model's answers:" if dispatching else ":")
        )
        shown: set[str] = set()
        admitted: set[str] = set()
        answered: set[str] = set()
        deadline = time.monotonic() + timeout_s

        def done() -> bool:
            died = worker is not None and worker.poll() is not None
            complete = len(shown) >= count and (not dispatching or answered >= admitted)
            return died or time.monotonic() > deadline or complete

        for seen in tail.follow(settings, start=start, stop=done):
            rid = seen.record.get("request_id")
            if rid not in sent:
                continue
            if seen.topic == settings.topic(Topic.COMPLETIONS):
                if rid not in answered:
                    tail.print_seen(console, seen, settings, json_lines=False)
                    answered.add(rid)
            elif rid not in shown:
                tail.print_seen(console, seen, settings, json_lines=False)
                shown.add(rid)
                if seen.record.get("outcome") == "ADMITTED":
                    admitted.add(rid)
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
        if dispatching and not answered >= admitted:
            raise GuardstreamError(
                f"only {len(answered & admitted)} of {len(admitted)} admitted requests were "
                f"answered within {timeout_s:.0f} s",
                f"read the worker log {log_path}",
            )
        if dispatching:
            spent = _charged(settings, audit_start, answered, timeout_s=30)
            console.print(
                f"[green]✓[/] usage settled by the dispatch stage: {len(spent)} requests "
                f"charged {sum(spent.values()):,} µ$ in all"
            )
        console.print(
            f"[bold green]demo done[/]: {len(shown)} decisions"
            + (f", {len(answered)} answers" if dispatching else "")
            + f" in {time.monotonic() - t0:.1f} s. "
            "The stack keeps running; `guardstream stack down` stops it."
        )
        return len(shown)
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(10)
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()


def _provider_simulator(settings: Settings, console: Console) -> subprocess.Popen[bytes] | None:
    """Start `guardstream provider-sim` where the providers file expects it (unless a
    provider already answers there); None when none was started."""
    port = int(os.environ.get("GUARDSTREAM_PROVIDER_SIM_PORT", "8700"))
    if port_open("127.0.0.1", port):
        console.print(f"a provider already answers on port {port}: using it")
        return None
    log_path = settings.data_dir / "logs" / "provider-sim.log"
    with log_path.open("ab") as log:
        sim = subprocess.Popen(
            [sys.executable, "-m", "guardstream", "provider-sim", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if sim.poll() is not None or time.monotonic() > deadline:
            raise GuardstreamError(
                f"the provider simulator did not start on port {port}",
                f"read {log_path}, or set GUARDSTREAM_PROVIDER_SIM_PORT to a free port",
            )
        time.sleep(0.2)
    console.print(f"[green]✓[/] provider simulator on port {port} (log {log_path})")
    return sim


def _audit_end(settings: Settings) -> dict[int, int]:
    """The audit topic's end offset per partition (the demo's charges come after it)."""
    topic = settings.topic(Topic.AUDIT)
    consumer = Consumer(kafka_config(settings, {"group.id": "unused", "log_level": 0}))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: high_watermark(consumer, topic, p) for p in parts}
    finally:
        consumer.close()


def _charged(
    settings: Settings, start: dict[int, int], ids: set[str], timeout_s: float
) -> dict[str, int]:
    """What the meter charged each of `ids` (audit CHARGE events after `start`)."""
    topic = settings.topic(Topic.AUDIT)
    registry = Registry(settings)
    codec = Codec(settings, registry)
    consumer = Consumer(kafka_config(settings, {"group.id": "unused", "log_level": 0}))
    consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    charged: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(charged) < len(ids) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            rec = codec.decode(msg.value() or b"", Topic.AUDIT)
            if rec["kind"] == "CHARGE" and rec["request_id"] in ids:
                charged[rec["request_id"]] = rec["amount_micros"]
    finally:
        consumer.close()
        registry.close()
    return charged
