"""Every Kafka client's settings come from `Settings`: plaintext by default, secured by env."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from guardstream.config.settings import Settings
from guardstream.streams.clients import (
    aiokafka_config,
    faust_broker_options,
    kafka_config,
)

SECRET = "s3cr3t-Pa55word"


def _settings(**kw: object) -> Settings:
    # `_env_file=None`: a developer's `.env` must not change what these tests see.
    return Settings(_env_file=None, **kw)  # type: ignore[arg-type,call-arg]


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"GUARDSTREAM_{name.upper()}", raising=False)
    return _settings(bootstrap_servers="broker-1:9092,broker-2:9092")


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "client.pem", d / "client.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=guardstream-test", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _sasl_ssl(cert: Path, key: Path, **kw: object) -> Settings:
    values: dict[str, object] = {
        "bootstrap_servers": "kafka.example:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "tenant-acme",
        "kafka_sasl_password": SECRET,
        "kafka_ssl_ca_file": cert,  # self-signed: it is its own CA
        "kafka_ssl_cert_file": cert,
        "kafka_ssl_key_file": key,
    }
    return _settings(**{**values, **kw})


# --- defaults: exactly the configs written by hand before ---------------------------------


def test_defaults_are_plaintext(plain: Settings) -> None:
    assert plain.kafka_security_protocol == "PLAINTEXT"
    assert kafka_config(plain) == {"bootstrap.servers": "broker-1:9092,broker-2:9092"}
    assert aiokafka_config(plain) == {"bootstrap_servers": "broker-1:9092,broker-2:9092"}
    assert faust_broker_options(plain) == {"broker": "kafka://broker-1:9092,broker-2:9092"}


def test_default_bootstrap_is_the_local_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"GUARDSTREAM_{name.upper()}", raising=False)
    s = _settings(host="10.0.0.5", kafka_port=19092)
    assert kafka_config(s) == {"bootstrap.servers": "10.0.0.5:19092"}


def test_overrides_keep_each_clients_extras(plain: Settings) -> None:
    conf = kafka_config(plain, {"group.id": "g", "enable.auto.commit": False}, log_level=0)
    assert conf == {
        "bootstrap.servers": "broker-1:9092,broker-2:9092",
        "group.id": "g",
        "enable.auto.commit": False,
        "log_level": 0,
    }
    assert kafka_config(plain, {"bootstrap.servers": "other:1"})["bootstrap.servers"] == "other:1"


# --- a secured cluster: one set of environment variables, every client kind ---------------


def test_sasl_ssl_reaches_confluent_kafka(client_cert: tuple[Path, Path]) -> None:
    cert, key = client_cert
    conf = kafka_config(_sasl_ssl(cert, key), {"group.id": "g"}, log_level=0)
    assert conf == {
        "bootstrap.servers": "kafka.example:9093",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "tenant-acme",
        "sasl.password": SECRET,
        "ssl.ca.location": str(cert),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "group.id": "g",
        "log_level": 0,
    }


def test_confluent_kafka_accepts_the_config(client_cert: tuple[Path, Path]) -> None:
    from confluent_kafka import Producer

    cert, key = client_cert
    # Construction validates every key and loads the certificate; nothing connects yet.
    Producer(kafka_config(_sasl_ssl(cert, key), log_level=0)).flush(0)


def test_sasl_ssl_reaches_aiokafka(client_cert: tuple[Path, Path]) -> None:
    cert, key = client_cert
    conf = aiokafka_config(_sasl_ssl(cert, key))
    context = conf.pop("ssl_context")
    assert conf == {
        "bootstrap_servers": "kafka.example:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tenant-acme",
        "sasl_plain_password": SECRET,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_sasl_ssl_reaches_faust(client_cert: tuple[Path, Path]) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    cert, key = client_cert
    options = faust_broker_options(_sasl_ssl(cert, key))
    assert options["broker"] == "kafka://kafka.example:9093"
    credentials = options["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "tenant-acme"
    assert auth["sasl_plain_password"] == SECRET
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_sasl_plaintext_has_no_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = _settings(
        kafka_security_protocol="sasl_plaintext",  # case does not matter
        kafka_sasl_mechanism="scram-sha-256",
        kafka_sasl_username="u",
        kafka_sasl_password=SECRET,
    )
    conf = kafka_config(s)
    assert conf["security.protocol"] == "sasl_plaintext"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-256"
    assert not any(k.startswith("ssl.") for k in conf)
    assert "ssl_context" not in aiokafka_config(s)
    auth = credentials_to_aiokafka_auth(faust_broker_options(s)["broker_credentials"])
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None


def test_ssl_alone_uses_tls_without_sasl(client_cert: tuple[Path, Path]) -> None:
    cert, _key = client_cert
    s = _settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=cert)
    conf = kafka_config(s)
    assert conf == {
        "bootstrap.servers": s.kafka_bootstrap,
        "security.protocol": "ssl",
        "ssl.ca.location": str(cert),
    }
    assert set(aiokafka_config(s)) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert isinstance(faust_broker_options(s)["broker_credentials"], faust.SSLCredentials)


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="GUARDSTREAM_KAFKA_SASL_USERNAME"):
        _settings(kafka_security_protocol="SASL_SSL")


def test_unknown_protocol_or_mechanism_is_refused() -> None:
    with pytest.raises(ValidationError):
        _settings(kafka_security_protocol="TLS")
    with pytest.raises(ValidationError):
        _settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="GSSAPI",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("GUARDSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("GUARDSTREAM_KAFKA_SASL_USERNAME", "tenant-acme")
    monkeypatch.setenv("GUARDSTREAM_KAFKA_SASL_PASSWORD", SECRET)
    conf = kafka_config(_settings())
    assert conf["sasl.username"] == "tenant-acme" and conf["sasl.password"] == SECRET


# --- the password never shows -------------------------------------------------------------


def test_the_password_is_not_in_any_repr(client_cert: tuple[Path, Path]) -> None:
    cert, key = client_cert
    s = _sasl_ssl(cert, key)
    faust_options = faust_broker_options(s)
    shown = [
        repr(s),
        str(s),
        repr(s.kafka_sasl_password),
        s.model_dump_json(),
        repr(kafka_config(s)),
        str(kafka_config(s)),
        f"{kafka_config(s)}",
        repr(aiokafka_config(s)),
        repr(faust_options),
        repr(faust_options["broker_credentials"]),
    ]
    for text in shown:
        assert SECRET not in text, text
    assert "tenant-acme" in repr(kafka_config(s))  # only the secret is masked
