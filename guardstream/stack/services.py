"""`guardstream stack up | down | status | logs`: the broker and the registry as processes."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.stack import fetch, secure
from guardstream.stack.process import Service, port_open, stop_together, tail
from guardstream.streams.clients import registry_auth


@dataclass(frozen=True)
class Health:
    """What `stack status` reports for one service."""

    name: str
    pid: int | None
    address: str
    healthy: bool


@dataclass(frozen=True)
class Node:
    """One KRaft node of the local stack: broker and controller in one process."""

    node_id: int
    port: int
    controller_port: int
    home: Path
    service: Service


def nodes(settings: Settings) -> list[Node]:
    """The stack's Kafka nodes. Node 1 keeps the single broker's names (`kafka`, its data
    dir), so a one-broker data dir is what it always was."""
    run, logs = settings.data_dir / "run", settings.data_dir / "logs"
    out = []
    for i in range(settings.brokers):
        name = "kafka" if i == 0 else f"kafka-{i + 1}"
        out.append(
            Node(
                i + 1,
                settings.kafka_port + 2 * i,
                settings.kafka_controller_port + 2 * i,
                settings.data_dir / name,
                Service(name, run, logs),
            )
        )
    return out


def registry_service(settings: Settings) -> Service:
    """The registry's process."""
    return Service("registry", settings.data_dir / "run", settings.data_dir / "logs")


def _services(settings: Settings) -> list[Service]:
    return [n.service for n in nodes(settings)] + [registry_service(settings)]


def check_java(settings: Settings) -> int:
    """The Java major version, or a one-line error naming the fix."""
    java = shutil.which(settings.java)
    if java is None:
        raise GuardstreamError(
            f"Java ('{settings.java}') is not on PATH; the broker and registry need Java 17+",
            "install it (apt-get install openjdk-17-jre-headless) or set GUARDSTREAM_JAVA",
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(m.group(1)) if m else 0
    if major == 1 and m and m.group(2):  # "1.8.0" style
        major = int(m.group(2))
    if major < 17:
        raise GuardstreamError(
            f"{java} is Java {major or 'of unknown version'}; the stack needs Java 17+",
            "install Java 17 and point GUARDSTREAM_JAVA at it",
        )
    return major


# The Kafka version that formatted <data dir>/kafka: its metadata log starts at that
# version's metadata.version, which an older Kafka line cannot read.
FORMATTED_BY = "formatted-by"


def check_formatted_version(settings: Settings) -> None:
    """Refuse to start a broker older than the one that formatted the data dir, naming the fix.

    Without this the broker dies at start with a stack trace ending in "No MetadataVersion
    with feature level 27" (Kafka 3.9 on a log formatted by 4.1). Newer on older is fine: the
    metadata.version stays where it was (3.9 -> 4.1 -> 3.9 was tried). Data dirs formatted
    before this file existed are not checked.
    """
    try:
        stored = (settings.data_dir / "kafka" / FORMATTED_BY).read_text().strip()
    except FileNotFoundError:
        return
    if fetch.kafka_line(stored) > fetch.kafka_line(settings.kafka_version):
        raise GuardstreamError(
            f"{settings.data_dir / 'kafka'} was formatted by Kafka {stored}, whose metadata "
            f"log Kafka {settings.kafka_version} cannot read",
            f"set GUARDSTREAM_KAFKA_VERSION={stored}, or `guardstream stack down` and set "
            f"GUARDSTREAM_DATA_DIR to another directory (or delete {settings.data_dir / 'kafka'} "
            "to start over)",
        )


def _port_taken_error(what: str, host: str, port: int, env: str) -> GuardstreamError:
    return GuardstreamError(
        f"port {host}:{port} for the {what} is taken by a process guardstream did not start",
        f"stop that process or set {env} to a free port",
    )


def broker_properties(settings: Settings, node: Node) -> dict[str, str]:
    """The server.properties of one plain node (`secure.broker_properties` secures it)."""
    host = settings.host
    voters = ",".join(f"{n.node_id}@{host}:{n.controller_port}" for n in nodes(settings))
    replicas = min(3, settings.brokers)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{node.port},CONTROLLER://{host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(node.home / "data"),
        "num.partitions": str(settings.default_partitions),
        # Internal topics replicated as far as the nodes allow (one node: not at all), and
        # fewer offset partitions make the first consumer group start in under a second.
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min(2, replicas)),
        "transaction.state.log.num.partitions": "8",
        "default.replication.factor": str(replicas),
        # With three replicas an acks=all write needs two: one node may be lost, not two.
        "min.insync.replicas": str(2 if replicas >= 3 else 1),
        "group.initial.rebalance.delay.ms": "0",
        # guardstream creates its topics explicitly, so a typo'd topic fails loudly.
        "auto.create.topics.enable": "false",
        # Oversize ingress values must reach the ingest agent to be rejected with a reason,
        # rather than bounce off the broker where nobody sees them.
        "message.max.bytes": str(64 * 1024 * 1024),
        "replica.fetch.max.bytes": str(64 * 1024 * 1024),
        "log.retention.hours": "168",
    }
    return props


