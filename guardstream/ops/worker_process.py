"""A `python -m guardstream worker` subprocess, for the chaos suite, benchmarks and tests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, ClassVar

import httpx

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError


def worker_env(
    settings: Settings, state_dir: Path | None = None, web_port: int | None = None
) -> dict[str, str]:
    """The environment that runs a worker subprocess on `settings`' stack, topics and dirs
    (with its state directory and web port replaced, where given)."""
    return {
        **os.environ,
        "GUARDSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "GUARDSTREAM_APP_ID": settings.app_id,
        "GUARDSTREAM_WORKER_WEB_PORT": str(web_port or settings.worker_web_port),
        "GUARDSTREAM_WORKER_STATE_DIR": str(state_dir or settings.state_dir),
        "GUARDSTREAM_RESERVATION_TTL_S": str(settings.reservation_ttl_s),
        "GUARDSTREAM_DEDUP_WINDOW_S": str(settings.dedup_window_s),
        "GUARDSTREAM_SESSION_TIMEOUT_S": str(settings.session_timeout_s),
        "GUARDSTREAM_TABLE_STANDBY_REPLICAS": str(settings.table_standby_replicas),
        "GUARDSTREAM_AUTH_SECRETS_FILE": str(settings.auth_secrets_path),
        # Where the stack is: the default one, or a stack of a test's own.
        "GUARDSTREAM_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "GUARDSTREAM_REGISTRY_URL": settings.registry_api,
        "GUARDSTREAM_BROKERS": str(settings.brokers),
    }


class WorkerProcess:
    """A real worker process, its output in `log`; returns once its web port answers.

    `piped=True` passes the output through a pipe that a thread copies to `log`: a worker
    whose file writes are made to fail (the chaos suite's full disk) can still be heard.
    """

    every: ClassVar[list[WorkerProcess]] = []  # so a failed run cannot leave workers behind

    def __init__(
        self,
        settings: Settings,
        log: Path,
        loglevel: str = "warning",
        extra_env: dict[str, str] | None = None,
        piped: bool = False,
    ) -> None:
        self.settings = settings
        self.log = log
        self.started = time.monotonic()
        WorkerProcess.every.append(self)
        argv = [sys.executable, "-m", "guardstream", "worker", "--loglevel", loglevel]
        env = {**worker_env(settings), **(extra_env or {})}
        with log.open("ab") as f:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdout=subprocess.PIPE if piped else f,
                stderr=subprocess.STDOUT,
            )
        if piped:
            assert self.proc.stdout is not None
            threading.Thread(target=_copy, args=(self.proc.stdout, log), daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GuardstreamError(
                    f"the worker exited with {self.proc.returncode}: {self.tail()}",
                    f"read {log}",
                )
            try:
                httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise GuardstreamError(f"the worker's web port never opened: {self.tail()}", f"read {log}")

    def tail(self, chars: int = 2000) -> str:
        """The end of the worker's log."""
        return self.log.read_text(errors="replace")[-chars:]

    def ready(self) -> bool:
        """Whether the worker answers `/health/ready` with 200 (it holds its partitions)."""
        try:
            port = self.settings.worker_web_port
            return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """kill -9: no shutdown, no final commit, no flush."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not stopped within 30 s."""
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _copy(pipe: IO[bytes], log: Path) -> None:
    with log.open("ab") as out:
        for line in pipe:
            out.write(line)
            out.flush()


def stop_all(since: int = 0) -> None:
    """kill -9 every worker started (after the first `since`) that is still running."""
    for w in WorkerProcess.every[since:]:
        if w.proc.poll() is None:
            w.kill()
