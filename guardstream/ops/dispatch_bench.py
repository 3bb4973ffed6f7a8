"""`guardstream bench dispatch`: answers per second and calls in flight, against a slow provider.

One worker with the dispatch stage on a fresh topic prefix, `guardstream provider-sim`
answering every call after `latency_s` (plain 16-token answers, streamed), and a flood of
`requests` bench requests (~1 KB prompts). Measured:

- completions/s: completions written between the first and the last, over that time;
- calls in flight: the simulator's own count of concurrent calls (its peak), so what the
  provider saw, not what the worker meant to do;
- event-loop stalls: a probe asks the worker's web page (`/health/live`, served on the
  same event loop as the agents) every 100 ms; its slowest answer bounds the longest
  stretch the loop could not serve anything else.

With a provider taking `latency_s` per call and one worker holding N calls at once, the
ceiling is N / latency_s completions/s; the figure says how close the worker gets.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from confluent_kafka import Consumer

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.ops.bench import RequestSender, bench_settings, prepare_pipeline
from guardstream.ops.compare import Run, free_port
from guardstream.ops.worker_process import worker_env
from guardstream.streams.clients import kafka_config
from guardstream.streams.reader import assign_from_beginning
from guardstream.streams.topics import Topic

MODEL = "gpt-4o-mini"  # what the bench requests ask for


@dataclass(frozen=True)
class DispatchResult:
    """One run's figures."""

    requests: int
    latency_s: float
    max_in_flight: int  # the setting
    completions_per_s: float
    peak_in_flight: int  # what the simulator saw
    ceiling_per_s: float  # max_in_flight / latency_s
    worst_probe_ms: float
    p99_probe_ms: float
    seconds: float


def _providers(path: Path, port: int, in_flight: int) -> None:
    deployment = {
        "name": "bench",
        "base_url": f"http://127.0.0.1:{port}/d/bench/v1",
        "timeout_s": 60,
        "max_concurrent": in_flight,
    }
    path.write_text(
        yaml.safe_dump(
            {"version": 1, "models": {MODEL: {"deployments": [deployment]}}},
            sort_keys=False,
        )
    )


class _Probe(threading.Thread):
    """Times the worker's `/health/live` every 100 ms."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/health/live"
        self.stop = threading.Event()
        self.times_ms: list[float] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.wait(0.1):
                t0 = time.perf_counter()
                try:
                    client.get(self.url)
                except httpx.HTTPError:
                    continue
                self.times_ms.append((time.perf_counter() - t0) * 1000)


def measure(
    settings: Settings,
    requests: int,
    latency_s: float,
    in_flight: int,
    status: Callable[[str], None],
    advance: Callable[[int], None],
) -> DispatchResult:
    """Flood one dispatching worker with `requests` against a provider taking `latency_s`."""
    if requests < 100:
        raise GuardstreamError(f"--requests {requests} is too few", "use at least 100")
    tmp = Path(tempfile.mkdtemp(prefix="gsdispatch-bench-"))
    s = bench_settings(settings, f"gsdb{uuid.uuid4().hex[:6]}", tmp)
    run = Run(s, tmp, outputs=[])
    try:
        status("creating topics")
        request_id = prepare_pipeline(s, tmp)
        sim_port, web_port = free_port(), free_port()
        (tmp / "sim.yaml").write_text(
            yaml.safe_dump({"default": {"latency_s": latency_s, "completion_tokens": 16}})
        )
        argv = [sys.executable, "-m", "guardstream", "provider-sim"]
        run.start("sim", [*argv, "--port", str(sim_port), "--config", str(tmp / "sim.yaml")], {})
        _providers(tmp / "providers.yaml", sim_port, in_flight)
        env = {
            **worker_env(s, tmp / "state", web_port),
            "GUARDSTREAM_DISPATCH": "true",
            "GUARDSTREAM_DISPATCH_MAX_IN_FLIGHT": str(in_flight),
            "GUARDSTREAM_PROVIDERS_FILE": str(tmp / "providers.yaml"),
        }
        run.start("worker", [sys.executable, "-m", "guardstream", "worker"], env)
        status("starting the worker")
        _wait(run, lambda: _ok(f"http://127.0.0.1:{web_port}/health/ready"), 180)
        _wait(run, lambda: _ok(f"http://127.0.0.1:{sim_port}/sim/stats"), 30)
        status("sending")
        sender = RequestSender(s, request_id, uuid.uuid4().hex[:6])
        built = [sender.build(i) for i in range(requests)]
        probe = _Probe(web_port)
        probe.start()
        started = time.monotonic()
        for b in built:
            sender.send_built(b)
        sender.flush()
        status("answering")
        first, last = _follow_completions(s, requests, run, advance, 60 + 3 * requests * latency_s)
        probe.stop.set()
        probe.join(5)
        stats = httpx.get(f"http://127.0.0.1:{sim_port}/sim/stats", timeout=5).json()
        times = sorted(probe.times_ms) or [0.0]
        return DispatchResult(
            requests=requests,
            latency_s=latency_s,
            max_in_flight=in_flight,
            completions_per_s=(requests - 1) / max(last - first, 1e-9),
            peak_in_flight=int(stats["max_in_flight"]),
            ceiling_per_s=in_flight / latency_s,
            worst_probe_ms=times[-1],
            p99_probe_ms=times[min(len(times) - 1, int(len(times) * 0.99))],
            seconds=time.monotonic() - started,
        )
    finally:
        status("cleaning up")
        run.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(run: Run, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        run.check_alive()
        if time.monotonic() > deadline:
            raise GuardstreamError("the benchmark's worker never got ready", run.log_tail())
        time.sleep(0.5)


def _follow_completions(
    s: Settings, n: int, run: Run, advance: Callable[[int], None], timeout_s: float
) -> tuple[float, float]:
    """Read completions until `n` distinct ones; when the first and the last arrived."""
    consumer = Consumer(kafka_config(s, {"group.id": "unused", "log_level": 0}))
    assign_from_beginning(consumer, [s.topic(Topic.COMPLETIONS)])
    seen: set[bytes] = set()
    first = last = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < n:
            if time.monotonic() > deadline:
                raise GuardstreamError(
                    f"only {len(seen)} of {n} completions within {timeout_s:.0f} s",
                    run.log_tail(),
                )
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                raw = dict(msg.headers() or []).get("ce_id") or b""
                key = raw if isinstance(raw, bytes) else raw.encode()
                if key not in seen:
                    seen.add(key)
                    last = time.monotonic()
                    first = first or last
            advance(len(seen))
            run.check_alive()
    finally:
        consumer.close()
    return first, last
