"""`guardstream bench failover`: how long a dead worker's tenants wait for their decisions.

Two workers share the partitions; one is killed with SIGKILL (no leave-group, no flush). Its
partitions stay with the dead member until the broker's session timeout expires
(`GUARDSTREAM_SESSION_TIMEOUT_S`), then the survivor takes them over: with table standby
replicas (`GUARDSTREAM_TABLE_STANDBY_REPLICAS`) it already holds a copy of their meter table
read from the changelog, and replays only what that copy lacks; without, it replays their
whole changelog first. For each size and standby count, on a fresh topic prefix and app id:

1. fill: K synthetic meter entries in the changelog (`guardstream.ops.restore`);
2. two `python -m guardstream worker` processes on empty state directories, the victim first
   (alone, it restores everything) and then the survivor (which never holds the victim's
   partitions but as standbys), each waited for until it answers `/health/ready` and every
   changelog partition it holds (active or standby) is read to its end (`/debug/consumer`),
   so the standbys are warm when the kill comes;
3. probes: one request every 100 ms for tenants whose metering partitions the victim holds,
   each decided before the kill (the pipeline is live);
4. kill -9 of the victim, then from that instant: when the survivor starts rebalancing
   (its `/health/ready` leaves 200: detection), when it is ready again holding every
   partition (takeover done: detection + restore), and when the first probe sent after
   the kill gets its decision (what a client sees).

The survivor's log says where its replay of each taken-over changelog partition started
(Faust's "Reading Starts At" table), so the result also counts the entries it replayed.
Everything runs in subprocesses and is removed afterwards (topics, temp dirs), also on error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.ops.bench import (
    BENCH_TENANTS,
    RequestSender,
    prepare_pipeline,
)
from guardstream.ops.compare import Run, free_port
from guardstream.ops.restore import fill_changelog, fresh_run, tenant_partition
from guardstream.ops.worker_process import worker_env
from guardstream.streams.topics import METER_TABLE, Topic, changelog_topic

PROBE_INTERVAL_S = 0.1
POLL_S = 0.05  # how often the survivor's readiness is read: the resolution of the figures

# A row of Faust's recovery log tables: topic (or a ditto mark), partition, offset.
_ROW = re.compile(r"[|│]\s*(\S+)\s*[|│]\s*(\d+)\s*[|│]\s*(-?\d+)\s*[|│]")
HIGHWATER_TITLE = "Highwater for active changelog partitions"
STARTS_TITLE = "active offsets at start of reading"


@dataclass(frozen=True)
class FailoverResult:
    """What one kill -9 cost the dead worker's tenants, seconds from the kill."""

    app_id: str
    keys: int
    standbys: int
    session_timeout_s: float
    victim_partitions: list[int]  # metering (and meter changelog) partitions taken over
    detect_s: float  # the survivor starts rebalancing: the broker noticed the death
    ready_s: float  # the survivor is ready again holding every partition
    decision_s: float  # the first probe sent after the kill is decided
    replayed: int  # changelog entries the survivor replayed for the taken-over partitions
    taken_over_entries: int  # entries in those changelog partitions

    @property
    def restore_s(self) -> float:
        """Takeover after detection: rebalance, replay what the survivor lacks, resume."""
        return self.ready_s - self.detect_s


def _log_text(log_text: str) -> list[str]:
    """The worker log as plain lines: each JSON record's message, other lines as they are."""
    out: list[str] = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            try:
                out.extend(str(json.loads(line).get("message", "")).splitlines())
                continue
            except ValueError:
                pass
        out.append(line)
    return out


def recovery_table(log_text: str, title: str, topic: str) -> dict[int, int]:
    """Per partition of `topic`, the offsets of the last Faust recovery table named `title`.

    Before each replay Faust logs, at info level, tables of the active changelog partitions:
    "Highwater for active changelog partitions" (the last offset in each) and "active offsets
    at start of reading" (the last offset the local store already has; -1: none, i.e. a
    replay from the beginning). The worker logs JSON lines or text; both are read.
    """
    lines = _log_text(log_text)
    hits = [i for i, line in enumerate(lines) if title.lower() in line.lower()]
    if not hits:
        return {}
    found: dict[int, int] = {}
    current = None
    for line in lines[hits[-1] + 1 :]:
        row = _ROW.search(line)
        if row is None:
            if line.lstrip().startswith(("+", "|", "│", "┃", "┏", "┡", "└")):
                continue  # borders and the heading
            break  # the table is over
        name, partition, offset = row.groups()
        current = name if name != "〃" else current  # a ditto mark repeats the topic above
        if current == topic:
            found[int(partition)] = int(offset)
    return found


