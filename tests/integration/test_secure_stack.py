"""`stack up --secure` for real: the pipeline runs under SCRAM users and ACLs, strangers do not.

This module starts its own secured broker and registry (free ports, a temporary data dir,
the shared download cache), so the session's plain stack, which the other tests use, is
never touched. It shows the pipeline deciding a client's request with every party on its
own user, and the broker refusing a client without credentials, one with a wrong password,
and the client user writing or reading where its ACLs do not reach.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from pydantic import SecretStr
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.ops import schemas as schema_ops
from guardstream.ops import tenants as tenant_ops
from guardstream.ops.produce import Outgoing, RequestProducer
from guardstream.records import request_data
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.stack import secure, services
from guardstream.streams.admin import ensure_topics, high_watermark
from guardstream.streams.clients import kafka_config
from guardstream.streams.reader import assign_from_beginning
from guardstream.streams.topics import REQUEST_TYPE, Topic

from .conftest import TENANTS_FILE, Worker, own_stack_settings

pytestmark = pytest.mark.integration

CLIENT = "checkout-api"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = own_stack_settings(
        tmp_path_factory,
        "sec",
        secure_clients=CLIENT,
        # Whatever the developer's shell says, this module's own calls start unauthenticated.
        kafka_security_protocol="PLAINTEXT",
        bootstrap_servers=None,
        registry_url=None,
    )
    console = Console(stderr=True)
    try:
        operator = services.up(settings, console, secured=True)
        ensure_topics(operator)
        registry = Registry(settings)
        schema_ops.register_all(settings, registry)
        registry.close()
        tenant_ops.apply(operator, TENANTS_FILE)
        yield settings
    finally:
        services.down(settings, console)


def _as(settings: Settings, user: str) -> Settings:
    return secure.user_settings(settings, user)


def _worker_env(settings: Settings) -> dict[str, str]:
    """What an operator's deployment gives a worker: addresses plus the worker's file."""
    return {
        "GUARDSTREAM_DATA_DIR": str(settings.data_dir),
        "GUARDSTREAM_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "GUARDSTREAM_REGISTRY_URL": settings.registry_api,
        **secure.read_env_file(secure.credentials_file(settings, secure.WORKER)),
    }


def _request_count(settings: Settings) -> int:
    operator = _as(settings, secure.OPERATOR)
    consumer = Consumer(kafka_config(operator, {"group.id": "ops-count", "log_level": 0}))
    try:
        topic = settings.topic(Topic.REQUESTS)
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(high_watermark(consumer, topic, p) for p in parts)
    finally:
        consumer.close()


def _first_error(consumer: Consumer, seconds: float) -> KafkaError | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = consumer.poll(0.3)
        if msg is not None and msg.error():
            return msg.error()  # type: ignore[no-any-return]
    return None


def test_credentials_files_are_private(secured: Settings) -> None:
    folder = secure.credentials_dir(secured)
    assert folder.stat().st_mode & 0o777 == 0o700
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"{u}.env" for u in (secure.OPERATOR, secure.WORKER, CLIENT))
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (secured.data_dir / "kafka" / "server.properties").stat().st_mode & 0o777 == 0o600


def test_pipeline_decides_a_client_request_with_each_party_on_its_own_user(
    secured: Settings, tmp_path: Path
) -> None:
    worker = Worker(secured, tmp_path / "worker.log", extra_env=_worker_env(secured))
    client = _as(secured, CLIENT)
    producer = RequestProducer(client)
    messages = [{"role": "user", "content": "Summarise this ticket, please."}]
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests/secure",
        "type": REQUEST_TYPE,
        "datacontenttype": "application/avro",
    }
    request = Outgoing(attributes, request_data("acme", messages, max_tokens=64))
    producer.send(request)
    producer.flush(30)

    # The client reads its answer under its own user and a group named after itself.
    registry = Registry(client)
    codec = Codec(client, registry)
    consumer = Consumer(kafka_config(client, {"group.id": f"{CLIENT}-answers", "log_level": 0}))
    assign_from_beginning(consumer, [client.topic(Topic.ADMITTED), client.topic(Topic.REJECTED)])
    found: tuple[str, dict[str, Any]] | None = None
    deadline = time.monotonic() + 90
    while found is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert not msg.error(), msg.error()
        short = Topic(msg.topic().removeprefix(client.topic_prefix + "."))
        record = codec.decode(msg.value(), short)
        if record.get("request_id") == request.id:
            found = (short, record)
    consumer.close()
    registry.close()
    assert worker.proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
    worker.stop()
    assert found is not None, f"no decision: {(tmp_path / 'worker.log').read_text()[-2000:]}"
    assert found[0] == Topic.ADMITTED, found
    # Its ACLs are enough for everything a worker does, not just for this one decision.
    denied = f"User:{secure.WORKER} is Denied"
    assert denied not in (secured.data_dir / "logs" / "kafka.log").read_text()


def test_a_client_without_credentials_is_refused(secured: Settings) -> None:
    before = _request_count(secured)
    errors: list[KafkaError] = []
    delivered: list[KafkaError | None] = []
    anonymous = Producer(
        kafka_config(
            secured,
            {"message.timeout.ms": 5000, "log_level": 0},
            error_cb=errors.append,
        )
    )
    anonymous.produce(
        secured.topic(Topic.REQUESTS), b"sneaky", on_delivery=lambda e, _m: delivered.append(e)
    )
    anonymous.flush(15)
    assert delivered and delivered[0] is not None, "an unauthenticated client was heard"
    assert delivered[0].code() == KafkaError._MSG_TIMED_OUT
    # The broker drops a connection that does not start SASL: every attempt fails.
    assert any(e.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT) for e in errors)
    assert _request_count(secured) == before


def test_a_wrong_password_is_refused(secured: Settings) -> None:
    impostor = _as(secured, CLIENT).model_copy(
        update={"kafka_sasl_password": SecretStr("not-the-password")}
    )
    errors: list[KafkaError] = []
    producer = Producer(
        kafka_config(impostor, {"message.timeout.ms": 5000, "log_level": 0}, error_cb=errors.append)
    )
    delivered: list[KafkaError | None] = []
    producer.produce(
        secured.topic(Topic.REQUESTS), b"x", on_delivery=lambda e, _m: delivered.append(e)
    )
    producer.flush(15)
    assert delivered and delivered[0] is not None
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert any("invalid credentials" in e.str() for e in errors), errors


@pytest.mark.parametrize("topic", [Topic.METERING, Topic.TENANTS, Topic.ADMITTED])
def test_the_client_user_cannot_write_past_its_acls(secured: Settings, topic: Topic) -> None:
    client = _as(secured, CLIENT)
    producer = Producer(kafka_config(client, {"message.timeout.ms": 10000, "log_level": 0}))
    delivered: list[KafkaError | None] = []
    producer.produce(
        client.topic(topic), b"forged", key=b"acme", on_delivery=lambda e, _m: delivered.append(e)
    )
    producer.flush(20)
    assert delivered and delivered[0] is not None, f"the client wrote to {topic}"
    assert delivered[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, delivered[0]


@pytest.mark.parametrize("topic", [Topic.REQUESTS, Topic.DEADLETTER, Topic.METERING])
def test_the_client_user_cannot_read_past_its_acls(secured: Settings, topic: Topic) -> None:
    client = _as(secured, CLIENT)
    consumer = Consumer(kafka_config(client, {"group.id": f"{CLIENT}-snoop", "log_level": 0}))
    # Subscribe, not assign: librdkafka reports a topic it may not even describe only to a
    # subscription (an assignment to it just stays silent).
    consumer.subscribe([client.topic(topic)])
    error = _first_error(consumer, 20)
    consumer.close()
    assert error is not None, f"the client read {topic}"
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_a_plain_stack_up_on_the_secured_data_dir_names_the_fix(secured: Settings) -> None:
    with pytest.raises(GuardstreamError) as info:
        services.up(secured, Console(quiet=True))
    assert "--secure" in info.value.fix and "GUARDSTREAM_DATA_DIR" in info.value.fix


def test_a_second_secure_up_is_quick_names_the_files_and_never_a_password(
    secured: Settings,
) -> None:
    path = secure.credentials_file(secured, CLIENT)
    before = path.read_text()
    env = {
        **os.environ,
        "GUARDSTREAM_DATA_DIR": str(secured.data_dir),
        "GUARDSTREAM_KAFKA_PORT": str(secured.kafka_port),
        "GUARDSTREAM_KAFKA_CONTROLLER_PORT": str(secured.kafka_controller_port),
        "GUARDSTREAM_REGISTRY_PORT": str(secured.registry_port),
        "GUARDSTREAM_TOPIC_PREFIX": secured.topic_prefix,
        "GUARDSTREAM_SECURE_CLIENTS": CLIENT,
        "COLUMNS": "200",
    }
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "guardstream", "stack", "up", "--secure"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert time.monotonic() - t0 < 20
    assert path.read_text() == before
    for name in (secure.OPERATOR, secure.WORKER, CLIENT):
        assert str(secure.credentials_file(secured, name)) in out.stdout
        password = secure.read_env_file(secure.credentials_file(secured, name))
        assert password["GUARDSTREAM_KAFKA_SASL_PASSWORD"] not in out.stdout + out.stderr
