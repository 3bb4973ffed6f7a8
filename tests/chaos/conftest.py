"""A three-broker cluster of its own for the chaos suite, beside the session's stack.

Started with the same code as `guardstream stack up --brokers 3`, on free ports and a data
dir of its own (with its own registry, which one scenario stops), and stopped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.stack import services
from tests import free_port, free_ports

# Load per scenario: `GUARDSTREAM_CHAOS_SCALE=4` runs four times the requests by hand; CI
# runs the default.
SCALE = float(os.environ.get("GUARDSTREAM_CHAOS_SCALE", "1"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    run = uuid.uuid4().hex[:8]
    first = free_ports(6)  # three nodes, each a client and a controller port
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("cluster"),
        brokers=3,
        kafka_port=first,
        kafka_controller_port=first + 1,
        registry_port=free_port(),
        # Three brokers and a registry beside the session's stack: small heaps.
        kafka_heap="-Xms128m -Xmx384m",
        registry_heap="-Xms64m -Xmx384m",
        topic_prefix=f"gschaos{run}",
        app_id=f"gschaos{run}",
        worker_web_port=free_port(),
        worker_state_dir=tmp_path_factory.mktemp("chaos-worker"),
        auth_secrets_file=tmp_path_factory.mktemp("chaos-auth") / "auth-secrets.yaml",
    )
    console = Console(stderr=True)
    try:
        services.up(settings, console)
        yield settings
    finally:
        services.down(settings, console)
