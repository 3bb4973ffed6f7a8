"""`guardstream bench compare | profile`: the pipeline against a pass-through and a minimal agent.

`compare` runs, one after another on the local stack and on the same input (the `bench
pipeline` generator: ~1 KB prompts, 20 % with PII, 50 tenants), each on a fresh topic prefix
and app id:

- ``passthrough``: a plain aiokafka consume→produce (`guardstream.ops.passthrough`),
- ``minimal agent``: a Faust agent with Avro decode, a RocksDB counter and one send
  (`guardstream.ops.minimal_agent`),
- ``pipeline 1w`` / ``pipeline 2w``: guardstream's workers (`python -m guardstream worker`).

Each system runs in subprocesses and is measured from outside: records/s from the output
topics' end offsets (first to last output of the flood), CPU per record from the processes'
``/proc/<pid>/stat`` (and the broker's), and produce→output latency (the output record's
timestamp minus the request's). `profile` floods the one-worker pipeline under py-spy.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.ops.bench import (
    RequestSender,
    _quantiles,
    bench_settings,
    create_topic,
    fill_ingress_ts,
    prepare_pipeline,
)
from guardstream.ops.worker_process import worker_env
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import Topic

WARMUP = 50
SYSTEMS = ("passthrough", "minimal", "pipeline1", "pipeline2")
LABELS = {
    "passthrough": "aiokafka pass-through",
    "minimal": "minimal Faust agent",
    "pipeline1": "pipeline, 1 worker",
    "pipeline2": "pipeline, 2 workers",
}
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class SystemResult:
    """What one system did with the flood."""

    system: str
    records: int
    seconds: float
    per_s: float
    cpu_ms_per_record: float
    broker_cpu_ms_per_record: float | None
    p50_ms: float
    p99_ms: float
    processes: int


@dataclass
class Run:
    """One system's fresh topics, temp dir and subprocesses; `close` removes all of them."""

    s: Settings
    tmp: Path
    outputs: list[str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        self.logs.append(log)
        # Own session: a Ctrl-C in the terminal reaches us only, and we stop them in order.
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise GuardstreamError(
                    f"benchmark process {proc.args!r} exited with {proc.returncode}",
                    self.log_tail(),
                )

    def log_tail(self) -> str:
        """The end of each process's log (the temp dir goes away with `close`)."""
        for log in self.logs:
            log.flush()
        return "".join(
            f"{p.name}: ...{p.read_text(errors='replace')[-1500:]}\n"
            for p in sorted(self.tmp.glob("*.log"))
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for log in self.logs:
            log.close()
        with contextlib.suppress(Exception):
            delete_topics(self.s)
        shutil.rmtree(self.tmp, ignore_errors=True)


def delete_topics(s: Settings) -> None:
    """Delete the run's topics (its prefix and the app's changelogs)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(s, log_level=0))
    names = [
        t
        for t in admin.list_topics(timeout=10).topics
        if t.startswith(f"{s.topic_prefix}.") or t.startswith(f"{s.app_id}-")
    ]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()


def free_port() -> int:
    """A TCP port nothing listens on right now (for a worker's web server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def broker_pid(settings: Settings) -> int | None:
    """The local stack's Kafka pid, when `guardstream stack up` started it."""
    try:
        from guardstream.stack.services import _services

        return _services(settings)[0].pid()
    except Exception:
        return None


class _Outputs:
    """End offsets of the output topics, summed over their partitions."""

    def __init__(self, s: Settings, topics: Sequence[str]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            kafka_config(s, {"group.id": "unused", "enable.auto.commit": False, "log_level": 0})
        )
        self._parts = []
        for t in topics:
            md = self._consumer.list_topics(t, timeout=10).topics[t]
            self._parts += [TopicPartition(t, p) for p in md.partitions]

    def total(self) -> int:
        return sum(
            self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            for tp in self._parts
        )

    def close(self) -> None:
        self._consumer.close()


def _wait_group(s: Settings, group: str, members: int, run: Run, timeout_s: float) -> None:
    """Until consumer group `group` is stable with `members` members."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(s, log_level=0))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run.check_alive()
        with contextlib.suppress(Exception):
            desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
            if desc.state == ConsumerGroupState.STABLE and len(desc.members) >= members:
                return
        time.sleep(0.5)
    raise GuardstreamError(
        f"consumer group {group} not stable with {members} members in time",
        run.log_tail(),
    )


def _wait_total(
    outputs: _Outputs, target: int, run: Run, timeout_s: float, tick: Callable[[int], None]
) -> tuple[float, int, float]:
    """Poll end offsets until they reach `target`: (time of the first change, count then, end)."""
    base = outputs.total()
    first_t, first_n = 0.0, base
    deadline = time.monotonic() + timeout_s
    while True:
        now_n = outputs.total()
        now = time.monotonic()
        tick(now_n)
        if not first_t and now_n > base:
            first_t, first_n = now, now_n
        if now_n >= target:
            return first_t or now, first_n, now
        if now > deadline:
            raise GuardstreamError(
                f"only {now_n} of {target} outputs after {timeout_s:.0f} s",
                run.log_tail(),
            )
        run.check_alive()
        time.sleep(0.02)


def _request_id(system: str, decoder: Codec | None) -> Callable[[Any], str | None]:
    """How to find the request's id in one output record of `system`."""

    def from_header(msg: Any) -> str | None:
        for k, v in msg.headers() or []:
            if k == "ce_id" and v is not None:
                return bytes(v).decode()
        return None

    def from_json(msg: Any) -> str | None:
        return str(json.loads(msg.value())["id"])

    def from_decision(msg: Any) -> str | None:
        assert decoder is not None
        return str(decoder.decode(msg.value() or b"", Topic.ADMITTED)["request_id"])

    return {"passthrough": from_header, "minimal": from_json}.get(system, from_decision)


def _latencies(s: Settings, system: str, outputs: Sequence[str], run_tag: str) -> list[float]:
    """Produce→output latencies (ms) of the flood's requests (not the warm-up's)."""
    from guardstream.streams.reader import read_to_end

    ingress: dict[str, int] = {}
    fill_ingress_ts(s, ingress)
    registry = Registry(s) if system.startswith("pipeline") else None
    decoder = Codec(s, registry) if registry else None
    find = _request_id(system, decoder)
    lat: list[float] = []
    try:
        for msg in read_to_end(s, list(outputs), batch=2000, poll_s=1.0, watermark_timeout_s=10):
            rid = find(msg)
            if rid is None or rid not in ingress or int(rid.rsplit("-", 1)[1]) < WARMUP:
                continue
            lat.append(msg.timestamp()[1] - ingress[rid])
    finally:
        if registry:
            registry.close()
    return lat


def _setup(settings: Settings, system: str) -> tuple[Run, str, int]:
    """A fresh prefix and app id for `system`: its topics, schemas, tenants and output topics."""
    tag = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix=f"gscmp-{system}-"))
    s = bench_settings(settings, f"gscmp{tag}{system}", tmp)
    if system.startswith("pipeline"):
        outputs = [s.topic(Topic.ADMITTED), s.topic(Topic.REJECTED)]
    else:
        outputs = [f"{s.topic_prefix}.{system}-out"]
    run = Run(s, tmp, outputs)
    try:
        request_id = prepare_pipeline(s, tmp)
        if not system.startswith("pipeline"):
            create_topic(s, outputs[0])
    except BaseException:
        run.close()
        raise
    return run, tag, request_id


def _start(run: Run, system: str) -> tuple[str, int]:
    """Start `system`'s processes; (its consumer group, how many members to wait for)."""
    s, py = run.s, sys.executable
    if system == "passthrough":
        group = f"{s.app_id}-passthrough"
        argv = [py, "-m", "guardstream.ops.passthrough", s.topic(Topic.REQUESTS)]
        run.start(system, [*argv, run.outputs[0], group], worker_env(s, run.tmp / "state"))
        return group, 1
    if system == "minimal":
        argv = [py, "-m", "guardstream.ops.minimal_agent", run.outputs[0], str(free_port())]
        run.start(system, argv, worker_env(s, run.tmp / "state"))
        return s.app_id, 1
    workers = 2 if system == "pipeline2" else 1
    for w in range(workers):
        env = worker_env(s, run.tmp / f"state{w}", free_port())
        run.start(f"worker{w}", [py, "-m", "guardstream", "worker"], env)
    return s.app_id, workers


def _warm(
    run: Run, system: str, sender: RequestSender, outputs: _Outputs, status: Callable[[str], None]
) -> None:
    """Start the system, let it join and decide the warm-up requests, and settle its group."""
    status("starting")
    group, members = _start(run, system)
    _wait_group(run.s, group, members, run, 240)
    status("warming up")
    for i in range(WARMUP):
        sender.send(i)
    sender.flush(60)
    _wait_total(outputs, WARMUP, run, 240, lambda _n: None)
    _wait_group(run.s, group, members, run, 120)  # a late joiner's rebalance is over


def measure(
    settings: Settings,
    system: str,
    n: int,
    status: Callable[[str], None],
    advance: Callable[[int], None],
) -> SystemResult:
    """Flood `system` with `n` requests after a warm-up; what it sustained and what it cost."""
    run, tag, request_id = _setup(settings, system)
    outputs: _Outputs | None = None
    try:
        sender = RequestSender(run.s, request_id, tag)
        outputs = _Outputs(run.s, run.outputs)
        _warm(run, system, sender, outputs, status)
        # Made before the flood: sending must outpace every system, even the pass-through,
        # so what is measured is the system draining a backlog, not the generator's pace.
        status("making requests")
        flood = [sender.build(i) for i in range(WARMUP, WARMUP + n)]
        status("flooding")
        pids = [p.pid for p in run.procs]
        broker = broker_pid(settings)
        cpu0 = sum(cpu_seconds(p) for p in pids)
        broker0 = cpu_seconds(broker) if broker else 0.0
        for built in flood:
            sender.send_built(built)
        sender.flush(120)
        first_t, first_n, last_t = _wait_total(
            outputs, WARMUP + n, run, 60 + n / 20, lambda m: advance(m - WARMUP)
        )
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        broker_cpu = cpu_seconds(broker) - broker0 if broker else None
        status("reading latencies")
        lat = _latencies(run.s, system, run.outputs, tag)
        p50, p99 = _quantiles(lat) if len(lat) > 1 else (float("nan"), float("nan"))
        seconds = max(last_t - first_t, 1e-3)
        return SystemResult(
            system,
            n,
            seconds,
            (WARMUP + n - first_n) / seconds,
            cpu * 1e3 / n,
            broker_cpu * 1e3 / n if broker_cpu is not None else None,
            p50,
            p99,
            len(pids),
        )
    finally:
        if outputs:
            outputs.close()
        run.close()


def compare(
    settings: Settings,
    n: int,
    systems: Sequence[str],
    on_status: Callable[[str, str], None],
    on_advance: Callable[[str, int], None],
) -> list[SystemResult]:
    """`measure` each of `systems` in turn on `n` requests."""
    results = []
    for system in systems:
        results.append(
            measure(
                settings,
                system,
                n,
                functools.partial(on_status, system),
                functools.partial(on_advance, system),
            )
        )
    return results


# --- profile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """py-spy samples of the one-worker pipeline, aggregated by function."""

    samples: int
    own: list[tuple[str, int]]
    total: list[tuple[str, int]]
    output: Path | None
    records: int


# Frames every sample of a worker passes through (start-up, the event loop, thread start):
# left out of the total-time list, where they would fill the top with ~100 % each.
ENTRY_FRAMES = (
    "(<frozen runpy>)",
    "(typer/",
    "(click/",
    "(threading.py)",
    "(asyncio/base_events.py)",
    "(asyncio/events.py)",
    "(mode/worker.py)",
    "(guardstream/__main__.py)",
    "run_worker (guardstream/app.py)",
    "(guardstream/cli/",
)


def aggregate_raw(
    lines: Iterator[str] | Sequence[str], top: int
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """From py-spy's raw (collapsed) stacks: (samples, top own-time, top total-time)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for f in set(frames):
            if not any(e in f for e in ENTRY_FRAMES):
                total[f] += count
    return samples, own.most_common(top), total.most_common(top)


def profile(
    settings: Settings,
    duration_s: int,
    n: int,
    output: Path | None,
    fmt: str,
    status: Callable[[str], None],
    top: int = 25,
    gil_only: bool = False,
    nonblocking: bool = True,
) -> Profile:
    """Flood the one-worker pipeline with `n` requests and sample its worker with py-spy."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise GuardstreamError("py-spy is not installed", "pip install py-spy")
    run, tag, request_id = _setup(settings, "pipeline1")
    outputs: _Outputs | None = None
    try:
        sender = RequestSender(run.s, request_id, tag)
        outputs = _Outputs(run.s, run.outputs)
        _warm(run, "pipeline1", sender, outputs, status)
        status(f"flooding {n} requests")
        for i in range(WARMUP, WARMUP + n):
            sender.send(i)
        sender.flush(120)
        worker = run.procs[0].pid
        raw = run.tmp / "profile.txt"
        status(f"py-spy on pid {worker} for {duration_s} s")
        spy = [py_spy, "record", "-p", str(worker), "-d", str(duration_s), "--nolineno"]
        spy += ["--gil"] if gil_only else []
        spy += ["--nonblocking"] if nonblocking else []
        before = outputs.total()
        _py_spy(run, [*spy, "-f", "raw", "-o", str(raw)])
        done = outputs.total() - before
        if output is not None:
            status(f"py-spy {fmt} to {output} for {duration_s} s")
            _py_spy(run, [*spy, "-f", fmt, "-o", str(output)])
        with raw.open() as lines:
            samples, own, total = aggregate_raw(lines, top)
        return Profile(samples, own, total, output, done)
    finally:
        if outputs:
            outputs.close()
        run.close()


def _py_spy(run: Run, argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        run.check_alive()
        raise GuardstreamError(f"py-spy failed ({result.returncode})", result.stderr[-2000:])
