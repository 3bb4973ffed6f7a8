"""`guardstream provider-sim` as a user runs it: a process that prints its URL and stops cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest


def _restore_sigint() -> None:
    # A child of a non-interactive shell may inherit SIGINT ignored; Ctrl-C must reach it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serves_the_printed_url_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text("seed: 1\ndeployments:\n  busy: {fail: rate_limit, retry_after_s: 4}\n")
    command = ["provider-sim", "--port", "0", "--config", str(config)]
    with subprocess.Popen(
        [sys.executable, "-m", "guardstream", *command],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_restore_sigint,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"(http://\S+)/v1 ", line)
            assert match, line
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            ok = httpx.post(f"{match[1]}/v1/chat/completions", json=body)
            assert ok.status_code == 200
            busy = httpx.post(f"{match[1]}/d/busy/v1/chat/completions", json=body)
            assert busy.status_code == 429 and busy.headers["retry-after"] == "4"
            proc.send_signal(stop)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_bad_config_is_one_line_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text("deployments:\n  d: {fail: sometimes}\n")
    done = subprocess.run(
        [sys.executable, "-m", "guardstream", "provider-sim", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "deployments.d.fail" in done.stderr and len(done.stderr.strip().splitlines()) == 1
