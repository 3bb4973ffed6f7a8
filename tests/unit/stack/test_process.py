"""Stopping the stack's processes together, with real child processes standing in for nodes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from guardstream.stack.process import MARKER, Service, stop_together

# A node that, like a KRaft node's controlled shutdown, exits cleanly on SIGTERM only once
# its peer has had SIGTERM too (the peer leaves a file); otherwise it waits until killed.
_NODE = """
import pathlib, signal, sys, time
me, peer = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def term(*_):
    me.with_suffix(".term").touch()
    while not peer.with_suffix(".term").exists():
        time.sleep(0.05)
    me.with_suffix(".clean").touch()
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
me.with_suffix(".up").touch()
while True:
    time.sleep(0.1)
"""


def _start(tmp: Path, name: str, peer: str) -> Service:
    service = Service(name, tmp / "run", tmp / "logs")
    argv = [sys.executable, "-c", _NODE, str(tmp / name), str(tmp / peer), f"{MARKER}{name}"]
    service.start(argv, tmp)
    deadline = time.monotonic() + 30
    while not (tmp / f"{name}.up").exists():
        assert time.monotonic() < deadline, f"{name} never started"
        time.sleep(0.05)
    return service


def test_nodes_that_need_each_other_to_stop_cleanly_all_stop_cleanly(tmp_path: Path) -> None:
    a = _start(tmp_path, "node-a", "node-b")
    b = _start(tmp_path, "node-b", "node-a")
    gone = Service("node-c", tmp_path / "run", tmp_path / "logs")

    stopped = stop_together([a, b, gone], timeout_s=20)

    assert stopped == {"node-a": True, "node-b": True, "node-c": False}
    # One by one, node-a would have waited for node-b's SIGTERM until it was killed.
    assert (tmp_path / "node-a.clean").exists() and (tmp_path / "node-b.clean").exists()
    assert a.pid() is None and b.pid() is None
    assert not a.pid_file.exists() and not b.pid_file.exists()


def test_a_node_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    # Its peer never gets SIGTERM, so it never exits on its own. The timeout leaves a loaded
    # machine time to run its handler before the kill.
    a = _start(tmp_path, "node-a", "never")

    assert a.stop(timeout_s=3)

    assert (tmp_path / "node-a.term").exists()
    assert not (tmp_path / "node-a.clean").exists()
    assert a.pid() is None and not a.pid_file.exists()
