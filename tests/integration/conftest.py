"""The real stack for integration tests, started with the same code as `guardstream stack up`.

Each test session uses its own topic prefix and consumer group, so it never reads a
developer's demo data, and stops the stack afterwards only if it was the one to start it.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from rich.console import Console

from guardstream.config.secrets import add_secret
from guardstream.config.settings import Settings
from guardstream.ops import schemas as schema_ops
from guardstream.ops import tenants as tenant_ops
from guardstream.ops.worker_process import WorkerProcess as Worker
from guardstream.ops.worker_process import stop_all
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.stack import services
from guardstream.streams.admin import ensure_topics
from guardstream.streams.clients import kafka_config
from guardstream.streams.reader import assign_from_beginning
from guardstream.streams.topics import Topic
from tests import free_port

pytestmark = pytest.mark.integration
TENANTS_FILE = Path(__file__).parent / "tenants.yaml"
# The client side of the signing keys in tenants.yaml (test keys, made for these tests only).
# HMAC secrets go into the session's secrets file, where the workers read them.
HMAC_SECRETS = {
    ("acme", "acme-it"): b"integration-acme-hmac-secret-32b",
    ("signer", "signer-hmac"): b"integration-signer-hmac-secret-1",
    ("signer", "signer-old"): b"integration-signer-hmac-secret-0",
}
SIGNER_ED25519 = base64.b64decode("tZyspzbz1fR/Q9xMFo61cfF6cDSYRf9LoHfi7kltTSY=")


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(
        topic_prefix=f"gstest{run}",
        app_id=f"gstest{run}",
        worker_web_port=free_port(),
        worker_state_dir=tmp_path_factory.mktemp("worker"),
        auth_secrets_file=tmp_path_factory.mktemp("auth") / "auth-secrets.yaml",
    )


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    started_here = all(h.pid is None for h in services.status(settings))
    services.up(settings, Console(stderr=True))
    ensure_topics(settings)
    registry = Registry(settings)
    schema_ops.register_all(settings, registry)
    registry.close()
    for (tenant, key_id), secret in HMAC_SECRETS.items():
        add_secret(settings.auth_secrets_path, tenant, key_id, secret)
    tenant_ops.apply(settings, TENANTS_FILE)
    yield settings
    if started_here and not os.environ.get("GUARDSTREAM_KEEP_STACK"):
        services.down(settings, Console(stderr=True))


def own_stack_settings(
    tmp_path_factory: pytest.TempPathFactory, name: str, **changes: Any
) -> Settings:
    """Settings for a stack of a test's own beside the session's: its own data dir, ports,
    prefix and worker dirs, and small heaps so both stacks fit in memory."""
    run = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "data_dir": tmp_path_factory.mktemp(f"{name}-data"),
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
        "registry_port": free_port(),
        "kafka_heap": "-Xms128m -Xmx512m",
        "registry_heap": "-Xms64m -Xmx384m",
        "topic_prefix": f"gs{name}{run}",
        "app_id": f"gs{name}{run}",
        "worker_web_port": free_port(),
        "worker_state_dir": tmp_path_factory.mktemp(f"{name}-worker"),
        "auth_secrets_file": tmp_path_factory.mktemp(f"{name}-auth") / "auth-secrets.yaml",
    }
    return Settings(**{**fields, **changes})


@pytest.fixture(autouse=True)
def _stop_workers_a_test_started() -> Iterator[None]:
    before = len(Worker.every)
    yield
    stop_all(before)


@pytest.fixture(scope="session")
def worker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(stack, tmp_path_factory.mktemp("logs") / "worker.log")
    yield w
    alive = w.proc.poll() is None
    w.stop()
    assert alive, "the worker died during the session"


class Results:
    """Reads every result topic from the beginning and decodes what it finds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings)
        self.codec = Codec(settings, self.registry)
        self.consumer = Consumer(
            kafka_config(
                settings,
                {
                    "group.id": "unused",
                    "enable.auto.commit": False,
                    "log_level": 0,
                    "fetch.message.max.bytes": 64 * 1024 * 1024,
                },
            )
        )
        topics = [settings.topic(short) for short in ("admitted", "rejected", "deadletter")]
        assign_from_beginning(self.consumer, topics)
        self.seen: list[tuple[str, dict[str, Any], dict[str, bytes]]] = []

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            short = msg.topic().removeprefix(self.settings.topic_prefix + ".")
            record = self.codec.decode(msg.value(), Topic(short))
            self.seen.append((short, record, dict(msg.headers() or [])))

    def wait_for(
        self, pred: Callable[[str, dict[str, Any]], bool], timeout: float = 60, count: int = 1
    ) -> list[tuple[str, dict[str, Any], dict[str, bytes]]]:
        deadline = time.monotonic() + timeout
        while True:
            hits = [s for s in self.seen if pred(s[0], s[1])]
            if len(hits) >= count or time.monotonic() > deadline:
                return hits
            self.poll(0.5)

    def close(self) -> None:
        self.consumer.close()
        self.registry.close()


@pytest.fixture
def results(stack: Settings) -> Iterator[Results]:
    r = Results(stack)
    yield r
    r.close()


@pytest.fixture
def raw_producer(stack: Settings) -> Iterator[Producer]:
    p = Producer(kafka_config(stack, log_level=0))
    yield p
    assert p.flush(30) == 0
