"""Starting, finding and stopping the stack's Java processes by their pid files.

`stack down` must stop only what `stack up` started, so a pid file is trusted only while the
process it names is alive and its command line still carries our marker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = "-Dguardstream.service="


@dataclass(frozen=True)
class Service:
    """One stack process: its name, pid file and log file."""

    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of our running process, or None (stale pid files are removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            cmdline = ""
        if f"{MARKER}{self.name}" not in cmdline:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, argv: list[str], cwd: Path) -> int:
        """Start the process detached from our session, logging to its log file."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def exited_early(self) -> bool:
        """True when we started it but it is gone (crashed during start-up)."""
        return self.pid() is None

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after the timeout; returns whether it was running."""
        return stop_together([self], timeout_s)[self.name]


def stop_together(services: Sequence[Service], timeout_s: float = 30.0) -> dict[str, bool]:
    """Stop services at once: SIGTERM to all, then SIGKILL to what is left after the timeout.

    Returns whether each (by name) was running. At once rather than one by one because a
    KRaft node stopped after the others finds no quorum for its controlled shutdown and
    waits it out until it is killed: the last of three nodes took the whole 30 s.
    """
    pids = {s.name: s.pid() for s in services}
    for pid in pids.values():
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(p is not None and _alive(p) for p in pids.values()):
        time.sleep(0.2)
    for service in services:
        pid = pids[service.name]
        if pid is None:
            continue
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        service.pid_file.unlink(missing_ok=True)
    return {name: pid is not None for name, pid in pids.items()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file (empty when it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]
