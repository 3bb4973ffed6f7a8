"""`guardstream bench restore`: how long a worker takes to rebuild its state from the changelog.

A worker that loses its state directory (a new pod, a wiped disk) must replay the meter
table's changelog (`<app_id>-meter-changelog`) into RocksDB before it decides anything. For
each N this measures, on a fresh topic prefix and app id:

1. fill: N synthetic table entries produced straight into the changelog, shaped and sized
   like the meter's own (`guardstream.metering.keys`), over many tenants and every partition;
2. cold start: one `python -m guardstream worker` on an empty state directory, from process
   start until `/health/ready` answers 200 (table recovery done, partitions held);
3. the worker stopped with SIGTERM, its RocksDB opened read-only and its keys counted, so
   "ready" is checked against what was actually restored;
4. warm start: the same worker again on the same state directory (nothing to replay): the
   fixed cost of a start, which the cold figure includes too.

Everything runs in subprocesses on the local stack and is removed afterwards (topics, temp
dirs), also on error.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.metering.keys import (
    dedup_key,
    journal_key,
    request_key,
    reservation_key,
    state_key,
)
from guardstream.metering.periods import Period, period_keys
from guardstream.metering.step import TenantState, dumps
from guardstream.ops.bench import bench_settings, prepare_pipeline, prompt
from guardstream.ops.compare import Run, free_port
from guardstream.ops.worker_process import worker_env
from guardstream.records import Ingress, decision
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import METER_TABLE, Topic, changelog_topic

TABLE = METER_TABLE
MIN_KEYS = 1000
# Faust stores each partition's changelog offset in that partition's RocksDB under this key;
# it is bookkeeping, not a table entry, so it is left out of the count.
_OFFSET_KEY = b"__faust\0offset__"
_BASE_TS_MS = 1_790_000_000_000


@dataclass(frozen=True)
class Start:
    """One worker start, timed from outside."""

    live_s: float  # process start → `/health/live` answers (imports, app built, web up)
    ready_s: float  # process start → `/health/ready` answers 200 (recovery done)
    peak_rss_mb: float  # VmHWM once ready: the high-water mark of the start and the replay
    stop_s: float  # SIGTERM → exit


@dataclass(frozen=True)
class RestoreResult:
    """What restoring N changelog entries cost one worker."""

    app_id: str  # also the run's topic prefix (all of its topics are gone afterwards)
    keys: int
    tenants: int
    changelog_mb: float  # key + value bytes produced (no record overhead, uncompressed)
    fill_s: float
    cold: Start
    warm: Start
    produced: list[int]  # entries per changelog partition
    restored: list[int]  # keys per partition in the worker's RocksDB after the cold start
    after_warm: list[int]  # the same after the warm start

    @property
    def keys_per_s(self) -> float:
        """Entries restored per second of cold start (start-up included)."""
        return self.keys / self.cold.ready_s


def tenant_count(keys: int) -> int:
    """How many tenants N entries are spread over: one per 1,000 entries, 50 to 1,000."""
    return min(1000, max(50, keys // 1000))


def tenant_partition(tenant: str, partitions: int) -> int:
    """The metering partition of a tenant's records, and so of its changelog entries.

    Faust writes a table entry to the changelog partition of the record being processed, and
    the ingest stage keys metering records by tenant; guardstream's output producer places
    keys with Kafka's murmur2 partitioner (as Java clients and aiokafka do). So the same
    murmur2 of the tenant id puts each synthetic entry where the meter would have put it (a
    worker looking a tenant up reads that partition's RocksDB).
    """
    from aiokafka.partitioner import murmur2

    return int(murmur2(tenant.encode()) & 0x7FFFFFFF) % partitions


def synthetic_entries(s: Settings, keys: int, seed: int = 11) -> Iterator[tuple[int, bytes, bytes]]:
    """`keys` (partition, key, value) changelog entries shaped like the meter's.

    Per applied request the meter writes an `r` (the stored decision, with the sanitized
    request and its audit events), a `q` (journal), a `v` (reservation) and a `d` (first-seen
    decision): so entries come in those groups of four, round-robin over the tenants, and
    each tenant's `s` (state) comes last, as the meter writes it after the entries. Values
    are built with the meter's own encoder and the real record builders; prompts are short
    (100-400 characters, so `r` is ~0.8-1.2 KB and the others ~150-350 bytes): a 1 KB prompt
    makes a real `r` ~1.8 KB.
    """
    rnd = random.Random(seed)
    tenants = [f"restore{i:04d}" for i in range(tenant_count(keys))]
    parts = {t: tenant_partition(t, s.default_partitions) for t in tenants}
    requests_topic = s.topic(Topic.REQUESTS)
    metering_next = [0] * s.default_partitions  # offsets on each metering partition
    seq = dict.fromkeys(tenants, 0)
    prompts = [prompt(rnd, rnd.randrange(100, 400), rnd.random() < 0.2) for _ in range(64)]
    day, month = period_keys(_BASE_TS_MS)
    entries = keys - len(tenants)
    i = 0
    while i < entries:
        tenant = tenants[(i // 4) % len(tenants)]
        p = parts[tenant]
        offset = metering_next[p]
        metering_next[p] += 1
        ts = _BASE_TS_MS + offset
        ingress = Ingress(requests_topic, p, offset, ts)
        ikey = f"{requests_topic}/{p}/{offset}"
        request_id = str(uuid.UUID(int=rnd.getrandbits(128)))
        amount = rnd.randrange(500, 50_000)
        admitted = decision(
            ingress,
            request_id=request_id,
            request_source="/bench",
            tenant_id=tenant,
            admitted=True,
            sanitized_request={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": rnd.choice(prompts)}],
                "max_tokens": 200,
            },
            cost_estimate_micros=amount,
            findings={"email": 1} if rnd.random() < 0.2 else {},
            injection_score=rnd.randrange(0, 20),
            budget_remaining_micros=10**9 - amount,
        )
        audit = {
            "event_id": str(uuid.UUID(int=rnd.getrandbits(128))),
            "kind": "RESERVE",
            "tenant_id": tenant,
            "request_id": request_id,
            "amount_micros": amount,
            "period": None,
            "detail": "",
            "ts": ts,
            "metering_partition": p,
            "metering_offset": offset,
        }
        d_key = dedup_key(tenant, "e", f"/bench\x1f{request_id}")
        v_key = reservation_key(tenant, request_id)
        group = [
            (
                request_key(tenant, ikey),
                {"decision": admitted, "audits": [audit], "pos": [p, offset]},
            ),
            (
                journal_key(tenant, seq[tenant]),
                {
                    "ts": ts,
                    "ikey": ikey,
                    "rid": request_id,
                    "keys": [d_key.decode(), v_key.decode()],
                },
            ),
            (
                v_key,
                {
                    "a": amount,
                    "d": day,
                    "m": month,
                    "s": "held",
                    "p": None,
                    "by": [p, offset],
                    "ikey": ikey,
                },
            ),
            (d_key, {"decision_id": admitted["decision_id"], "ts": ts, "ikey": ikey}),
        ]
        seq[tenant] += 1
        for key, value in group[: entries - i]:
            yield p, key, dumps(value)
        i += len(group)
    for tenant in tenants:
        state = TenantState(
            last_partition=parts[tenant],
            last_offset=metering_next[parts[tenant]] - 1,
            periods={day: Period(limit=10**9, reserved=12_345), month: Period(limit=10**10)},
            q_next=seq[tenant],
        )
        yield parts[tenant], state_key(tenant), state.to_bytes()


def fill_changelog(s: Settings, keys: int, advance: Callable[[int], None]) -> tuple[list[int], int]:
    """Produce `keys` synthetic entries into the changelog; (entries per partition, bytes).

    The topic is there already: `ensure_topics` (run by `prepare_pipeline`) creates it.
    """
    from confluent_kafka import Producer

    topic = changelog_topic(s, TABLE)
    # Big batches and a deep queue: the fill is setup, not what is measured, and should take
    # seconds per million. acks=1 as every entry must be there when the worker starts.
    producer = Producer(
        kafka_config(
            s,
            {
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "acks": 1,
                "enable.idempotence": False,
                "log_level": 0,
            },
        )
    )
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    produced = [0] * s.default_partitions
    size = 0
    for n, (partition, key, value) in enumerate(synthetic_entries(s, keys), 1):
        while True:
            try:
                producer.produce(topic, value, key, partition, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        produced[partition] += 1
        size += len(key) + len(value)
        if n % 10_000 == 0:
            producer.poll(0)
            advance(n)
    if producer.flush(120) or failures:
        raise GuardstreamError(
            f"filling {topic} failed ({len(failures)} records not delivered"
            + (f": {failures[0]}" if failures else ", flush timed out")
            + ")",
            "check the broker (`guardstream stack status`, `guardstream stack logs kafka`)",
        )
    advance(keys)
    return produced, size


def _vm_hwm_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _get_status(url: str) -> int | None:
    """The HTTP status of GET `url`, or None when nothing answers yet."""
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def timed_start(run: Run, name: str, state_dir: Path, timeout_s: float) -> Start:
    """Start a worker on `state_dir`, time it until ready, then stop it with SIGTERM.

    "Ready" is the worker's own `/health/ready` answering 200 (`guardstream.runtime.health`):
    it requires Faust's recovery-completed event, no changelog replay or rebalance in
    progress and the consumer holding guardstream's partitions, i.e. exactly "restored and
    processing". It is what an orchestrator waits for, and it does not depend on log
    wording or log level as Faust's "Worker ready" line would. Polled every 50 ms, which
    bounds the resolution; the process start (Popen) is the zero, so Python imports and
    building the app are included, as they are for a real restart.
    """
    port = free_port()
    base = f"http://{run.s.host}:{port}"
    started = time.monotonic()
    proc = run.start(
        name, [sys.executable, "-m", "guardstream", "worker"], worker_env(run.s, state_dir, port)
    )
    live_s = 0.0
    deadline = started + timeout_s
    while True:
        run.check_alive()
        status = _get_status(f"{base}/health/ready")
        now = time.monotonic()
        if status is not None and not live_s:
            live_s = now - started  # the web server answers: start-up is behind us
        if status == 200:
            ready_s = now - started
            break
        if now > deadline:
            raise GuardstreamError(
                f"worker {name} not ready after {timeout_s:.0f} s", run.log_tail()
            )
        time.sleep(0.05)
    peak = _vm_hwm_mb(proc.pid)
    t0 = time.monotonic()
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    stop_s = time.monotonic() - t0
    # Stopped on purpose: `check_alive` must not take its exit for a failure from now on.
    run.procs.remove(proc)
    return Start(live_s, ready_s, peak, stop_s)


def table_keys(state_dir: Path, partitions: int, table: str = TABLE) -> list[int]:
    """Keys per partition in a stopped worker's RocksDB store of `table` (opened read-only).

    Faust keeps one RocksDB per table partition, `<tabledir>/<table>-<partition>.db`, in raw
    mode (keys and values are the changelog's bytes).
    """
    from rocksdict import AccessType, Options, Rdict

    counts = [0] * partitions
    for path in state_dir.glob(f"**/{table}-*.db"):
        partition = int(path.name.removesuffix(".db").rsplit("-", 1)[1])
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            # `.keys()`: an Rdict does not iterate like a dict.
            counts[partition] += sum(1 for k in db.keys() if k != _OFFSET_KEY)  # noqa: SIM118
        finally:
            db.close()
    return counts


def fresh_run(settings: Settings, keys: int, what: str, tmp_prefix: str, app_prefix: str) -> Run:
    """A run on a new temp dir and a fresh topic prefix and app id, for `keys` table entries.

    `what` names the measurement in the error when `keys` is below MIN_KEYS.
    """
    if keys < MIN_KEYS:
        raise GuardstreamError(
            f"--keys {keys} is too few to measure {what}", f"use at least {MIN_KEYS}"
        )
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix))
    s = bench_settings(settings, f"{app_prefix}{uuid.uuid4().hex[:6]}", tmp)
    return Run(s, tmp, outputs=[])


def measure(
    settings: Settings,
    keys: int,
    status: Callable[[str], None],
    advance: Callable[[int], None],
) -> RestoreResult:
    """Fill a fresh changelog with `keys` entries and time a cold and a warm worker start."""
    run = fresh_run(settings, keys, "a restore", f"gsrestore-{keys}-", "gsrst")
    s, tmp = run.s, run.tmp
    try:
        status("creating topics")
        prepare_pipeline(s, tmp)
        status("filling the changelog")
        t0 = time.monotonic()
        produced, size = fill_changelog(s, keys, advance)
        fill_s = time.monotonic() - t0
        state_dir = tmp / "state"
        # Replay is ~linear in N; a generous bound so a slow machine is reported, not hung.
        timeout_s = 120 + keys / 1000
        status("cold start (restoring)")
        cold = timed_start(run, "cold", state_dir, timeout_s)
        status("counting restored keys")
        restored = table_keys(state_dir, s.default_partitions)
        status("warm start")
        warm = timed_start(run, "warm", state_dir, timeout_s)
        after_warm = table_keys(state_dir, s.default_partitions)
        return RestoreResult(
            s.app_id,
            keys,
            tenant_count(keys),
            size / 1e6,
            fill_s,
            cold,
            warm,
            produced,
            restored,
            after_warm,
        )
    finally:
        status("cleaning up")
        run.close()


def growth_per_100k(results: list[RestoreResult]) -> list[tuple[int, int, float]]:
    """Cold-start seconds per 100k more keys between consecutive sizes: (from, to, s)."""
    ordered = sorted(results, key=lambda r: r.keys)
    return [
        (a.keys, b.keys, (b.cold.ready_s - a.cold.ready_s) * 100_000 / (b.keys - a.keys))
        for a, b in itertools.pairwise(ordered)
        if b.keys > a.keys
    ]
