"""Every address, port, path and limit guardstream uses, read from the environment or `.env`.

Variables are prefixed `GUARDSTREAM_` (e.g. `GUARDSTREAM_KAFKA_PORT=19092`). One `Settings`
object is the only place defaults live, so the stack, the workers, the CLI and the tests agree.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guardstream.config import resources

# Bind addresses that mean "every interface": nobody can connect to them by that name.
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """guardstream configuration; see the README's Configuration section for each field."""

    model_config = SettingsConfigDict(
        env_prefix="GUARDSTREAM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- local stack -------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface the local broker and registry bind to")
    kafka_port: int = Field(9092, description="Broker client port")
    kafka_controller_port: int = Field(9093, description="KRaft controller port")
    registry_port: int = Field(8081, description="Apicurio Registry HTTP port")
    brokers: int = Field(
        1,
        ge=1,
        le=5,
        description="KRaft nodes `stack up` runs; node i listens on kafka_port + 2(i-1) and "
        "kafka_controller_port + 2(i-1)",
    )
    kafka_version: str = Field("3.9.1", description="Apache Kafka version fetched from Maven")
    apicurio_version: str = Field("3.0.9", description="Apicurio Registry version fetched")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "guardstream", description="Downloads (jars, registry app)"
    )
    data_dir: Path = Field(
        Path.home() / ".local" / "share" / "guardstream",
        description="Broker log dirs, registry database, pid files and stack logs",
    )
    java: str = Field("java", description="Java 17+ executable")
    mvn: str = Field("mvn", description="Maven executable used to fetch the broker and registry")
    kafka_heap: str = Field("-Xms256m -Xmx1g", description="Broker JVM heap flags")
    registry_heap: str = Field("-Xms128m -Xmx512m", description="Registry JVM heap flags")
    default_partitions: int = Field(4, ge=1, description="Partitions of each guardstream topic")
    replication_factor: int | None = Field(
        None,
        ge=1,
        description="Replicas of each guardstream topic (Faust's too); defaults to "
        "min(3, brokers). At 3 or more, topics get min.insync.replicas=2",
    )
    startup_timeout_s: float = Field(120.0, description="How long `stack up` waits for health")
    secure_clients: str = Field(
        "guardstream-client",
        description="Comma-separated SCRAM users `stack up --secure` creates for client services",
    )

    # --- clients -------------------------------------------------------------------------
    bootstrap_servers: str | None = Field(
        None, description="Broker bootstrap list; defaults to host:kafka_port"
    )
    registry_url: str | None = Field(
        None, description="Confluent-compatible registry API; defaults to the local Apicurio"
    )
    registry_username: str | None = Field(
        None, description="Registry HTTP basic-auth user (every registry client sends it)"
    )
    registry_password: SecretStr | None = Field(None, description="Registry basic-auth password")
    schema_compatibility: str = Field("BACKWARD", description="Registry compatibility rule")
    schema_dir: Path = Field(
        resources.data_dir("schemas"), description="Directory of the .avsc files"
    )

    # --- broker security (every Kafka client: confluent-kafka, aiokafka, Faust) ----------------
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "PLAIN", description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL username (PLAIN and SCRAM)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_ssl_ca_file: Path | None = Field(
        None, description="PEM CA bundle to verify the brokers; default: the system's CAs"
    )
    kafka_ssl_cert_file: Path | None = Field(
        None, description="PEM client certificate (mutual TLS)"
    )
    kafka_ssl_key_file: Path | None = Field(
        None, description="PEM private key of the client certificate"
    )

    # --- pipeline --------------------------------------------------------------------------
    topic_prefix: str = Field("guardstream", description="Common prefix of every topic")
    app_id: str = Field("guardstream", description="Faust app id (consumer group, changelogs)")
    worker_web_port: int = Field(6066, description="Worker HTTP port (/metrics, health)")
    worker_url: str | None = Field(
        None,
        description="Worker HTTP base URL the CLI asks for live state (`tenants show`); "
        "defaults to http://host:worker_web_port",
    )
    worker_state_dir: Path | None = Field(
        None, description="RocksDB table directory; defaults to data_dir/worker-<port>"
    )
    auth_secrets_file: Path | None = Field(
        None,
        description="HMAC signing secrets per tenant and key id (never on a topic); "
        "defaults to data_dir/auth-secrets.yaml",
    )
    auth_tolerance_s: int = Field(
        300,
        ge=1,
        description="How far a signed event's ce_time may be from the broker's timestamp",
    )
    model_catalog: Path = Field(
        resources.data_file("config", "models.yaml"),
        description="Model catalog (limits, prices)",
    )
    tiers_file: Path = Field(
        resources.data_file("config", "tiers.yaml"), description="Tier defaults"
    )
    providers_file: Path = Field(
        resources.data_file("config", "providers.yaml"),
        description="LLM provider deployments per model, for the optional dispatch stage",
    )
    dispatch: bool = Field(
        False,
        description="Run the dispatch stage: call the model for every admitted request "
        "and write its completion and usage",
    )
    dispatch_max_in_flight: int = Field(
        512, ge=1, description="Model calls one worker keeps in flight at most"
    )
    dispatch_stream: bool = Field(
        True,
        description="Stream answers from the provider (output guardrails scan as chunks "
        "arrive and stop a blocked answer early)",
    )
    demo_tenants_file: Path = Field(
        resources.data_file("config", "demo-tenants.yaml"), description="Tenants `demo` applies"
    )
    session_timeout_s: float = Field(
        10.0, ge=3, description="Consumer session timeout: how soon a dead worker's partitions move"
    )
    table_standby_replicas: int = Field(
        1,
        ge=0,
        description="Other workers that keep a warm copy of each meter table partition",
    )
    reservation_ttl_s: int = Field(
        900, ge=1, description="A reservation with no usage after this long is released"
    )
    dedup_window_s: int = Field(
        86_400, ge=1, description="How long an event id or idempotency key counts as a duplicate"
    )
    max_record_bytes: int = Field(
        1024 * 1024, ge=1024, description="Ingress values above this are rejected undecoded"
    )
    record_budget_ms: int = Field(
        2000,
        ge=50,
        description="Time the ingest stage may spend on one record before refusing it",
    )
    registry_timeout_s: float = Field(5.0, description="Per-request registry timeout")

    # --- operations ------------------------------------------------------------------------
    log_format: Literal["json", "text"] = Field(
        "json", description="Worker log lines: one JSON object each, or Faust's text"
    )
    metrics_tenants: str = Field(
        "", description="Comma-separated tenant ids that get per-tenant spend/budget metrics"
    )
    lag_exporter_port: int = Field(
        9309, description="Port `guardstream lag-exporter` serves /metrics on"
    )
    lag_exporter_interval_s: float = Field(
        15.0, ge=0, description="Minimum seconds between the exporter's broker queries"
    )
    lag_groups: str | None = Field(
        None, description="Comma-separated consumer groups `lag` and the exporter report"
    )
    lag_status_window: int = Field(
        10, ge=2, description="Samples per partition the lag status (OK/WARN/STOP/...) judges"
    )
    lag_status_interval_s: float = Field(
        30.0, ge=0, description="Minimum seconds between two lag status samples of a partition"
    )

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        if self.kafka_uses_sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"GUARDSTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "GUARDSTREAM_KAFKA_SASL_USERNAME and GUARDSTREAM_KAFKA_SASL_PASSWORD"
            )
        if bool(self.registry_username) != bool(self.registry_password):
            raise ValueError(
                "GUARDSTREAM_REGISTRY_USERNAME and GUARDSTREAM_REGISTRY_PASSWORD go together"
            )
        if bool(self.kafka_ssl_cert_file) != bool(self.kafka_ssl_key_file):
            raise ValueError(
                "GUARDSTREAM_KAFKA_SSL_CERT_FILE and GUARDSTREAM_KAFKA_SSL_KEY_FILE go together"
            )
        return self

    @property
    def kafka_uses_sasl(self) -> bool:
        """Whether clients authenticate with SASL."""
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def kafka_uses_tls(self) -> bool:
        """Whether client connections are encrypted with TLS."""
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def kafka_bootstrap(self) -> str:
        """Bootstrap servers clients connect to (every node of the local stack by default, so
        a client starting while one node is down still finds the cluster)."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        return ",".join(f"{self.host}:{self.kafka_port + 2 * i}" for i in range(self.brokers))

    @property
    def topic_replicas(self) -> int:
        """The replication factor guardstream creates its topics with."""
        return self.replication_factor or min(3, self.brokers)

    @property
    def topic_min_insync(self) -> int:
        """min.insync.replicas for guardstream's topics: one replica may be lost, not two."""
        return 2 if self.topic_replicas >= 3 else 1

    @property
    def registry_api(self) -> str:
        """Base URL of the registry's Confluent-compatible API."""
        return self.registry_url or f"http://{self.host}:{self.registry_port}/apis/ccompat/v7"

    @property
    def secure_client_users(self) -> list[str]:
        """The client-service users of the secured local stack, in the order listed."""
        return [u.strip() for u in self.secure_clients.split(",") if u.strip()]

    @property
    def worker_advertised_host(self) -> str:
        """The host in this worker's canonical URL (where other workers forward requests).

        The bind address itself, unless it is a wildcard: then the machine's hostname.
        """
        return socket.gethostname() if self.host in _WILDCARDS else self.host

    @property
    def worker_base_url(self) -> str:
        """Base URL of the worker the CLI asks (any worker: it forwards to the owner)."""
        if self.worker_url:
            return self.worker_url.rstrip("/")
        host = "127.0.0.1" if self.host in _WILDCARDS else self.host
        return f"http://{host}:{self.worker_web_port}"

    @property
    def state_dir(self) -> Path:
        """Where this worker keeps its RocksDB tables."""
        return self.worker_state_dir or self.data_dir / f"worker-{self.worker_web_port}"

    @property
    def auth_secrets_path(self) -> Path:
        """Where the HMAC signing secrets are kept."""
        return self.auth_secrets_file or self.data_dir / "auth-secrets.yaml"

    def topic(self, name: str) -> str:
        """Full topic name for a short name such as ``requests``."""
        return f"{self.topic_prefix}.{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
