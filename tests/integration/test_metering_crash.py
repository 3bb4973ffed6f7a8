"""Workers die under load; state effects must stay exact and decisions identical.

Requests across 50 tenants, then a usage report for every admitted one, with failures:
kill -9 of the only worker at a random moment in each phase (20 000 requests;
  GUARDSTREAM_CRASH_REQUESTS to change), its RocksDB directory deleted before the restart, so
  its tables can only come back from their changelog topics.
two workers sharing the partitions, one stopped cleanly mid-run: the other takes over.
two workers, one killed with -9 mid-run, with and without a table standby replica: the other
  takes over, from its standby copy when it has one.
Afterwards:
- every request has exactly one decision id, and every copy of a decision is byte-identical
  (faust commits after sending, so a replay re-sends; transactions are off);
- no request is answered DUPLICATE (a redelivery is not a resend);
- every tenant's charged total equals the cost of its settled usage, to the micro-dollar,
  with no request charged twice;
- replaying each tenant's audit events never finds reserved + charged above its budget.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from guardstream.config.catalog import load_catalog
from guardstream.config.settings import Settings
from guardstream.ops import schemas as schema_ops
from guardstream.ops import tenants as tenant_ops
from guardstream.ops.failover import STARTS_TITLE, recovery_table, takeover_replay
from guardstream.records import request_data
from guardstream.serde.avro import encode
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.serde.schemas import reader_schema, schema_text
from guardstream.streams.admin import ensure_topics
from guardstream.streams.clients import kafka_config
from guardstream.streams.reader import assign_from_beginning
from guardstream.streams.topics import REQUEST_TYPE, USAGE_TYPE, Topic, subject_for
from tests import SCHEMA_DIR, free_port

from .conftest import Worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
N = int(os.environ.get("GUARDSTREAM_CRASH_REQUESTS", "20000"))
TENANTS = [f"crash{i:02d}" for i in range(50)]
USAGE_IN, USAGE_OUT = 100, 50  # below every reservation (~260 estimated input + 200 max out)


class Collector(threading.Thread):
    """Reads decisions and audit events from the beginning, raw and decoded."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.codec = Codec(settings, Registry(settings))
        self.stop_flag = threading.Event()
        self.decisions: list[tuple[bytes, dict[str, Any]]] = []
        self.audits: list[tuple[int, int, bytes, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        c = Consumer(
            kafka_config(
                self.settings, {"group.id": "unused", "enable.auto.commit": False, "log_level": 0}
            )
        )
        assign_from_beginning(
            c, [self.settings.topic(t) for t in ("admitted", "rejected", "audit")]
        )
        while not self.stop_flag.is_set():
            for msg in c.consume(500, 0.5):
                if msg.error():
                    continue
                value = msg.value() or b""
                if (msg.topic() or "").endswith(".audit"):
                    rec = self.codec.decode(value, Topic.AUDIT)
                    with self.lock:
                        self.audits.append((msg.partition() or 0, msg.offset() or 0, value, rec))
                else:
                    rec = self.codec.decode(value, Topic.ADMITTED)
                    with self.lock:
                        self.decisions.append((value, rec))
        c.close()

    def decided(self) -> set[str]:
        with self.lock:
            return {r["request_id"] for _, r in self.decisions}

    def charged(self) -> set[str]:
        with self.lock:
            return {r["request_id"] for *_, r in self.audits if r["kind"] == "CHARGE"}


def _headers(ce_id: str, ce_type: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id.encode()),
        ("ce_source", b"/crash"),
        ("ce_type", ce_type.encode()),
        ("content-type", b"application/avro"),
    ]


def _restart(worker: Worker, settings: Settings, tmp: Path, n: int) -> tuple[Worker, float]:
    worker.kill()
    shutil.rmtree(settings.state_dir, ignore_errors=True)  # only the changelogs remain
    t0 = time.monotonic()
    fresh = Worker(settings, tmp / f"worker-{n}.log", loglevel="info")
    return fresh, t0


def _restored_in(worker: Worker, t0: float, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Restore complete" in worker.log.read_text(errors="replace"):
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError("the restarted worker never finished restoring its tables")


def _ready(worker: Worker) -> bool:
    try:
        port = worker.settings.worker_web_port
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


_T0 = time.monotonic()


def _wait(what: str, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    print(f"[{time.monotonic() - _T0:6.1f} s] {what}")


class Scenario:
    """A private prefix, 50 configured tenants, a collector, and the checks."""

    def __init__(self, stack: Settings, tmp: Path, n: int) -> None:
        self.run = uuid.uuid4().hex[:6]
        self.tmp = tmp
        self.n = n
        self.budget = max(2_000, n // 50 * 70)  # about half of a small-budget tenant's requests
        self.s = stack.model_copy(
            update={
                "topic_prefix": f"gscrash{self.run}",
                "app_id": f"gscrash{self.run}",
                "worker_web_port": free_port(),
                "worker_state_dir": tmp / "state",
            }
        )
        s = self.s
        ensure_topics(s)
        registry = Registry(s)
        schema_ops.register_all(s, registry)
        self.request_id = registry.lookup(
            subject_for(s, "requests"), schema_text("request", SCHEMA_DIR)
        )
        self.usage_id = registry.lookup(subject_for(s, "usage"), schema_text("usage", SCHEMA_DIR))
        registry.close()
        assert self.request_id and self.usage_id
        tenants_file = tmp / "tenants.yaml"
        tenants_file.write_text(
            "tenants:\n"
            + "".join(
                f"  - tenant_id: {t}\n    tier: premium\n    requests_per_minute: 1000000\n"
                f"    tokens_per_minute: 1000000000\n    burst_requests: 1000000\n"
                f"    burst_tokens: 1000000000\n"
                + (f"    daily_budget_micros: {self.budget}\n" if i % 2 else "")
                for i, t in enumerate(TENANTS)
            )
        )
        tenant_ops.apply(s, tenants_file)
        self.collector = Collector(s)
        self.collector.start()
        self.producer = Producer(
            kafka_config(s, {"linger.ms": 20, "enable.idempotence": True, "log_level": 0})
        )
        self.tenant_of: dict[str, str] = {}
        self.admitted: list[str] = []

    def worker(self, name: str, **changes: Any) -> Worker:
        settings = self.s.model_copy(update=changes) if changes else self.s
        return Worker(settings, self.tmp / f"{name}.log", loglevel="info")

    def send_requests(self) -> None:
        schema = reader_schema("request", SCHEMA_DIR)
        for i in range(self.n):
            tenant = TENANTS[i % len(TENANTS)]
            rid = f"{self.run}-req-{i}"
            self.tenant_of[rid] = tenant
            value = encode(
                self.request_id,
                schema,
                request_data(tenant, [{"role": "user", "content": "word " * 200}], max_tokens=200),
            )
            self.producer.produce(
                self.s.topic("requests"),
                key=tenant.encode(),
                value=value,
                headers=_headers(rid, REQUEST_TYPE),
            )
            if i % 1000 == 0:
                self.producer.poll(0)
        assert self.producer.flush(60) == 0

    def send_usage(self) -> None:
        with self.collector.lock:
            self.admitted = sorted(
                {r["request_id"] for _, r in self.collector.decisions if r["outcome"] == "ADMITTED"}
            )
        schema = reader_schema("usage", SCHEMA_DIR)
        for j, rid in enumerate(self.admitted):
            value = encode(
                self.usage_id,
                schema,
                {
                    "request_id": rid,
                    "tenant_id": self.tenant_of[rid],
                    "model": "gpt-4o-mini",
                    "input_tokens": USAGE_IN,
                    "output_tokens": USAGE_OUT,
                },
            )
            self.producer.produce(
                self.s.topic("usage"),
                key=self.tenant_of[rid].encode(),
                value=value,
                headers=_headers(f"{self.run}-use-{j}", USAGE_TYPE),
            )
            if j % 1000 == 0:
                self.producer.poll(0)
        assert self.producer.flush(60) == 0

    def all_decided(self) -> bool:
        return len(self.collector.decided()) >= self.n

    def all_charged(self) -> bool:
        return len(self.collector.charged()) >= len(self.admitted)

    def check(self) -> None:
        time.sleep(3)  # let stragglers (re-sent copies) arrive before judging
        collector = self.collector
        collector.stop_flag.set()
        collector.join(10)
        # --- one decision per request, copies identical, never DUPLICATE ---------------------
        by_request: dict[str, set[str]] = defaultdict(set)
        copies: dict[str, set[bytes]] = defaultdict(set)
        for raw, rec in collector.decisions:
            by_request[rec["request_id"]].add(rec["decision_id"])
            copies[rec["decision_id"]].add(raw)
        assert set(by_request) == set(self.tenant_of)
        assert all(len(ids) == 1 for ids in by_request.values())
        assert all(len(v) == 1 for v in copies.values()), "a re-sent decision differs"
        codes = {rec["reasons"][0]["code"] for _, rec in collector.decisions if rec["reasons"]}
        assert codes <= {"BUDGET_EXCEEDED"}, codes
        assert "BUDGET_EXCEEDED" in codes  # the budget path was exercised

        # --- audit: identical copies, exact charges, budgets never exceeded ------------------
        events: dict[str, tuple[int, int, dict[str, Any]]] = {}
        raw_by_id: dict[str, set[bytes]] = defaultdict(set)
        for part, offset, raw, rec in collector.audits:
            raw_by_id[rec["event_id"]].add(raw)
            events.setdefault(rec["event_id"], (part, offset, rec))
        assert all(len(v) == 1 for v in raw_by_id.values()), "a re-sent audit event differs"
        spec = load_catalog(self.s.model_catalog).models["gpt-4o-mini"]
        cost = -(-USAGE_IN * spec.input_micros_per_mtok // 1_000_000) - (
            USAGE_OUT * spec.output_micros_per_mtok // -1_000_000
        )
        unit = -(-cost * 9000 // 10_000)  # the premium tier's cost multiplier: 0.9x
        charged: dict[str, int] = defaultdict(int)
        charges_per_request: dict[str, int] = defaultdict(int)
        for _p, _o, rec in events.values():
            if rec["kind"] == "CHARGE":
                charged[rec["tenant_id"]] += rec["amount_micros"]
                charges_per_request[rec["request_id"]] += 1
        assert max(charges_per_request.values()) == 1
        assert not [r for *_, r in events.values() if r["kind"] == "USAGE_UNKNOWN"]
        settled: dict[str, int] = defaultdict(int)
        for rid in self.admitted:
            settled[self.tenant_of[rid]] += 1
        assert dict(charged) == {t: n * unit for t, n in settled.items()}

        for tenant in TENANTS[1::2]:  # the ones with a daily budget
            reserved: dict[str, int] = {}
            day_of: dict[str, str] = {}
            outstanding: dict[str, int] = defaultdict(int)
            spent: dict[str, int] = defaultdict(int)
            ordered = sorted(
                (v for v in events.values() if v[2]["tenant_id"] == tenant),
                key=lambda v: (v[0], v[1]),
            )
            for _p, _o, rec in ordered:
                day = datetime.fromtimestamp(rec["ts"] / 1000, tz=UTC).strftime("%Y-%m-%d")
                rid = rec["request_id"]
                if rec["kind"] == "RESERVE":
                    reserved[rid], day_of[rid] = rec["amount_micros"], day
                    outstanding[day] += rec["amount_micros"]
                    assert outstanding[day] + spent[day] <= self.budget, (tenant, day)
                elif rec["kind"] == "CHARGE":
                    outstanding[day_of[rid]] -= reserved[rid]
                    spent[day_of[rid]] += rec["amount_micros"]
                elif rec["kind"] == "EXPIRE":
                    outstanding[day_of[rid]] -= reserved[rid]


def test_kill_nine_twice_keeps_state_exact(stack: Settings, tmp_path: Path) -> None:
    sc = Scenario(stack, tmp_path, N)
    worker = sc.worker("worker-0")
    rnd = random.Random()
    sc.send_requests()
    kill_at = rnd.uniform(0.2, 0.7) * N
    _wait("decisions before the first kill", lambda: len(sc.collector.decided()) >= kill_at, 600)
    worker, t0 = _restart(worker, sc.s, tmp_path, 1)
    restore_1 = _restored_in(worker, t0)
    _wait("every request's decision", sc.all_decided, 420)
    sc.send_usage()
    kill_at = rnd.uniform(0.2, 0.7) * len(sc.admitted)
    _wait("charges before the second kill", lambda: len(sc.collector.charged()) >= kill_at, 600)
    worker, t0 = _restart(worker, sc.s, tmp_path, 2)
    restore_2 = _restored_in(worker, t0)
    _wait("every usage report's charge", sc.all_charged, 300)
    worker.stop()
    print(
        f"\nrestore after kill -9 with the state directory deleted: {restore_1:.1f} s and "
        f"{restore_2:.1f} s (worker start to 'Restore complete')"
    )
    sc.check()


def _two_workers_one_goes(
    sc: Scenario, tmp_path: Path, end: Callable[[Worker], None], **changes: Any
) -> tuple[Worker, Worker]:
    """Two workers share the partitions; `end` ends the first mid-run, the second finishes.

    Every request and usage report must get its outcome, and neither log may show a crash
    or a record that never reached its agent; `sc.check()` is left to the caller.
    """
    # One after the other, so the second never held the first's partitions (its RocksDB would
    # keep a copy of them, standby or not); both members of the group, partitions split and
    # tables recovered, before traffic.
    first = sc.worker("worker-a", **changes)
    _wait("the first worker ready", lambda: _ready(first), 120)
    second = sc.worker(
        "worker-b", worker_web_port=free_port(), worker_state_dir=tmp_path / "state-b", **changes
    )
    _wait("both workers ready", lambda: _ready(first) and _ready(second), 120)
    sc.send_requests()
    _wait(
        "decisions before ending one worker",
        lambda: len(sc.collector.decided()) >= sc.n * 0.4,
        600,
    )
    end(first)
    _wait("every request's decision", sc.all_decided, 420)
    sc.send_usage()
    _wait("every usage report's charge", sc.all_charged, 300)
    assert second.proc.poll() is None
    second.stop()
    for log in (first.log, second.log):
        text = log.read_text(errors="replace")
        assert "Crashed" not in text
        # The consumer handed every record to the agents (guardstream.continuity).
        assert "never reached the agent" not in text and "never arrived" not in text
    return first, second


def test_two_workers_one_stops_the_other_takes_over(stack: Settings, tmp_path: Path) -> None:
    sc = Scenario(stack, tmp_path, max(1000, N // 4))
    # A clean stop: the worker leaves the group, the other gets its partitions at once.
    _two_workers_one_goes(sc, tmp_path, Worker.stop)
    sc.check()


@pytest.mark.parametrize("standbys", [0, 1])
def test_a_killed_workers_partitions_come_from_the_standby_not_a_full_replay(
    stack: Settings, tmp_path: Path, standbys: int
) -> None:
    # kill -9 of one of two workers mid-run. With a standby replica the survivor has been
    # reading the victim's meter changelog partitions all along (written by guardstream's
    # own producer, `tables/changelog.py`, and read by Faust's standby reader): its takeover
    # replay starts where that copy ends, not at offset 0. Without one it replays them from
    # the beginning, which shows the check can tell the two apart. Exactness holds either way.
    sc = Scenario(stack, tmp_path, 1000)
    lost: list[int] = []
    metering = sc.s.topic(Topic.METERING)

    def kill_nine(worker: Worker) -> None:
        port = worker.settings.worker_web_port
        held = httpx.get(f"http://127.0.0.1:{port}/debug/consumer", timeout=10).json()
        lost.extend(
            int(k[len(metering) + 1 : -1])
            for k in held["partitions"]
            if k.startswith(f"{metering}[")
        )
        worker.kill()

    # A short session timeout: the broker notices the death sooner (not what is tested).
    _, survivor = _two_workers_one_goes(
        sc, tmp_path, kill_nine, table_standby_replicas=standbys, session_timeout_s=6
    )
    assert lost, "the killed worker held no metering partition"
    log = survivor.log.read_text(errors="replace")
    changelog = f"{sc.s.app_id}-meter-changelog"
    starts = recovery_table(log, STARTS_TITLE, changelog)
    replayed, held = takeover_replay(log, changelog, lost)
    print(f"\nstandbys={standbys}: replayed {replayed} of {held} entries in partitions {lost}")
    assert held > 0
    if standbys:
        assert all(starts[p] >= 0 for p in lost), starts  # never from the beginning
        assert replayed < held / 2, (replayed, held)
    else:
        assert all(starts[p] == -1 for p in lost), starts
        assert replayed == held
    sc.check()


def test_short_ttl_and_window_expire_and_delete_entries_in_a_real_worker(
    stack: Settings, tmp_path: Path
) -> None:
    # GUARDSTREAM_RESERVATION_TTL_S / _DEDUP_WINDOW_S of one second: usage sent two seconds
    # later finds its reservation expired (charged late) or its entries already deleted
    # (USAGE_UNKNOWN); the deletes go through the real table and changelog without error.
    sc = Scenario(stack, tmp_path, 300)
    worker = sc.worker("worker", reservation_ttl_s=1, dedup_window_s=1)
    sc.send_requests()
    _wait("every request's decision", sc.all_decided, 120)
    time.sleep(2)
    sc.send_usage()
    usage_audits = {"CHARGE", "USAGE_UNKNOWN"}

    def answered() -> set[str]:
        with sc.collector.lock:
            return {r["request_id"] for *_, r in sc.collector.audits if r["kind"] in usage_audits}

    _wait("an audit for every usage report", lambda: answered() >= set(sc.admitted), 120)
    worker.stop()
    with sc.collector.lock:
        kinds = [r["kind"] for *_, r in sc.collector.audits]
        late = [r for *_, r in sc.collector.audits if r["kind"] == "CHARGE"]
    assert "EXPIRE" in kinds and "USAGE_UNKNOWN" in kinds  # expired, then collected
    assert all(r["detail"].startswith("late") for r in late)
    log = worker.log.read_text(errors="replace")
    assert "meter failed" not in log and "Crashed" not in log


def test_a_clean_restart_on_its_state_dir_replays_nothing_and_stays_exact(
    stack: Settings, tmp_path: Path
) -> None:
    # The meter's changelog goes out on librdkafka (tables/changelog.py), so the offsets Faust
    # keeps in each RocksDB partition ("how far is this store up to date") are written by
    # guardstream after each flush. After a clean stop they must match the changelog's end:
    # lower would replay on every start, higher would skip records the store never got.
    sc = Scenario(stack, tmp_path, 2000)  # enough for budgets to run out (check() wants it)
    worker = sc.worker("worker-0")
    sc.send_requests()
    _wait("every request's decision", sc.all_decided, 180)
    worker.stop()

    from rocksdict import AccessType, Options, Rdict

    changelog = f"{sc.s.app_id}-meter-changelog"
    consumer = Consumer(kafka_config(sc.s, {"group.id": "unused", "log_level": 0}))
    stored: dict[int, int] = {}
    for path in sc.s.state_dir.glob("**/meter-*.db"):
        partition = int(path.name.removesuffix(".db").rsplit("-", 1)[1])
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            raw = db.get(b"__faust\0offset__")
        finally:
            db.close()
        if raw is not None:
            stored[partition] = int(raw)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(changelog, p), timeout=10)[1]
        for p in range(sc.s.default_partitions)
    }
    consumer.close()
    assert stored == {p: end - 1 for p, end in ends.items() if end > 0}

    # The same state directory again: usage for every admitted request settles exactly.
    worker = sc.worker("worker-1")
    sc.send_usage()
    _wait("every usage report's charge", sc.all_charged, 180)
    worker.stop()
    sc.check()


def _set_max_message_bytes(s: Settings, topic: str, value: int) -> None:
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entry = ConfigEntry(
        "max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient(kafka_config(s, log_level=0))
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def test_a_decision_the_broker_refuses_is_never_committed_past(
    stack: Settings, tmp_path: Path
) -> None:
    # The broker refuses every decision (`admitted` takes 200-byte records at most): the meter's
    # output flush fails before its commit, so its input offsets must not move, and the worker
    # must stop saying why. With the topic fixed, a restarted worker decides every request
    # exactly once, with the same exactness as after a kill -9.
    sc = Scenario(stack, tmp_path, 2000)
    admitted = sc.s.topic("admitted")
    _set_max_message_bytes(sc.s, admitted, 200)
    worker = sc.worker("worker-0")
    sc.send_requests()
    _wait("the worker to stop", lambda: worker.proc.poll() is not None, 120)
    log = worker.log.read_text(errors="replace")
    assert worker.proc.returncode != 0
    assert "output records were not delivered" in log
    with sc.collector.lock:  # rejections went out (their topic takes them); no admission did
        assert not [r for _, r in sc.collector.decisions if r["outcome"] == "ADMITTED"]

    _set_max_message_bytes(sc.s, admitted, 8 * 1024 * 1024)
    worker = sc.worker("worker-1")
    _wait("every request's decision", sc.all_decided, 300)
    sc.send_usage()
    _wait("every usage report's charge", sc.all_charged, 180)
    worker.stop()
    sc.check()
