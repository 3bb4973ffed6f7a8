"""Paths the tests read from the source checkout (the package itself never knows them)."""

from __future__ import annotations

import socket
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The repo's schema files: what `Settings().schema_dir` is in a source checkout.
SCHEMA_DIR = REPO_ROOT / "schemas"


def free_port() -> int:
    """A TCP port nothing listens on right now (for a worker's web server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
