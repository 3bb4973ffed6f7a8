"""The exactness harness shared by the kill tests, the chaos suite and `guardstream chaos`.

A private topic prefix, 50 configured tenants (every other one with a small daily budget), a
collector reading every decision and audit event from the beginning, and the checks:
- every request has exactly one decision id, and every copy of a decision is byte-identical;
- no request is refused for anything but its budget;
- every tenant's charged total equals the cost of its settled usage, to the micro-dollar,
  with no request charged twice;
- replaying each tenant's audit events never finds reserved + charged above its budget.

Load comes in two shapes: all requests at once then all usage (the kill tests), or paced
requests with a usage report sent for each admission as it arrives (`SteadyLoad`, the chaos
suite), which also measures what a fault costs: the longest stall, the largest backlog,
the longest wait for a decision, and the time to recover (see `SteadyLoad.recover_s`).

Checks report problems as sentences (`Scenario.problems`) rather than asserting, so the
command line can print them; the tests assert there are none.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from guardstream.config.catalog import load_catalog
from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.ops import schemas as schema_ops
from guardstream.ops import tenants as tenant_ops
from guardstream.ops.compare import delete_topics, free_port
from guardstream.ops.worker_process import WorkerProcess
from guardstream.records import request_data
from guardstream.serde.avro import encode
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.serde.schemas import reader_schema, schema_text
from guardstream.streams.admin import ensure_topics
from guardstream.streams.clients import kafka_config
from guardstream.streams.reader import assign_from_beginning, read_to_end
from guardstream.streams.topics import REQUEST_TYPE, USAGE_TYPE, Topic, subject_for

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
            text = schema_text(topic.schema, settings.schema_dir)
            schema_id = registry.lookup(subject_for(settings, topic), text)
            if schema_id is None:
                raise GuardstreamError(
                    f"{topic} has no registered schema", "run `guardstream schemas register`"
                )
            registry.writer_schema(schema_id)
        self.codec = Codec(settings, registry)
        self.stop_flag = threading.Event()
        self.decisions: list[tuple[bytes, dict[str, Any]]] = []
        self.first_seen: dict[str, float] = {}  # request id -> when its decision first came
        self.audits: list[tuple[int, int, bytes, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._collect()
        except BaseException as exc:  # seen by SteadyLoad's watch, not lost with the thread
            self.error = exc
            raise

    def _collect(self) -> None:
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
                        self.first_seen.setdefault(rec["request_id"], time.monotonic())
        c.close()

    def decided(self) -> set[str]:
        with self.lock:
            return {r["request_id"] for _, r in self.decisions}

    def charged(self) -> set[str]:
        with self.lock:
            return {r["request_id"] for *_, r in self.audits if r["kind"] == "CHARGE"}


def headers(ce_id: str, ce_type: str) -> list[tuple[str, str | bytes | None]]:
    """Binary-mode CloudEvents headers for a test event of type `ce_type`."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id.encode()),
        ("ce_source", b"/crash"),
        ("ce_type", ce_type.encode()),
        ("content-type", b"application/avro"),
    ]


_T0 = time.monotonic()
Say = Callable[[str], None]


