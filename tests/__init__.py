"""Paths the tests read from the source checkout (the package itself never knows them)."""

from __future__ import annotations

import contextlib
import random
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


def free_ports(count: int) -> int:
    """The first of `count` consecutive TCP ports nothing listens on (a stack's node ports)."""
    # Below Linux's ephemeral range (32768-60999): a port in it can be taken between our
    # check and the node's bind by any outgoing connection, such as one node's to another
    # (a chaos cluster failed so: node 3's controller port was a source port of node 1's).
    for _ in range(200):
        first = random.randrange(20_000, 32_768 - count)
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports found")
