"""The stack's own promises: idempotent `up`, schemas surviving a registry restart."""

from __future__ import annotations

import httpx
import pytest
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.stack import services
from guardstream.stack.process import Service
from guardstream.streams.topics import subject_for

pytestmark = pytest.mark.integration


def test_second_up_reuses_running_processes(stack: Settings) -> None:
    before = {h.name: h.pid for h in services.status(stack)}
    services.up(stack, Console(quiet=True))
    after = {h.name: h.pid for h in services.status(stack)}
    assert before == after and all(after.values())


def test_schemas_survive_a_registry_restart(stack: Settings) -> None:
    subject = subject_for(stack, "requests")
    url = f"{stack.registry_api}/subjects/{subject}/versions/latest"
    before = httpx.get(url, timeout=5).json()
    registry = Service("registry", stack.data_dir / "run", stack.data_dir / "logs")
    old_pid = registry.pid()
    assert registry.stop()
    services.up(stack, Console(quiet=True))
    assert registry.pid() not in (None, old_pid)
    after = httpx.get(url, timeout=5).json()
    assert after["id"] == before["id"]
    assert after["schema"] == before["schema"]