def wait(what: str, done: Callable[[], bool], timeout: float, say: Say = print) -> None:
    """Poll `done` until it holds, then say so; a timeout is an error naming `what`."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise GuardstreamError(
                f"timed out after {timeout:.0f} s waiting for {what}",
                "read the workers' logs; a slow machine may need a smaller load",
            )
        time.sleep(0.5)
    say(f"[{time.monotonic() - _T0:6.1f} s] {what}")


class Scenario:
    """A private prefix, 50 configured tenants, a collector, and the checks."""

    def __init__(
        self, stack: Settings, tmp: Path, n: int, budget: int | None = None, say: Say = print
    ) -> None:
        self.run = uuid.uuid4().hex[:6]
        self.tmp = tmp
        self.n = n
        self.say = say
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
        request_id = registry.lookup(
            subject_for(s, Topic.REQUESTS), schema_text("request", s.schema_dir)
        )
        usage_id = registry.lookup(subject_for(s, Topic.USAGE), schema_text("usage", s.schema_dir))
        registry.close()
        if not (request_id and usage_id):
            raise GuardstreamError("the input schemas did not register", "check the registry")
        self.request_id, self.usage_id = request_id, usage_id
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
            # The load is the client, not what is tested: like a client that must not lose
            # its events, it never gives up on one (message.timeout.ms 0: no time limit).
            # With librdkafka's default of 300 s, a flush cut short by a broker kill left
            # usage undelivered and the run failing as if the pipeline had lost it.
            kafka_config(
                s,
                {
                    "linger.ms": 20,
                    "enable.idempotence": True,
                    "message.timeout.ms": 0,
                    "log_level": 0,
                },
            )
        )
        self.tenant_of: dict[str, str] = {}
        self.admitted: list[str] = []
        self.sent = 0  # requests produced so far
        self.sent_at: dict[str, float] = {}

    def worker(self, name: str, piped: bool = False, **changes: Any) -> WorkerProcess:
        """A worker on the scenario's topics (`changes`: its own settings, e.g. state dir)."""
        settings = self.s.model_copy(update=changes) if changes else self.s
        return WorkerProcess(settings, self.tmp / f"{name}.log", loglevel="info", piped=piped)

    def close(self) -> None:
        """Stop the collector and delete the scenario's topics (its prefix, its changelogs)."""
        self.collector.stop_flag.set()
        self.collector.join(10)
        with contextlib.suppress(Exception):
            delete_topics(self.s)

    def send_requests(self, rate: float | None = None) -> None:
        """Produce the n requests, at `rate` per second if given (else as fast as possible)."""
        schema = reader_schema("request", self.s.schema_dir)
        t0 = time.monotonic()
        for i in range(self.n):
            if rate is not None and (ahead := t0 + i / rate - time.monotonic()) > 0:
                time.sleep(ahead)
            tenant = TENANTS[i % len(TENANTS)]
            rid = f"{self.run}-req-{i}"
            self.tenant_of[rid] = tenant
            self.sent_at[rid] = time.monotonic()
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
        self._flush("requests")

    def _flush(self, what: str, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while self.producer.flush(5):  # in steps, so a slow broker is waited out
            if time.monotonic() > deadline:
                raise GuardstreamError(
                    f"{what} were not delivered to the broker within {timeout_s:.0f} s",
                    "check the stack (`guardstream stack status`)",
                )

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
        schema = reader_schema("usage", self.s.schema_dir)
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
        self._flush("usage reports")

    def all_decided(self) -> bool:
        return len(self.collector.decided()) >= self.n

    def uncharged(self) -> str:
        """What became of the usage reports that were never charged (for a failure message):
        how far each got, read back from the usage, metering and dead-letter topics."""
        missing = set(self.admitted) - self.collector.charged()
        with self.collector.lock:
            kinds = sorted(
                {r["kind"] for *_, r in self.collector.audits if r["request_id"] in missing}
            )
        found: dict[str, int] = defaultdict(int)
        try:
            for short in (Topic.USAGE, Topic.METERING, Topic.DEADLETTER):
                for msg in read_to_end(self.s, self.s.topic(short), timeout_s=60, batch=500):
                    value = msg.value() or b""
                    if short is Topic.DEADLETTER:
                        found[short] += any(rid.encode() in value for rid in missing)
                        continue
                    rec = self.collector.codec.decode(value, short)
                    if rec["request_id"] in missing and rec.get("kind", "USAGE") == "USAGE":
                        found[short] += 1
            where = ", ".join(f"{n} on {t}" for t, n in found.items()) or "none found on topics"
        except Exception as exc:  # a diagnosis must not hide the failure it explains
            where = f"topics unreadable: {exc!r}"
        sample = sorted(missing)[:5]
        return (
            f"{len(missing)} of {len(self.admitted)} usage reports never charged "
            f"(their audit kinds: {kinds or 'none'}; their usage records: {where}; "
            f"e.g. {sample}); logs in {self.tmp}"
        )

    def all_charged(self) -> bool:
        return len(self.collector.charged()) >= len(self.admitted)

    def check(self) -> Verdict:
        """Judge the run once every decision and charge is in (see the module docstring)."""
        time.sleep(3)  # let stragglers (re-sent copies) arrive before judging
        collector = self.collector
        collector.stop_flag.set()
        collector.join(10)
        problems: list[str] = []
        # --- one decision per request, copies identical, never DUPLICATE ---------------------
        by_request: dict[str, set[str]] = defaultdict(set)
        copies: dict[str, set[bytes]] = defaultdict(set)
        for raw, rec in collector.decisions:
            by_request[rec["request_id"]].add(rec["decision_id"])
            copies[rec["decision_id"]].add(raw)
        lost = sorted(set(self.tenant_of) - set(by_request))
        if lost:
            problems.append(f"{len(lost)} requests have no decision (e.g. {lost[:3]})")
        if stray := sorted(set(by_request) - set(self.tenant_of)):
            problems.append(f"{len(stray)} decisions for requests never sent (e.g. {stray[:3]})")
        if twice := sorted(r for r, ids in by_request.items() if len(ids) > 1):
            problems.append(f"{len(twice)} requests decided twice (e.g. {twice[:3]})")
        if differ := [d for d, v in copies.items() if len(v) > 1]:
            problems.append(f"{len(differ)} re-sent decisions differ from the first copy")
        codes = {rec["reasons"][0]["code"] for _, rec in collector.decisions if rec["reasons"]}
        if codes - {"BUDGET_EXCEEDED"}:
            problems.append(f"requests refused for {sorted(codes - {'BUDGET_EXCEEDED'})}")
        if "BUDGET_EXCEEDED" not in codes:
            problems.append("no request ran out of budget: the budget path was not exercised")

        # --- audit: identical copies, exact charges, budgets never exceeded ------------------
        events: dict[str, tuple[int, int, dict[str, Any]]] = {}
        raw_by_id: dict[str, set[bytes]] = defaultdict(set)
        for part, offset, raw, rec in collector.audits:
            raw_by_id[rec["event_id"]].add(raw)
            events.setdefault(rec["event_id"], (part, offset, rec))
        if any(len(v) > 1 for v in raw_by_id.values()):
            problems.append("a re-sent audit event differs from the first copy")
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
        double = sorted(r for r, n in charges_per_request.items() if n > 1)
        if double:
            problems.append(f"{len(double)} requests charged twice (e.g. {double[:3]})")
        if unknown := [(p, o, r) for p, o, r in events.values() if r["kind"] == "USAGE_UNKNOWN"]:
            # Where the reservation was made and where its usage found none: which partitions
            # and how far apart, for whoever chases it.
            reserved_at = {
                r["request_id"]: (p, o) for p, o, r in events.values() if r["kind"] == "RESERVE"
            }
            examples = [
                f"{r['request_id']} ({r['tenant_id']}): RESERVE at audit "
                f"{reserved_at.get(r['request_id'], 'nowhere')}, USAGE_UNKNOWN at ({p}, {o})"
                for p, o, r in sorted(unknown, key=lambda e: (e[0], e[1]))[:3]
            ]
            tenants = len({r["tenant_id"] for *_, r in unknown})
            problems.append(
                f"{len(unknown)} usage reports of {tenants} tenants found no reservation "
                f"(USAGE_UNKNOWN), e.g. {'; '.join(examples)}"
            )
        settled: dict[str, int] = defaultdict(int)
        for rid in self.admitted:
            settled[self.tenant_of[rid]] += 1
        expected = {t: n * unit for t, n in settled.items()}
        if wrong := sorted(
            t for t in expected.keys() | charged.keys() if charged.get(t, 0) != expected.get(t, 0)
        ):
            problems.append(
                f"{len(wrong)} tenants charged other than their usage's cost, e.g. {wrong[0]}: "
                f"{charged.get(wrong[0], 0)} µ$ for {expected.get(wrong[0], 0)} µ$ of usage"
            )

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
                    if outstanding[day] + spent[day] > self.budget:
                        problems.append(f"{tenant} went over its {day} budget at {rid}")
                        break
                elif rec["kind"] in ("CHARGE", "EXPIRE") and rid not in reserved:
                    # A verdict, not a KeyError: a run that lost its tables showed this.
                    problems.append(f"{tenant}: {rid} {rec['kind']} before any RESERVE of it")
                    break
                elif rec["kind"] == "CHARGE":
                    outstanding[day_of[rid]] -= reserved[rid]
                    spent[day_of[rid]] += rec["amount_micros"]
                elif rec["kind"] == "EXPIRE":
                    outstanding[day_of[rid]] -= reserved[rid]
        return Verdict(len(lost), len(double), problems)

    def max_wait_s(self) -> float:
        """The longest any request waited between its send and its decision."""
        with self.collector.lock:
            seen = dict(self.collector.first_seen)
        waits = [seen[r] - at for r, at in self.sent_at.items() if r in seen]
        return max(waits, default=0.0)


@dataclass(frozen=True)
class Verdict:
    """What the checks found: requests with no decision, requests charged twice, and every
    problem in words (empty when the run was exact)."""

    lost: int
    double_charged: int
    problems: list[str]


class SteadyLoad:
    """Requests at a steady rate with a usage report for each admission as it arrives, and
    what a fault does to the flow.

    The watcher samples, every 0.25 s, the backlog (requests sent and not decided) and
    progress. From the samples: the longest stall (work outstanding, nothing decided or
    charged), the largest backlog, and the time to recover: from the moment the fault was
    injected (an instant fault: a kill) or lifted (one that lasts: a pause, an outage) to the
    last moment the backlog stood above what it was before the fault (or two seconds of
    load, whichever is more). A fault that never shows in the backlog recovers in 0 s.
    """

    SAMPLE_S = 0.25

    def __init__(self, sc: Scenario, rate: float) -> None:
        self.sc = sc
        self.rate = rate
        self.stop = threading.Event()
        self.longest_stall_s = 0.0
        self.max_backlog = 0
        self.samples: list[tuple[float, int]] = []  # (monotonic time, backlog)
        self.fault_at: float | None = None
        self.lifted_at: float | None = None
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
            except BaseException as exc:  # surfaced by finish(), in the caller's thread
                self.errors.append(exc)

        return run

    def start(self) -> SteadyLoad:
        """Start sending, reporting usage and watching."""
        for t in self._threads:
            t.start()
        return self

    def fault(self) -> None:
        """Mark the fault's injection (the watch's clock for the time to recover)."""
        self.fault_at = time.monotonic()

    def lifted(self) -> None:
        """Mark the end of a fault that lasts (a pause, an outage)."""
        self.lifted_at = time.monotonic()

    def recover_s(self) -> float:
        """Seconds from the fault (its end, if it lasted) to the backlog's return to normal."""
        if self.fault_at is None:
            return 0.0
        fault_at = self.fault_at
        before = [b for t, b in self.samples if t < fault_at]
        normal = max([*before, int(self.rate * 2)])
        start = self.lifted_at or fault_at
        above = [t for t, b in self.samples if t >= fault_at and b > normal]
        return max(0.0, max(above, default=start) + self.SAMPLE_S - start) if above else 0.0

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
            time.sleep(self.SAMPLE_S)
            now = self._progress()
            at = time.monotonic()
            backlog = self.sc.sent - now[0]
            self.samples.append((at, backlog))
            outstanding = backlog > 0 or len(self.sc.admitted) > now[1]
            self.max_backlog = max(self.max_backlog, backlog)
            if now != last or not outstanding:
                last, since = now, at
            self.longest_stall_s = max(self.longest_stall_s, at - since)

    def _healthy(self, done: Callable[[], bool]) -> Callable[[], bool]:
        """`done`, raising at once if a load thread or the collector has failed."""

        def check() -> bool:
            if self.errors:
                raise self.errors[0]
            if self.sc.collector.error is not None:
                raise self.sc.collector.error
            return done()

        return check

    def sent_fraction(self, fraction: float, timeout: float = 300) -> None:
        """Wait until this share of the requests has been produced."""
        wait(
            f"{fraction:.0%} of the requests sent",
            self._healthy(lambda: self.sc.sent >= self.sc.n * fraction),
            timeout,
            self.sc.say,
        )

    def finish(self, timeout: float = 300) -> Verdict:
        """Wait for every decision and every charge, stop the load, and run the checks."""
        say = self.sc.say
        self._threads[0].join(timeout)
        if self.errors:
            raise self.errors[0]
        wait("every request's decision", self._healthy(self.sc.all_decided), timeout, say)
        # The follower reports the last admissions; then every one of them must be charged.
        deadline = time.monotonic() + timeout
        while len(self.sc.admissions()) > len(self.sc.admitted) and time.monotonic() < deadline:
            if self.errors:  # the follower died: say why now, not after every timeout
                raise self.errors[0]
            time.sleep(0.5)
        self.stop.set()
        for t in self._threads[1:]:
            t.join(30)
        try:
            wait("every usage report's charge", self._healthy(self.sc.all_charged), timeout, say)
        except GuardstreamError:
            raise GuardstreamError(self.sc.uncharged(), "read the workers' logs") from None
        if self.errors:
            raise self.errors[0]
        return self.sc.check()
