"""Faults under steady load on a three-broker cluster: nothing lost, nothing charged twice.

Each scenario runs two workers, sends requests at a steady rate with a usage report for
every admission as it arrives, injects its fault part-way, and then applies the kill tests'
exactness checks (tests/integration/exactness.py): every request exactly one decision (up to
identical copies), Σ charged = Σ usage cost to the micro-dollar, no request charged twice,
no tenant's audit ever above its budget, nothing refused but for budget. Each prints what
the fault cost: the longest stall (work outstanding, nothing answered) and the largest
backlog of undecided requests.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.stack import services
from guardstream.streams.admin import admin_client
from tests import free_port
from tests.integration.conftest import Worker, _stop_workers_a_test_started  # noqa: F401
from tests.integration.exactness import Scenario, SteadyLoad, ready, wait

from .conftest import SCALE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
RATE = 40.0  # requests/s: steady, well under what two workers decide on two shared cores
SECONDS = 30.0
OUTAGE_S = 60.0  # the registry's


@pytest.fixture
def sc(cluster: Settings, tmp_path: Path) -> Iterator[Scenario]:
    # Usage settles each reservation at about a third of its estimate as the load runs, so
    # a budget of three requests' estimates is still spent part-way (check() wants refusals).
    scenario = Scenario(cluster, tmp_path, int(RATE * SECONDS * SCALE), budget=432)
    yield scenario
    scenario.collector.stop_flag.set()


def _workers(sc: Scenario) -> list[Worker]:
    a = sc.worker("worker-a")
    b = sc.worker("worker-b", worker_web_port=free_port(), worker_state_dir=sc.tmp / "state-b")
    wait("both workers ready", lambda: ready(a) and ready(b), 180)
    return [a, b]


def _leader(s: Settings, topic: str) -> services.Node:
    """The node leading partition 0 of `topic`."""
    md = admin_client(s).list_topics(topic, timeout=10)
    leader = md.topics[topic].partitions[0].leader
    return next(n for n in services.nodes(s) if n.node_id == leader)


def _pid(node: services.Node) -> int:
    pid = node.service.pid()
    assert pid is not None, f"{node.service.name} is not running"
    return pid


def _report(name: str, load: SteadyLoad, workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.stop()
    print(
        f"\n[chaos] {name}: {load.sc.n} requests at {RATE:.0f}/s, lost 0, charged twice 0, "
        f"longest stall {load.longest_stall_s:.1f} s, largest backlog {load.max_backlog}"
    )


def test_the_partition_leader_broker_is_killed_and_restarted(sc: Scenario) -> None:
    workers = _workers(sc)
    load = SteadyLoad(sc, RATE).start()
    load.sent_fraction(0.3)
    node = _leader(sc.s, sc.s.topic("metering"))
    os.kill(_pid(node), signal.SIGKILL)
    load.sent_fraction(0.6)  # the cluster runs on two nodes meanwhile
    services.up(sc.s, Console(stderr=True))  # starts the killed node again
    load.finish()
    _report(f"kill -9 of broker {node.node_id} (leader)", load, workers)


def test_a_worker_is_killed_then_every_worker_is_restarted_in_turn(sc: Scenario) -> None:
    a, b = _workers(sc)
    load = SteadyLoad(sc, RATE).start()
    load.sent_fraction(0.25)
    a.kill()
    a = sc.worker("worker-a2")  # its state directory as it was left
    load.sent_fraction(0.5)
    # A rolling restart: each worker stops cleanly and is back before the next one goes.
    b.stop()
    b = sc.worker(
        "worker-b2",
        worker_web_port=b.settings.worker_web_port,
        worker_state_dir=b.settings.state_dir,
    )
    wait("the second worker back", lambda: ready(b), 180)
    a.stop()
    a = sc.worker("worker-a3")
    wait("the first worker back", lambda: ready(a), 180)
    load.finish()
    _report("kill -9 of a worker, then a rolling restart of both", load, [a, b])


def test_the_registry_is_down_for_a_while(sc: Scenario) -> None:
    workers = _workers(sc)
    load = SteadyLoad(sc, RATE).start()
    load.sent_fraction(0.25)
    registry = services.registry_service(sc.s)
    registry.stop()
    time.sleep(OUTAGE_S)
    services.up(sc.s, Console(stderr=True))
    load.finish()  # check(): nothing was refused for the registry's absence
    _report(f"registry down {OUTAGE_S:.0f} s", load, workers)


def test_a_broker_is_paused_past_the_session_timeout(sc: Scenario) -> None:
    workers = _workers(sc)
    load = SteadyLoad(sc, RATE).start()
    load.sent_fraction(0.3)
    node = _leader(sc.s, sc.s.topic("metering"))
    pid = _pid(node)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(sc.s.session_timeout_s + 5)
    finally:
        os.kill(pid, signal.SIGCONT)
    load.finish()
    _report(
        f"broker {node.node_id} (leader) paused {sc.s.session_timeout_s + 5:.0f} s", load, workers
    )
