"""The chaos scenarios: one fault each, under steady load, judged by the exactness checks.

Every scenario runs two workers on a private topic prefix of the running stack, sends
requests at a steady rate with a usage report for each admission as it arrives, injects its
fault part-way, waits for every decision and charge, and checks (`Scenario.check`): every
request exactly one decision (up to identical copies), Σ charged = Σ usage cost to the
micro-dollar, nothing charged twice, no tenant's audit above its budget, nothing refused but
for budget. What the fault cost is measured by `SteadyLoad`.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from guardstream.chaos.exactness import Say, Scenario, SteadyLoad, wait
from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.ops.compare import free_port
from guardstream.ops.worker_process import WorkerProcess
from guardstream.stack import services
from guardstream.streams.admin import admin_client
from guardstream.tables.storage import EXIT_STORAGE_FAILED

RATE = 40.0  # requests/s: steady, well under what two workers decide on two shared cores
SECONDS = 30.0  # of load at scale 1
OUTAGE_S = 60.0  # the registry's
# Usage settles each reservation at about a third of its estimate as the load runs, so a
# budget of three requests' estimates is still spent part-way (the checks want refusals).
BUDGET_MICROS = 432


@dataclass
class Run:
    """A scenario in progress: its harness, its load and its workers (replaced as they go)."""

    sc: Scenario
    load: SteadyLoad
    workers: list[WorkerProcess]

    @property
    def say(self) -> Say:
        return self.sc.say


@dataclass(frozen=True)
class ChaosResult:
    """What one scenario found and what its fault cost."""

    scenario: str
    fault: str
    requests: int
    rate: float
    lost: int
    double_charged: int
    problems: list[str]
    recover_s: float
    longest_stall_s: float
    max_backlog: int
    max_wait_s: float


def _leader(s: Settings, topic: str) -> services.Node:
    """The node leading partition 0 of `topic`."""
    md = admin_client(s).list_topics(topic, timeout=10)
    leader = md.topics[topic].partitions[0].leader
    return next(n for n in services.nodes(s) if n.node_id == leader)


def _pid(node: services.Node) -> int:
    pid = node.service.pid()
    if pid is None:
        raise GuardstreamError(f"{node.service.name} is not running", "run `guardstream stack up`")
    return pid


def broker_kill(run: Run) -> str:
    """kill -9 of the broker leading the metering topic's first partition, restarted later."""
    s = run.sc.s
    run.load.sent_fraction(0.3)
    node = _leader(s, s.topic("metering"))
    os.kill(_pid(node), signal.SIGKILL)
    run.load.fault()
    run.load.sent_fraction(0.6)  # the cluster runs on two nodes meanwhile
    services.up(s, Console(stderr=True))  # starts the killed node again
    return f"kill -9 of broker {node.node_id} (leader), restarted at 60 %"


def worker_kill(run: Run) -> str:
    """kill -9 of a worker, then a rolling restart of both workers."""
    sc, load = run.sc, run.load
    a, b = run.workers
    load.sent_fraction(0.25)
    a.kill()
    load.fault()
    a = sc.worker("worker-a2")  # its state directory as it was left
    load.sent_fraction(0.5)
    # A rolling restart: each worker stops cleanly and is back before the next one goes.
    b.stop()
    b = sc.worker(
        "worker-b2",
        worker_web_port=b.settings.worker_web_port,
        worker_state_dir=b.settings.state_dir,
    )
    wait("the second worker back", b.ready, 180, run.say)
    a.stop()
    a = sc.worker("worker-a3")
    wait("the first worker back", a.ready, 180, run.say)
    run.workers = [a, b]
    return "kill -9 of a worker, then a rolling restart of both"


def registry_down(run: Run) -> str:
    """The schema registry stopped for a minute (nothing may be refused for it)."""
    s = run.sc.s
    run.load.sent_fraction(0.25)
    services.registry_service(s).stop()
    run.load.fault()
    time.sleep(OUTAGE_S)
    services.up(s, Console(stderr=True))
    run.load.lifted()
    return f"registry down {OUTAGE_S:.0f} s"