def _kafka_config(
    settings: Settings, node: Node, cluster_id: str, users: list[secure.User] | None = None
) -> tuple[Path, bool]:
    """Write a node's config and format its storage once; return (config, formatted now).

    With `users` the broker is secured (SASL/SCRAM listener, ACLs) and they are its SCRAM users.
    """
    home, data = node.home, node.home / "data"
    props = broker_properties(settings, node)
    if users is not None:
        operator = next(u for u in users if u.role is secure.Role.OPERATOR)
        props.update(secure.broker_properties(settings, operator))
    conf = home / "server.properties"
    # 0600 from the start: a secured broker's config holds the operator's password.
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in props.items()))
    logging = fetch.broker_logging(settings.kafka_version)
    (home / logging.config_file).write_text(logging_config(logging))
    formatted = False
    if not (data / "meta.properties").exists():
        data.mkdir(parents=True, exist_ok=True)
        scram = [a for u in users or [] for a in ("--add-scram", secure.scram_argument(u))]
        libs = fetch.kafka_home(settings) / "libs"
        out = subprocess.run(
            [
                settings.java,
                "-cp",
                f"{libs}/*",
                *logging.jvm_flags(home),
                "kafka.tools.StorageTool",
                "format",
                # One argument with `=`: a random id starts with "-" one time in 64, and
                # the tool's parser would read it as an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(conf),
                *scram,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise GuardstreamError(
                f"formatting the broker's storage failed: {(out.stderr or out.stdout)[-300:]}",
                f"delete {data} and run `guardstream stack up` again",
            )
        if node.node_id == 1:
            secure.record_mode(settings, users is not None)
            _size_file(settings).write_text(f"{settings.brokers}\n")
            (home / FORMATTED_BY).write_text(settings.kafka_version + "\n")
        formatted = True
    return conf, formatted


def _size_file(settings: Settings) -> Path:
    return settings.data_dir / "kafka" / "brokers"


def formatted_brokers(settings: Settings) -> int | None:
    """How many nodes the data dir's stack was formatted with (None: not formatted)."""
    if not (settings.data_dir / "kafka" / "data" / "meta.properties").exists():
        return None
    try:
        return int(_size_file(settings).read_text().strip())
    except (OSError, ValueError):
        return 1  # formatted before the size was recorded: always one node


def as_formatted(settings: Settings) -> Settings:
    """`settings` with the node count the data dir was formatted with, so `stack down` and
    `status` see every node however GUARDSTREAM_BROKERS is set in this shell."""
    count = formatted_brokers(settings)
    return (
        settings
        if count in (None, settings.brokers)
        else settings.model_copy(update={"brokers": count})
    )


def check_cluster_size(settings: Settings) -> None:
    """Refuse to start a data dir formatted for another number of nodes.

    The controller quorum is fixed when the storage is formatted: a one-node data dir
    started as three would wait forever for voters that were never part of it.
    """
    formatted_for = formatted_brokers(settings)
    if formatted_for is not None and formatted_for != settings.brokers:
        raise GuardstreamError(
            f"{settings.data_dir} holds a {formatted_for}-broker stack, not {settings.brokers}",
            f"run with GUARDSTREAM_BROKERS={formatted_for}, or `guardstream stack down` and "
            "use another GUARDSTREAM_DATA_DIR (or delete its kafka* directories)",
        )


def _cluster_id(settings: Settings) -> str:
    """The id every node is formatted with: node 1's if it has one, else a new one."""
    meta = settings.data_dir / "kafka" / "data" / "meta.properties"
    if meta.exists():
        for line in meta.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
    # The same format as `kafka-storage random-uuid`, without paying a JVM start for it.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


# Loggers that repeat every request or metadata change at INFO; WARN keeps their problems.
_QUIET_LOGGERS = ("kafka.request.logger", "state.change.logger", "org.apache.kafka.controller")
_PATTERN = "[%d] %p %m (%c)%n"


def logging_config(logging: fetch.BrokerLogging) -> str:
    """The broker's logging config (to stdout, i.e. its log file) in its backend's syntax."""
    if logging is fetch.LOG4J:
        return (
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            f"log4j.appender.stdout.layout.ConversionPattern={_PATTERN}\n"
            + "".join(f"log4j.logger.{name}=WARN\n" for name in _QUIET_LOGGERS)
        )
    return (
        "status=warn\n"
        "appender.stdout.type=Console\n"
        "appender.stdout.name=STDOUT\n"
        "appender.stdout.layout.type=PatternLayout\n"
        f"appender.stdout.layout.pattern={_PATTERN}\n"
        "rootLogger.level=INFO\n"
        "rootLogger.appenderRef.stdout.ref=STDOUT\n"
        + "".join(
            f"logger.quiet{i}.name={name}\nlogger.quiet{i}.level=WARN\n"
            for i, name in enumerate(_QUIET_LOGGERS)
        )
    )


def _wait(
    what: str,
    ready: Callable[[], bool],
    services: list[Service],
    settings: Settings,
    console: Console,
) -> None:
    deadline = time.monotonic() + settings.startup_timeout_s
    with console.status(f"waiting for the {what} to answer"):
        while time.monotonic() < deadline:
            if ready():
                return
            for service in services:
                if service.exited_early():
                    last = " | ".join(tail(service.log_file, 3))[-400:]
                    raise GuardstreamError(
                        f"{service.name} exited during start-up: {last}",
                        f"read {service.log_file} (`guardstream stack logs {service.name}`)",
                    )
            time.sleep(0.5)
    logs = ", ".join(str(s.log_file) for s in services)
    raise GuardstreamError(
        f"the {what} did not become healthy within {settings.startup_timeout_s:.0f} s",
        f"read {logs}, or raise GUARDSTREAM_STARTUP_TIMEOUT_S on a slow machine",
    )


def broker_ready(settings: Settings, node: Node | None = None) -> bool:
    """Whether the cluster answers a metadata request naming every node (not merely an open
    port), or with `node`: whether that node answers one itself."""
    from guardstream.streams.admin import admin_client

    if node is not None:
        if not port_open(settings.host, node.port):
            return False
        settings = settings.model_copy(update={"bootstrap_servers": f"{settings.host}:{node.port}"})
    admin = admin_client(settings)
    try:
        md = admin.list_topics(timeout=3)
    except Exception:
        return False
    if node is not None:
        return node.node_id in md.brokers
    return len(md.brokers) >= settings.brokers


def registry_ready(settings: Settings) -> bool:
    """Whether the registry answers `GET /subjects` on its Confluent-compatible API."""
    try:
        r = httpx.get(
            f"{settings.registry_api}/subjects", auth=registry_auth(settings), timeout=2.0
        )
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def up(settings: Settings, console: Console, *, secured: bool = False) -> Settings:
    """Fetch (once), start (unless running) and health-check the broker and the registry.

    `secured` starts the broker with SASL/SCRAM and ACLs (see `guardstream.stack.secure`).
    Returns the settings the stack's own calls use from here on (the operator's, if secured).
    """
    registry = registry_service(settings)
    check_java(settings)
    secure.check_mode(settings, secured)
    check_cluster_size(settings)
    if secured and settings.brokers > 1:
        raise GuardstreamError(
            "the secured stack runs one broker only",
            "drop --secure or --brokers (GUARDSTREAM_BROKERS=1)",
        )
    users = secure.load_or_create_users(settings)[0] if secured else None
    # Users not written into a fresh metadata log are (re-)created through the Admin API:
    # that covers clients added to GUARDSTREAM_SECURE_CLIENTS later, and a run that failed
    # half-way. Upserting an existing user with its own password changes nothing.
    late = users or []

    cluster_id = _cluster_id(settings)
    for node in nodes(settings):
        if node.service.pid() is not None:
            continue
        check_formatted_version(settings)
        if port_open(settings.host, node.port):
            raise _port_taken_error("broker", settings.host, node.port, "GUARDSTREAM_KAFKA_PORT")
        if port_open(settings.host, node.controller_port):
            raise _port_taken_error(
                "broker's controller",
                settings.host,
                node.controller_port,
                "GUARDSTREAM_KAFKA_CONTROLLER_PORT",
            )
        libs = fetch.ensure_kafka(settings, console)
        home = node.home
        home.mkdir(parents=True, exist_ok=True)
        conf, formatted = _kafka_config(settings, node, cluster_id, users)
        if formatted:
            late = []
        node.service.start(
            [
                settings.java,
                *settings.kafka_heap.split(),
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dguardstream.service={node.service.name}",
                *fetch.broker_logging(settings.kafka_version).jvm_flags(home),
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(conf),
            ],
            cwd=home,
        )
    if registry.pid() is None:
        if port_open(settings.host, settings.registry_port):
            raise _port_taken_error(
                "registry", settings.host, settings.registry_port, "GUARDSTREAM_REGISTRY_PORT"
            )
        app = fetch.ensure_registry(settings, console)
        home = settings.data_dir / "registry"
        home.mkdir(parents=True, exist_ok=True)
        # A file-backed H2 database, so registered schemas survive a restart of the stack.
        # WRITE_DELAY=0: each commit is written to the file as it ends. H2's default keeps
        # commits in memory for up to a second, and a registry stopped then (the outage test
        # stops it right after registering) came back without the schema it had just answered
        # an id for: records naming that id were dead-lettered as SCHEMA_UNKNOWN.
        db = f"jdbc:h2:file:{home / 'db'};DB_CLOSE_ON_EXIT=FALSE;WRITE_DELAY=0"
        registry.start(
            [
                settings.java,
                *settings.registry_heap.split(),
                "-Dguardstream.service=registry",
                f"-Dquarkus.http.host={settings.host}",
                f"-Dquarkus.http.port={settings.registry_port}",
                "-Dapicurio.storage.kind=sql",
                "-Dapicurio.storage.sql.kind=h2",
                f"-Dapicurio.datasource.url={db}",
                "-jar",
                str(fetch.registry_jar(app)),
            ],
            cwd=home,
        )

    admin = secure.stack_settings(settings)
    brokers = [n.service for n in nodes(settings)]
    _wait("broker", lambda: broker_ready(admin), brokers, settings, console)
    if users is not None:
        with console.status("creating users and ACLs"):
            secure.apply(admin, users, late)
    _wait("registry", lambda: registry_ready(settings), [registry], settings, console)
    return admin


def down(settings: Settings, console: Console) -> None:
    """Stop the processes `up` started (and nothing else)."""
    settings = as_formatted(settings)
    services = list(reversed(_services(settings)))
    with console.status(f"stopping {', '.join(s.name for s in services)}"):
        stopped = stop_together(services)
    for service in services:
        console.print(
            f"{service.name}: {'stopped' if stopped[service.name] else 'was not running'}"
        )


def status(settings: Settings) -> list[Health]:
    """Each service's pid, address and health."""
    settings = as_formatted(settings)
    registry = registry_service(settings)
    admin = secure.stack_settings(settings)
    brokers = [
        Health(
            n.service.name,
            n.service.pid(),
            f"{settings.host}:{n.port}",
            broker_ready(admin, n) if settings.brokers > 1 else broker_ready(admin),
        )
        for n in nodes(settings)
    ]
    registry_health = Health(
        "registry", registry.pid(), settings.registry_api, registry_ready(settings)
    )
    return [*brokers, registry_health]


def log_file(settings: Settings, name: str) -> Path:
    """The log file of a service by name."""
    settings = as_formatted(settings)
    for service in _services(settings):
        if service.name == name:
            return service.log_file
    names = ", ".join(s.name for s in _services(settings))
    raise GuardstreamError(f"there is no stack service named '{name}'", f"use one of: {names}")
