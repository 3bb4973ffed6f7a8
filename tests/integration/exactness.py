"""The exactness harness shared by the kill tests and the chaos suite.

A private topic prefix, 50 configured tenants (every other one with a small daily budget), a
collector reading every decision and audit event from the beginning, and the checks:
- every request has exactly one decision id, and every copy of a decision is byte-identical;
- no request is refused for anything but its budget;
- every tenant's charged total equals the cost of its settled usage, to the micro-dollar,
  with no request charged twice;
- replaying each tenant's audit events never finds reserved + charged above its budget.

Load comes in two shapes: all requests at once then all usage (the kill tests), or paced
requests with a usage report sent for each admission as it arrives (`SteadyLoad`, the chaos
suite), which also measures the longest stall and the largest backlog while a fault runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer

from guardstream.config.catalog import load_catalog
from guardstream.config.settings import Settings
from guardstream.ops import schemas as schema_ops
from guardstream.ops import tenants as tenant_ops
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

TENANTS = [f"crash{i:02d}" for i in range(50)]
USAGE_IN, USAGE_OUT = 100, 50  # below every reservation (~260 estimated input + 200 max out)


class Collector(threading.Thread):
    """Reads decisions and audit events from the beginning, raw and decoded."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        registry = Registry(settings)
        # Every writer schema the outputs use, fetched now: a chaos scenario stops the
        # registry, and a collector stuck on a lookup would read as the pipeline stalling.
        for topic in (Topic.ADMITTED, Topic.REJECTED, Topic.AUDIT):
            text = schema_text(topic.schema, SCHEMA_DIR)
            schema_id = registry.lookup(subject_for(settings, topic), text)
            assert schema_id is not None, f"{topic} has no registered schema"
            registry.writer_schema(schema_id)
        self.codec = Codec(settings, registry)
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


def headers(ce_id: str, ce_type: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id.encode()),
        ("ce_source", b"/crash"),
        ("ce_type", ce_type.encode()),
        ("content-type", b"application/avro"),
    ]


def ready(worker: Worker) -> bool:
    try:
        port = worker.settings.worker_web_port
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


_T0 = time.monotonic()


def wait(what: str, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    print(f"[{time.monotonic() - _T0:6.1f} s] {what}")


class Scenario:
    """A private prefix, 50 configured tenants, a collector, and the checks."""

    def __init__(self, stack: Settings, tmp: Path, n: int, budget: int | None = None) -> None:
        self.run = uuid.uuid4().hex[:6]
        self.tmp = tmp
        self.n = n
        # About half of a small-budget tenant's requests when all are reserved before any
        # usage; steady load settles as it goes, so it passes a smaller budget.
        self.budget = budget or max(2_000, n // 50 * 70)
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
        self.sent = 0  # requests produced so far

    def worker(self, name: str, **changes: Any) -> Worker:
        settings = self.s.model_copy(update=changes) if changes else self.s
        return Worker(settings, self.tmp / f"{name}.log", loglevel="info")

    def send_requests(self, rate: float | None = None) -> None:
        """Produce the n requests, at `rate` per second if given (else as fast as possible)."""
        schema = reader_schema("request", SCHEMA_DIR)
        t0 = time.monotonic()
        for i in range(self.n):
            if rate is not None and (ahead := t0 + i / rate - time.monotonic()) > 0:
                time.sleep(ahead)
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
                headers=headers(rid, REQUEST_TYPE),
            )
            self.sent += 1
            if i % 1000 == 0 or rate is not None:
                self.producer.poll(0)
        assert self.producer.flush(120) == 0

    def admissions(self) -> set[str]:
        """The request ids admitted so far."""
        with self.collector.lock:
            return {
                r["request_id"] for _, r in self.collector.decisions if r["outcome"] == "ADMITTED"
            }

    def send_usage(self) -> None:
        """A usage report for every request admitted so far and not yet reported."""
        done = set(self.admitted)
        new = sorted(self.admissions() - done)
        first = len(self.admitted)
        self.admitted += new
        schema = reader_schema("usage", SCHEMA_DIR)
        for j, rid in enumerate(new, first):
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
                headers=headers(f"{self.run}-use-{j}", USAGE_TYPE),
            )
            if j % 1000 == 0:
                self.producer.poll(0)
        assert self.producer.flush(120) == 0

    def all_decided(self) -> bool:
        return len(self.collector.decided()) >= self.n

    def uncharged(self) -> str:
        """What became of the usage reports that were never charged (for a failure message)."""
        missing = set(self.admitted) - self.collector.charged()
        with self.collector.lock:
            kinds = sorted(
                {r["kind"] for *_, r in self.collector.audits if r["request_id"] in missing}
            )
        sample = sorted(missing)[:5]
        return (
            f"{len(missing)} of {len(self.admitted)} usage reports never charged "
            f"(their audit kinds: {kinds or 'none'}; e.g. {sample}); logs in {self.tmp}"
        )

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


class SteadyLoad:
    """Requests at a steady rate with a usage report for each admission as it arrives, and
    what a fault does to the flow: the longest stall (outstanding work, nothing answered)
    and the largest backlog (requests sent and not decided)."""

    def __init__(self, sc: Scenario, rate: float) -> None:
        self.sc = sc
        self.rate = rate
        self.stop = threading.Event()
        self.longest_stall_s = 0.0
        self.max_backlog = 0
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._guarded(lambda: sc.send_requests(rate)), daemon=True),
            threading.Thread(target=self._guarded(self._follow_usage), daemon=True),
            threading.Thread(target=self._guarded(self._watch), daemon=True),
        ]

    def _guarded(self, fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # surfaced by finish(), in the test's thread
                self.errors.append(exc)

        return run

    def start(self) -> SteadyLoad:
        for t in self._threads:
            t.start()
        return self

    def _follow_usage(self) -> None:
        while not self.stop.is_set():
            self.sc.send_usage()
            self.stop.wait(0.5)
        self.sc.send_usage()

    def _progress(self) -> tuple[int, int]:
        return len(self.sc.collector.decided()), len(self.sc.collector.charged())

    def _watch(self) -> None:
        last, since = self._progress(), time.monotonic()
        while not self.stop.is_set():
            time.sleep(0.25)
            now = self._progress()
            outstanding = self.sc.sent > now[0] or len(self.sc.admitted) > now[1]
            self.max_backlog = max(self.max_backlog, self.sc.sent - now[0])
            if now != last or not outstanding:
                last, since = now, time.monotonic()
            self.longest_stall_s = max(self.longest_stall_s, time.monotonic() - since)

    def sent_fraction(self, fraction: float, timeout: float = 300) -> None:
        """Wait until this share of the requests has been produced."""
        wait(
            f"{fraction:.0%} of the requests sent",
            lambda: self.sc.sent >= self.sc.n * fraction,
            timeout,
        )

    def finish(self, timeout: float = 300) -> None:
        """Wait for every decision and every charge, stop the load, and run the checks."""
        self._threads[0].join(timeout)
        wait("every request's decision", self.sc.all_decided, timeout)
        # The follower reports the last admissions; then every one of them must be charged.
        deadline = time.monotonic() + timeout
        while len(self.sc.admissions()) > len(self.sc.admitted) and time.monotonic() < deadline:
            time.sleep(0.5)
        self.stop.set()
        for t in self._threads[1:]:
            t.join(30)
        try:
            wait("every usage report's charge", self.sc.all_charged, timeout)
        except AssertionError:
            raise AssertionError(self.sc.uncharged()) from None
        if self.errors:
            raise self.errors[0]
        self.sc.check()
