"""Outputs are byte-identical whatever the process: a redelivered output is a true copy.

Two workers, or one worker before and after a restart, must write the same bytes for the
same input. Python randomises string hashing per process, so anything that leaks a set's or
a dict's iteration order (or a repr of one) into an output shows up here.
"""

from __future__ import annotations

import json
import subprocess
import sys

from guardstream.config.settings import Settings
from guardstream.ops.worker_process import worker_env
from tests import REPO_ROOT


def _digests(settings: Settings, seed: str) -> list[str]:
    env = {**worker_env(settings), "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.outputs_digest"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    digests: list[str] = json.loads(done.stdout)
    return digests


def test_ingest_and_meter_outputs_are_identical_under_two_hash_seeds(stack: Settings) -> None:
    first = _digests(stack, "1")
    second = _digests(stack, "4242")
    topics = {d.split(":")[0] for d in first}
    # The input reaches every kind of output, so every builder is compared.
    assert {"metering", "rejected", "deadletter", "admitted", "audit"} <= topics, topics
    assert len(first) > 300
    differing = [(a, b) for a, b in zip(first, second, strict=True) if a != b]
    assert not differing, differing[:5]