def takeover_replay(log_text: str, topic: str, partitions: Iterable[int]) -> tuple[int, int]:
    """(entries replayed, entries held) in `partitions` of `topic` at the last recovery.

    From the worker's log: what its last recovery had to read into those changelog
    partitions, and how many entries they held then (the fill and the writes since).
    """
    highwaters = recovery_table(log_text, HIGHWATER_TITLE, topic)
    starts = recovery_table(log_text, STARTS_TITLE, topic)
    # Both tables hold offsets of records ("last offset", "last one read"); -1 is none.
    replayed = sum(max(0, highwaters.get(p, -1) - starts.get(p, -1)) for p in partitions)
    return replayed, sum(highwaters.get(p, -1) + 1 for p in partitions)


@dataclass
class _Probes:
    """Requests for the victim's tenants, one every PROBE_INTERVAL_S, and their decisions."""

    s: Settings
    request_id: int
    tenants: list[str]
    sent: dict[str, float] = field(default_factory=dict)  # request id → monotonic send time
    decided: dict[str, float] = field(default_factory=dict)  # request id → first seen
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        threading.Thread(target=self._send, daemon=True).start()
        threading.Thread(target=self._collect, daemon=True).start()

    def _send(self) -> None:
        run = uuid.uuid4().hex[:6]
        sender = RequestSender(self.s, self.request_id, run)
        # RequestSender picks request i's tenant as BENCH_TENANTS[i % 50]: step through the
        # indices of the probe tenants only.
        indices = [BENCH_TENANTS.index(t) for t in self.tenants]
        n = 0
        while not self.stop.is_set():
            i = (n // len(indices)) * len(BENCH_TENANTS) + indices[n % len(indices)]
            sender.send(i)
            with self.lock:
                self.sent[f"{run}-{i}"] = time.monotonic()
            n += 1
            self.stop.wait(PROBE_INTERVAL_S)
        sender.flush(10)

    def _collect(self) -> None:
        from confluent_kafka import Consumer

        from guardstream.serde.codec import Codec
        from guardstream.serde.registry import Registry
        from guardstream.streams.clients import kafka_config
        from guardstream.streams.reader import assign_from_beginning

        codec = Codec(self.s, Registry(self.s))
        consumer = Consumer(
            kafka_config(self.s, {"group.id": "unused", "enable.auto.commit": False})
        )
        assign_from_beginning(
            consumer, [self.s.topic(Topic.ADMITTED), self.s.topic(Topic.REJECTED)]
        )
        try:
            while not self.stop.is_set():
                for msg in consumer.consume(100, 0.05):
                    if msg.error():
                        continue
                    rid = codec.decode(msg.value() or b"", Topic.ADMITTED)["request_id"]
                    with self.lock:
                        self.decided.setdefault(rid, time.monotonic())
        finally:
            consumer.close()

    def first_decided_sent_after(self, t0: float) -> float | None:
        """When the first probe sent at or after `t0` was decided (None: none yet)."""
        with self.lock:
            times = [at for rid, at in self.decided.items() if self.sent.get(rid, -1.0) >= t0]
        return min(times) if times else None

    def any_decided(self) -> bool:
        with self.lock:
            return bool(self.decided)


@dataclass
class _Worker:
    name: str
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.base}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def ready(self) -> bool:
        r = self.get("/health/ready")
        return r is not None and r.status_code == 200

    def snapshot(self) -> dict[str, Any]:
        """`/debug/consumer` (`guardstream.runtime.diagnostics`); empty when it does not answer."""
        r = self.get("/debug/consumer")
        return r.json() if r is not None and r.status_code == 200 else {}  # type: ignore[no-any-return]

    def partitions(self) -> dict[str, dict[str, int | None]]:
        """`/debug/consumer`'s partitions, by "topic[partition]"."""
        return self.snapshot().get("partitions", {})  # type: ignore[no-any-return]


def _held(partitions: Iterable[str], topic: str) -> set[int]:
    prefix = f"{topic}["
    return {int(p[len(prefix) : -1]) for p in partitions if p.startswith(prefix)}


