"""The one place every Kafka and registry client's connection settings are built from `Settings`.

Three kinds of client talk to the brokers: confluent-kafka (librdkafka: producers, consumers,
the Admin API), aiokafka (the benchmark's pass-through) and Faust (the workers, on aiokafka).
Each spells the same things differently; these builders turn the `GUARDSTREAM_KAFKA_*`
security settings into each spelling, so a secured cluster is one set of environment
variables. With the defaults (PLAINTEXT) they add nothing but the bootstrap servers.

The schema registry has two kinds of client, confluent-kafka's `SchemaRegistryClient` and
plain httpx calls; `registry_config` and `registry_auth` give both the same basic-auth
credentials (`GUARDSTREAM_REGISTRY_USERNAME`/`_PASSWORD`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from guardstream.config.settings import Settings

# Keys whose values must never be printed (a config dict ends up in logs and tracebacks).
_SECRET_KEYS = frozenset({"sasl.password", "sasl_plain_password", "basic.auth.user.info"})


class ClientConfig(dict[str, Any]):
    """A client config dict whose repr masks the SASL password."""

    def __repr__(self) -> str:
        shown = {k: "**********" if k in _SECRET_KEYS else v for k, v in self.items()}
        return repr(shown)

    __str__ = __repr__


def kafka_config(
    settings: Settings, overrides: Mapping[str, Any] | None = None, /, **more: Any
) -> dict[str, Any]:
    """A confluent-kafka (librdkafka) config: Producer, Consumer or AdminClient.

    `overrides` (librdkafka's dotted keys, e.g. ``{"group.id": "x"}``) and keyword arguments
    (keys taken verbatim, e.g. ``log_level=0``) are added last and win.
    """
    conf = ClientConfig({"bootstrap.servers": settings.kafka_bootstrap})
    if settings.kafka_security_protocol != "PLAINTEXT":
        conf["security.protocol"] = settings.kafka_security_protocol.lower()
    if settings.kafka_uses_sasl:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl.username"] = settings.kafka_sasl_username
        conf["sasl.password"] = _password(settings)
    if settings.kafka_uses_tls:
        if settings.kafka_ssl_ca_file:
            conf["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
        if settings.kafka_ssl_cert_file:
            conf["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
        if settings.kafka_ssl_key_file:
            conf["ssl.key.location"] = str(settings.kafka_ssl_key_file)
    conf.update(overrides or {})
    conf.update(more)
    return conf


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client (AIOKafkaProducer, AIOKafkaConsumer, admin)."""
    conf = ClientConfig({"bootstrap_servers": settings.kafka_bootstrap})
    if settings.kafka_security_protocol == "PLAINTEXT":
        return conf
    conf["security_protocol"] = settings.kafka_security_protocol
    if settings.kafka_uses_tls:
        conf["ssl_context"] = ssl_context(settings)
    if settings.kafka_uses_sasl:
        conf["sasl_mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl_plain_username"] = settings.kafka_sasl_username
        conf["sasl_plain_password"] = _password(settings)
    return conf


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(...)``: the broker URL and, when secured, credentials."""
    options: dict[str, Any] = {"broker": f"kafka://{settings.kafka_bootstrap}"}
    if settings.kafka_security_protocol == "PLAINTEXT":
        return options
    import faust  # late: the CLI's client commands should not pay for importing Faust

    credentials: faust.types.auth.CredentialsT
    if settings.kafka_uses_sasl:
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=_password(settings),
            mechanism=settings.kafka_sasl_mechanism,
            # With a context Faust speaks SASL_SSL, without one SASL_PLAINTEXT.
            ssl_context=ssl_context(settings) if settings.kafka_uses_tls else None,
        )
    else:
        credentials = faust.SSLCredentials(ssl_context(settings))
    options["broker_credentials"] = credentials
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of the Python (aiokafka/Faust) clients: verifies the brokers' names.

    Trusts `kafka_ssl_ca_file` when set, the system's CAs otherwise, and presents the client
    certificate when one is configured (mutual TLS), like librdkafka does.
    """
    ca = settings.kafka_ssl_ca_file
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    if settings.kafka_ssl_cert_file:
        key = settings.kafka_ssl_key_file
        context.load_cert_chain(str(settings.kafka_ssl_cert_file), str(key) if key else None)
    return context


def registry_config(settings: Settings, **more: Any) -> dict[str, Any]:
    """A confluent-kafka `SchemaRegistryClient` config: the URL and, when set, basic auth.

    Keyword arguments (the client's keys, e.g. ``timeout=5``) are added last and win.
    """
    conf = ClientConfig({"url": settings.registry_api.rstrip("/")})
    if settings.registry_username and settings.registry_password:
        password = settings.registry_password.get_secret_value()
        conf["basic.auth.user.info"] = f"{settings.registry_username}:{password}"
    conf.update(more)
    return conf


def registry_auth(settings: Settings) -> httpx.BasicAuth | None:
    """The basic auth an httpx call to the registry sends (None when none is configured)."""
    if settings.registry_username and settings.registry_password:
        return httpx.BasicAuth(
            settings.registry_username, settings.registry_password.get_secret_value()
        )
    return None


def _password(settings: Settings) -> str | None:
    secret = settings.kafka_sasl_password
    return secret.get_secret_value() if secret is not None else None
