"""Workers die under load; state effects must stay exact and decisions identical.

Requests across 50 tenants, then a usage report for every admitted one, with failures:
kill -9 of the only worker at a random moment in each phase (20 000 requests;
  GUARDSTREAM_CRASH_REQUESTS to change), its RocksDB directory deleted before the restart, so
  its tables can only come back from their changelog topics.
two workers sharing the partitions, one stopped cleanly mid-run: the other takes over.
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
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from guardstream.config.settings import Settings
from guardstream.streams.clients import kafka_config
from guardstream.tables.clean_stop import MARKER
from tests import free_port

from .conftest import Worker
from .exactness import Scenario, ready, wait

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
N = int(os.environ.get("GUARDSTREAM_CRASH_REQUESTS", "20000"))


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


def test_kill_nine_twice_keeps_state_exact(stack: Settings, tmp_path: Path) -> None:
    sc = Scenario(stack, tmp_path, N)
    worker = sc.worker("worker-0")
    rnd = random.Random()
    sc.send_requests()
    kill_at = rnd.uniform(0.2, 0.7) * N
    wait("decisions before the first kill", lambda: len(sc.collector.decided()) >= kill_at, 600)
    worker, t0 = _restart(worker, sc.s, tmp_path, 1)
    restore_1 = _restored_in(worker, t0)
    wait("every request's decision", sc.all_decided, 420)
    sc.send_usage()
    kill_at = rnd.uniform(0.2, 0.7) * len(sc.admitted)
    wait("charges before the second kill", lambda: len(sc.collector.charged()) >= kill_at, 600)
    worker, t0 = _restart(worker, sc.s, tmp_path, 2)
    restore_2 = _restored_in(worker, t0)
    wait("every usage report's charge", sc.all_charged, 300)
    worker.stop()
    print(
        f"\nrestore after kill -9 with the state directory deleted: {restore_1:.1f} s and "
        f"{restore_2:.1f} s (worker start to 'Restore complete')"
    )
    sc.check()


def test_two_workers_one_stops_the_other_takes_over(stack: Settings, tmp_path: Path) -> None:
    n = max(1000, N // 4)
    sc = Scenario(stack, tmp_path, n)
    first = sc.worker("worker-a")
    second = sc.worker(
        "worker-b", worker_web_port=free_port(), worker_state_dir=tmp_path / "state-b"
    )
    # Both members of the group, partitions split and tables recovered, before traffic.
    wait("both workers ready", lambda: ready(first) and ready(second), 120)
    sc.send_requests()
    wait(
        "decisions before stopping one worker", lambda: len(sc.collector.decided()) >= n * 0.4, 600
    )
    first.stop()  # a clean stop: it leaves the group, the other gets its partitions
    wait("every request's decision", sc.all_decided, 420)
    sc.send_usage()
    wait("every usage report's charge", sc.all_charged, 300)
    assert second.proc.poll() is None
    second.stop()
    for log in (first.log, second.log):
        text = log.read_text(errors="replace")
        assert "Crashed" not in text
        # The consumer handed every record to the agents (guardstream.continuity).
        assert "never reached the agent" not in text and "never arrived" not in text
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
    wait("every request's decision", sc.all_decided, 120)
    time.sleep(2)
    sc.send_usage()
    usage_audits = {"CHARGE", "USAGE_UNKNOWN"}

    def answered() -> set[str]:
        with sc.collector.lock:
            return {r["request_id"] for *_, r in sc.collector.audits if r["kind"] in usage_audits}

    wait("an audit for every usage report", lambda: answered() >= set(sc.admitted), 120)
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
    wait("every request's decision", sc.all_decided, 180)
    worker.stop()
    # A clean stop leaves the marker that lets the next worker here keep these stores.
    assert (sc.s.state_dir / MARKER).exists()

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
    wait("every usage report's charge", sc.all_charged, 180)
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
    wait("the worker to stop", lambda: worker.proc.poll() is not None, 120)
    log = worker.log.read_text(errors="replace")
    assert worker.proc.returncode != 0
    assert "output records were not delivered" in log
    with sc.collector.lock:  # rejections went out (their topic takes them); no admission did
        assert not [r for _, r in sc.collector.decisions if r["outcome"] == "ADMITTED"]

    _set_max_message_bytes(sc.s, admitted, 8 * 1024 * 1024)
    worker = sc.worker("worker-1")
    wait("every request's decision", sc.all_decided, 300)
    sc.send_usage()
    wait("every usage report's charge", sc.all_charged, 180)
    worker.stop()
    sc.check()