def _changelogs_read(w: _Worker, topic: str) -> bool:
    """Every changelog partition the worker holds (active or standby) is read to its end.

    Actives: the client's position. Faust's recovery stops once it has a partition's last
    record and pauses it, where the position may still point at that record: so one short
    counts as read (readiness covers the rest). Standbys: what the recovery has taken in,
    which lags the position while fetched records wait to be applied.
    """
    snapshot = w.snapshot()
    parts = snapshot.get("partitions", {})
    held = {k: v for k, v in parts.items() if k.startswith(f"{topic}[")}
    standbys: dict[str, int | None] = snapshot.get("standbys", {})
    for name, v in held.items():
        end = v["highwater"]
        done = standbys[name] if name in standbys else v["position"]
        if end is None or done is None or done + 1 < end:
            return False
    return bool(held)


def _wait(run: Run, what: str, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        run.check_alive()
        if time.monotonic() > deadline:
            raise GuardstreamError(f"timed out waiting for {what}", run.log_tail())
        time.sleep(POLL_S)


def measure(
    settings: Settings,
    keys: int,
    standbys: int,
    status: Callable[[str], None],
    advance: Callable[[int], None],
) -> FailoverResult:
    """Fill a changelog with `keys` entries, run two workers, kill one, time the takeover."""
    run = fresh_run(settings, keys, "a failover", f"gsfailover-{keys}-{standbys}-", "gsfo")
    s, tmp = run.s, run.tmp
    changelog = changelog_topic(s, METER_TABLE)
    # Both workers replay up to the whole changelog before they are ready (~22 s per 100k
    # keys here, see `bench restore`): a generous bound, so a slow machine is reported.
    timeout_s = 180 + keys / 500
    probes: _Probes | None = None
    try:
        status("creating topics")
        request_id = prepare_pipeline(s, tmp)
        status("filling the changelog")
        fill_changelog(s, keys, advance)
        workers: list[_Worker] = []

        def settled() -> bool:
            return all(w.ready() and _changelogs_read(w, changelog) for w in workers)

        # One after the other: the survivor must never have held the victim's partitions, or
        # its RocksDB would keep a copy of them from before the split, standby or not. So the
        # victim starts alone (and restores everything), the survivor joins and gets a share.
        for name in ("victim", "survivor"):
            status(f"starting the {name}; restoring")
            port = free_port()
            env = {
                **worker_env(s, tmp / f"state-{name}", port),
                "GUARDSTREAM_TABLE_STANDBY_REPLICAS": str(standbys),
            }
            argv = [sys.executable, "-m", "guardstream", "worker", "--loglevel", "info"]
            proc = run.start(name, argv, env)
            workers.append(_Worker(name, proc, f"http://{s.host}:{port}", tmp / f"{name}.log"))
            _wait(run, f"the {name} ready with its changelogs read", settled, timeout_s)
        victim, survivor = workers
        metering = s.topic(Topic.METERING)
        lost = sorted(_held(victim.partitions(), metering))
        if not lost:
            raise GuardstreamError("the victim holds no metering partition", run.log_tail())
        tenants = [t for t in BENCH_TENANTS if tenant_partition(t, s.default_partitions) in lost]
        status("probing")
        probes = _Probes(s, request_id, tenants)
        probes.start()
        _wait(run, "a probe's decision before the kill", probes.any_decided, 60)

        status("killed one worker; waiting")
        victim.proc.kill()
        t0 = time.monotonic()
        victim.proc.wait()
        run.procs.remove(victim.proc)  # killed on purpose: not a failure for `check_alive`
        lost_metering = set(lost)

        def held_by_survivor() -> set[int]:
            return _held(survivor.partitions(), metering)

        detect = ready = decision = None
        deadline = t0 + timeout_s
        while ready is None or decision is None:
            run.check_alive()
            now = time.monotonic()
            if now > deadline:
                raise GuardstreamError(
                    f"no takeover within {timeout_s:.0f} s of the kill (rebalance seen after "
                    f"{detect} s, ready again after {ready} s, probe decided after {decision} s)",
                    run.log_tail(),
                )
            if detect is None:
                if not survivor.ready():
                    detect = now - t0
            elif ready is None and survivor.ready() and lost_metering <= held_by_survivor():
                ready = time.monotonic() - t0
            if decision is None:
                at = probes.first_decided_sent_after(t0)
                decision = None if at is None else at - t0
            time.sleep(POLL_S)
        assert detect is not None
        replayed, held = takeover_replay(survivor.log.read_text(errors="replace"), changelog, lost)
        return FailoverResult(
            s.app_id,
            keys,
            standbys,
            s.session_timeout_s,
            lost,
            detect,
            ready,
            decision,
            replayed,
            held,
        )
    finally:
        status("cleaning up")
        if probes is not None:
            probes.stop.set()
        run.close()
