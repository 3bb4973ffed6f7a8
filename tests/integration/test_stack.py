"""The stack's own promises: idempotent `up`, schemas surviving a registry restart."""

from __future__ import annotations

import time

import httpx
import pytest
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.ops.compare import delete_topics
from guardstream.stack import services
from guardstream.stack.process import Service
from guardstream.streams.admin import admin_client, ensure_topics
from guardstream.streams.topics import Topic, subject_for

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


def test_ensure_topics_gives_an_existing_ingress_topic_broker_timestamps(stack: Settings) -> None:
    # A requests topic made by hand (or an older version) with client-chosen timestamps.
    settings = stack.model_copy(update={"topic_prefix": f"{stack.topic_prefix}-old"})
    admin = admin_client(settings)
    requests = settings.topic(Topic.REQUESTS)
    made = admin.create_topics(
        [NewTopic(requests, 1, 1, config={"message.timestamp.type": "CreateTime"})]
    )
    made[requests].result()
    try:
        assert requests not in ensure_topics(settings)  # it existed: aligned, not created
        resource = ConfigResource(ResourceType.TOPIC, requests)
        # The alter is committed by the controller; with several brokers, the one answering
        # the describe can report the old value for a moment before it has applied it.
        deadline = time.monotonic() + 10
        while True:
            entries = admin.describe_configs([resource])[resource].result()
            value = entries["message.timestamp.type"].value
            if value == "LogAppendTime" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert value == "LogAppendTime"
    finally:
        names = [settings.topic(t) for t in Topic]
        for future in admin.delete_topics(names).values():
            future.result()


def test_ensure_topics_creates_the_tables_changelogs_before_any_worker_runs(
    stack: Settings,
) -> None:
    # A worker whose first partition assignment came before the group leader's metadata had
    # the changelog got its sources without their changelog: no restore, no standby.
    settings = stack.model_copy(
        update={"topic_prefix": f"{stack.topic_prefix}-cl", "app_id": "gs-cl", "dispatch": True}
    )
    admin = admin_client(settings)
    try:
        created = ensure_topics(settings)
        names = ["gs-cl-meter-changelog", "gs-cl-dispatch-changelog"]
        assert set(names) <= set(created)
        listed = admin.list_topics(timeout=10).topics
        for name in names:
            assert len(listed[name].partitions) == settings.default_partitions
            resource = ConfigResource(ResourceType.TOPIC, name)
            entries = admin.describe_configs([resource])[resource].result()
            assert entries["cleanup.policy"].value == "compact"
        assert ensure_topics(settings) == []  # and never again
    finally:
        delete_topics(settings)
