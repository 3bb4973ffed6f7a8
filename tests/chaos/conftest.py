"""A three-broker cluster of its own for the chaos suite, beside the session's stack.

Started with the same code as `guardstream stack up --brokers 3`, on free ports and a data
dir of its own (with its own registry, which one scenario stops), and stopped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.stack import services
from tests import free_ports
from tests.integration.conftest import own_stack_settings

# Load per scenario: `GUARDSTREAM_CHAOS_SCALE=4` runs four times the requests by hand; CI
# runs the default.
SCALE = float(os.environ.get("GUARDSTREAM_CHAOS_SCALE", "1"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    first = free_ports(6)  # three nodes, each a client and a controller port
    settings = own_stack_settings(
        tmp_path_factory,
        "chaos",
        brokers=3,
        kafka_port=first,
        kafka_controller_port=first + 1,
        kafka_heap="-Xms128m -Xmx384m",  # three brokers beside the session's stack
    )
    console = Console(stderr=True)
    try:
        services.up(settings, console)
        yield settings
    finally:
        services.down(settings, console)
