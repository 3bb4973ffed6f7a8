"""The pure parts of `stack up --secure`: credentials files, broker properties, ACLs, modes."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from confluent_kafka.admin._acl import AclOperation
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.stack import secure, services
from guardstream.streams.clients import kafka_config


def _settings(tmp_path: Path, **kw: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "cache_dir": tmp_path / "cache",
        "topic_prefix": "gs",
        "app_id": "gsapp",
        "kafka_security_protocol": "PLAINTEXT",
        "secure_clients": "checkout, billing",
        **kw,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type,call-arg]


def _format(settings: Settings, mode: str | None) -> None:
    data = settings.data_dir / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("cluster.id=x\n")
    if mode is not None:
        (settings.data_dir / "kafka" / "security").write_text(mode + "\n")


def test_users_are_made_once_into_private_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    users, created = secure.load_or_create_users(settings)
    assert [(u.name, u.role) for u in users] == [
        (secure.OPERATOR, secure.Role.OPERATOR),
        (secure.WORKER, secure.Role.WORKER),
        ("checkout", secure.Role.CLIENT),
        ("billing", secure.Role.CLIENT),
    ]
    assert created == users
    assert secure.credentials_dir(settings).stat().st_mode & 0o777 == 0o700
    for user in users:
        path = secure.credentials_file(settings, user.name)
        assert path.stat().st_mode & 0o777 == 0o600
        assert user.password not in repr(user)
        assert len(user.password) >= 32
    again, created_again = secure.load_or_create_users(settings)
    assert created_again == [] and [u.password for u in again] == [u.password for u in users]
    assert len({u.password for u in users}) == len(users)


def test_a_credentials_file_is_the_client_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    users, _ = secure.load_or_create_users(settings)
    env = secure.read_env_file(secure.credentials_file(settings, "checkout"))
    assert env == {
        "GUARDSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "GUARDSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "GUARDSTREAM_KAFKA_SASL_USERNAME": "checkout",
        "GUARDSTREAM_KAFKA_SASL_PASSWORD": users[2].password,
    }
    # What `set -a; . FILE` gives every guardstream command: Settings reads it as such.
    client = Settings(_env_file=secure.credentials_file(settings, "checkout"))  # type: ignore[call-arg]
    conf = kafka_config(client)
    assert conf["security.protocol"] == "sasl_plaintext"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "checkout" and conf["sasl.password"] == users[2].password


def test_a_client_name_that_cannot_be_a_user_names_the_fix(tmp_path: Path) -> None:
    for bad in ("has space", secure.WORKER, "a=b", "x" * 65):
        with pytest.raises(GuardstreamError) as info:
            secure.wanted_users(_settings(tmp_path, secure_clients=bad))
        assert "GUARDSTREAM_SECURE_CLIENTS" in info.value.cause


def test_scram_argument_carries_the_salted_hash_never_the_password(tmp_path: Path) -> None:
    user = secure.User("alice", secure.Role.CLIENT, "correct horse")
    salt = b"0123456789abcdef"
    arg = secure.scram_argument(user, salt)
    assert "correct horse" not in arg
    m = re.fullmatch(
        r'SCRAM-SHA-512=\[name=alice,iterations=(\d+),salt="([^"]+)",saltedpassword="([^"]+)"\]',
        arg,
    )
    assert m, arg
    iterations = int(m.group(1))
    assert 4096 <= iterations <= 16384  # the range Kafka accepts for SCRAM-SHA-512
    assert base64.b64decode(m.group(2)) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"correct horse", salt, iterations)
    assert base64.b64decode(m.group(3)) == expected


def test_broker_properties_secure_every_client_connection(tmp_path: Path) -> None:
    settings = _settings(tmp_path, host="0.0.0.0", kafka_port=29092, kafka_controller_port=29093)
    operator = secure.User(secure.OPERATOR, secure.Role.OPERATOR, "pw")
    props = secure.broker_properties(settings, operator)
    assert props["listeners"] == "SASL_PLAINTEXT://0.0.0.0:29092,CONTROLLER://127.0.0.1:29093"
    assert props["listener.security.protocol.map"] == (
        "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    )
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == f"User:ANONYMOUS;User:{secure.OPERATOR}"
    jaas = props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert f'username="{secure.OPERATOR}" password="pw";' in jaas


def _grants(settings: Settings, user: secure.User) -> set[tuple[str, str, str, str]]:
    out = set()
    for b in secure.acl_bindings(settings, [user]):
        assert b.principal == user.principal and b.host == "*"
        out.add((b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name))
    return out


def test_a_client_writes_ingress_and_reads_decisions_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    grants = _grants(settings, secure.User("checkout", secure.Role.CLIENT, "x"))
    assert grants == {
        ("TOPIC", "gs.requests", "LITERAL", "WRITE"),
        ("TOPIC", "gs.requests", "LITERAL", "DESCRIBE"),
        ("TOPIC", "gs.usage", "LITERAL", "WRITE"),
        ("TOPIC", "gs.usage", "LITERAL", "DESCRIBE"),
        ("TOPIC", "gs.admitted", "LITERAL", "READ"),
        ("TOPIC", "gs.admitted", "LITERAL", "DESCRIBE"),
        ("TOPIC", "gs.rejected", "LITERAL", "READ"),
        ("TOPIC", "gs.rejected", "LITERAL", "DESCRIBE"),
        ("GROUP", "checkout", "PREFIXED", "READ"),
        ("GROUP", "checkout", "PREFIXED", "DESCRIBE"),
    }


def test_a_worker_owns_guardstream_and_faust_topics_but_cannot_delete_them(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    bindings = secure.acl_bindings(settings, [secure.User("w", secure.Role.WORKER, "x")])
    topics = {
        (b.name, b.operation)
        for b in bindings
        if b.restype == ResourceType.TOPIC
        and b.resource_pattern_type == ResourcePatternType.PREFIXED
    }
    for prefix in ("gs.", "gsapp"):
        for op in (AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE):
            assert (prefix, op) in topics
    assert not {op for _, op in topics} & {
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.ALTER_CONFIGS,
        AclOperation.ALL,
    }
    assert all(b.restype in (ResourceType.TOPIC, ResourceType.GROUP) for b in bindings)


def test_the_operator_needs_no_acl(tmp_path: Path) -> None:
    # A super user: ACLs would only suggest it were limited.
    operator = secure.User(secure.OPERATOR, secure.Role.OPERATOR, "x")
    assert secure.acl_bindings(_settings(tmp_path), [operator]) == []


@pytest.mark.parametrize(
    ("mode", "secured", "fix"),
    [
        (None, True, "guardstream stack up`"),  # formatted before --secure: plain
        ("plain", True, "guardstream stack up`"),
        ("secure", False, "guardstream stack up --secure"),
    ],
)
def test_a_data_dir_starts_only_the_way_it_was_formatted(
    tmp_path: Path, mode: str | None, secured: bool, fix: str
) -> None:
    settings = _settings(tmp_path)
    _format(settings, mode)
    with pytest.raises(GuardstreamError) as info:
        services.up(settings, Console(quiet=True), secured=secured)
    assert fix in info.value.fix and "GUARDSTREAM_DATA_DIR" in info.value.fix
    assert str(settings.data_dir) in info.value.cause
    assert "\n" not in str(info.value)


def test_a_secured_data_dir_without_its_credentials_names_the_fix(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _format(settings, "secure")
    with pytest.raises(GuardstreamError) as info:
        secure.check_mode(settings, True)
    assert secure.OPERATOR in info.value.cause and "stack up --secure" in info.value.fix


def test_the_stack_talks_to_a_secured_broker_as_the_operator(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert secure.stack_settings(settings) is settings  # nothing formatted yet
    users, _ = secure.load_or_create_users(settings)
    _format(settings, "secure")
    admin = secure.stack_settings(settings)
    assert admin.kafka_sasl_username == secure.OPERATOR
    assert admin.kafka_sasl_password is not None
    assert admin.kafka_sasl_password.get_secret_value() == users[0].password
