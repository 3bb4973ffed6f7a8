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

import contextlib
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.cimpl import NewTopic

from guardstream.chaos.exactness import Scenario, wait
from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.ops.failover import STARTS_TITLE, recovery_table, takeover_replay
from guardstream.streams.admin import admin_client
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import METER_TABLE, Topic, changelog_topic
from guardstream.tables.assignment import EXIT_TABLE_UNASSIGNED
from guardstream.tables.clean_stop import MARKER
from tests import free_port

from .conftest import Worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
N = int(os.environ.get("GUARDSTREAM_CRASH_REQUESTS", "20000"))


def _exact(sc: Scenario) -> None:
    verdict = sc.check()
    assert not verdict.problems, verdict.problems


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
    _exact(sc)


def _two_workers_one_goes(
    sc: Scenario, tmp_path: Path, end: Callable[[Worker], None], **changes: Any
) -> tuple[Worker, Worker]:
    """Two workers share the partitions; `end` ends the first mid-run, the second finishes.

    Every request and usage report must get its outcome, and neither log may show a crash
    or a record that never reached its agent; `_exact(sc)` is left to the caller.
    """
    # One after the other, so the second never held the first's partitions (its RocksDB would
    # keep a copy of them, standby or not); both members of the group, partitions split and
    # tables recovered, before traffic.
    first = sc.worker("worker-a", **changes)
    wait("the first worker ready", first.ready, 120)
    second = sc.worker(
        "worker-b", worker_web_port=free_port(), worker_state_dir=tmp_path / "state-b", **changes
    )
    wait("both workers ready", lambda: first.ready() and second.ready(), 120)
    sc.send_requests()
    wait(
        "decisions before ending one worker",
        lambda: len(sc.collector.decided()) >= sc.n * 0.4,
        600,
    )
    end(first)
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
    return first, second


def test_two_workers_one_stops_the_other_takes_over(stack: Settings, tmp_path: Path) -> None:
    sc = Scenario(stack, tmp_path, max(1000, N // 4))
    # A clean stop: the worker leaves the group, the other gets its partitions at once.
    _two_workers_one_goes(sc, tmp_path, Worker.stop)
    _exact(sc)


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
    _exact(sc)


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
    _exact(sc)


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
    _exact(sc)


def test_a_worker_given_sources_without_their_changelog_stops_with_one_line(
    stack: Settings, tmp_path: Path
) -> None:
    # A changelog with fewer partitions than its source: Faust assigns metering partitions
    # 2 and 3 with no changelog partition, as it does for a changelog its metadata lacks.
    sc = Scenario(stack, tmp_path, 10)
    s = sc.s.model_copy(update={"app_id": f"{sc.s.app_id}-short"})
    changelog = changelog_topic(s, METER_TABLE)
    short = NewTopic(changelog, 2, s.topic_replicas, config={"cleanup.policy": "compact"})
    admin = admin_client(s)
    admin.create_topics([short])[changelog].result()
    log = tmp_path / "worker.log"
    with contextlib.suppress(GuardstreamError):  # it may stop before its web port opens
        Worker(s, log, loglevel="info")
    assert Worker.every[-1].proc.wait(120) == EXIT_TABLE_UNASSIGNED
    said = [
        line for line in log.read_text().splitlines() if "without their partitions of the" in line
    ]
    assert len(said) == 1 and "partitions 2, 3 of" in said[0] and changelog in said[0], said


def test_a_worker_that_joins_under_load_takes_over_from_a_whole_table(
    stack: Settings, tmp_path: Path
) -> None:
    # The worker-kill chaos scenario's rolling restart, alone: a second worker joins one
    # that is deciding (it keeps a standby copy of the first's partitions), then the first
    # stops and the second decides on every partition. On three brokers this lost hundreds
    # of reservations in 6 of 14 runs: the meter changelog, created as the first worker
    # started, was left out of every assignment, so the joiner's tables were never restored.
    sc = Scenario(stack, tmp_path, 3000)
    first = sc.worker("worker-a", table_standby_replicas=1)
    wait("the first worker ready", first.ready, 120)
    sender = threading.Thread(target=sc.send_requests, kwargs={"rate": 300.0})
    sender.start()
    wait("decisions before the second joins", lambda: len(sc.collector.decided()) >= 1200, 600)
    second = sc.worker(
        "worker-b",
        worker_web_port=free_port(),
        worker_state_dir=tmp_path / "state-b",
        table_standby_replicas=1,
    )
    wait("both workers ready", lambda: first.ready() and second.ready(), 120)
    sender.join()
    wait("every request's decision", sc.all_decided, 420)
    first.stop()
    sc.send_usage()
    try:
        wait("every usage report's charge", sc.all_charged, 300)
    except GuardstreamError:
        raise AssertionError(sc.uncharged()) from None
    finally:
        second.stop()
    _exact(sc)