def broker_pause(run: Run) -> str:
    """SIGSTOP of the leader broker for longer than the session timeout, then SIGCONT."""
    s = run.sc.s
    run.load.sent_fraction(0.3)
    node = _leader(s, s.topic("metering"))
    pid = _pid(node)
    paused = s.session_timeout_s + 5
    os.kill(pid, signal.SIGSTOP)
    run.load.fault()
    try:
        time.sleep(paused)
    finally:
        os.kill(pid, signal.SIGCONT)
        run.load.lifted()
    return f"broker {node.node_id} (leader) paused {paused:.0f} s"


def disk_full(run: Run) -> str:
    """A worker's state directory refuses every write, as a full disk does.

    The kernel's file-size limit (RLIMIT_FSIZE) is set to 0 on the running worker: every
    write to a file fails (EFBIG), which is what RocksDB meets on a full disk (ENOSPC) as
    far as the worker can tell. It must stop with one line and exit code 74, without
    committing; the other worker takes over at the session timeout. Its output goes through
    a pipe (`piped=True`), which the limit does not touch, so the line can be read.
    """
    victim = run.workers[0]
    run.load.sent_fraction(0.3)
    resource.prlimit(victim.proc.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    run.load.fault()
    wait("the worker on the full disk stopped", lambda: victim.proc.poll() is not None, 120)
    code = victim.proc.returncode
    lines = [line for line in victim.tail(20_000).splitlines() if "cannot be written" in line]
    if code != EXIT_STORAGE_FAILED or len(lines) != 1:
        raise GuardstreamError(
            f"the worker on the full disk exited with {code} and {len(lines)} lines naming "
            f"its state directory (wanted {EXIT_STORAGE_FAILED} and one)",
            f"read {victim.log}",
        )
    run.say(f"its line: {lines[0].strip()[:160]}...")
    return "a worker's state directory refuses every write (file-size limit 0)"


Fault = Callable[[Run], str]
SCENARIOS: dict[str, Fault] = {
    "broker-kill": broker_kill,
    "worker-kill": worker_kill,
    "registry-down": registry_down,
    "broker-pause": broker_pause,
    "disk-full": disk_full,
}
NEEDS_THREE_BROKERS = {"broker-kill", "broker-pause"}


def check_scenario(settings: Settings, name: str) -> None:
    """Refuse, with the fix, a scenario that does not exist or that this stack cannot run."""
    if name not in SCENARIOS:
        raise GuardstreamError(
            f"there is no chaos scenario {name!r}", f"pick one of {', '.join(SCENARIOS)}"
        )
    if name in NEEDS_THREE_BROKERS and settings.brokers < 3:
        raise GuardstreamError(
            f"{name} needs a three-broker stack and this one has {settings.brokers}",
            "run `guardstream stack down` then `guardstream stack up --brokers 3`",
        )


def run_scenario(
    settings: Settings,
    name: str,
    tmp: Path,
    *,
    scale: float = 1.0,
    rate: float = RATE,
    say: Say = print,
) -> ChaosResult:
    """Run scenario `name` on the running stack `settings`, its files under `tmp`."""
    check_scenario(settings, name)
    sc = Scenario(settings, tmp, int(rate * SECONDS * scale), budget=BUDGET_MICROS, say=say)
    workers: list[WorkerProcess] = []
    try:
        workers.append(sc.worker("worker-a", piped=name == "disk-full"))
        workers.append(
            sc.worker("worker-b", worker_web_port=free_port(), worker_state_dir=tmp / "state-b")
        )
        wait("both workers ready", lambda: all(w.ready() for w in workers), 180, say)
        run = Run(sc, SteadyLoad(sc, rate).start(), workers)
        fault = SCENARIOS[name](run)
        workers = run.workers
        verdict = run.load.finish()
        return ChaosResult(
            scenario=name,
            fault=fault,
            requests=sc.n,
            rate=rate,
            lost=verdict.lost,
            double_charged=verdict.double_charged,
            problems=verdict.problems,
            recover_s=run.load.recover_s(),
            longest_stall_s=run.load.longest_stall_s,
            max_backlog=run.load.max_backlog,
            max_wait_s=sc.max_wait_s(),
        )
    finally:
        for w in WorkerProcess.every:  # the scenario's, also those it started in its course
            if w.log.parent == tmp and w.proc.poll() is None:
                w.stop()
        sc.close()
