"""Creating guardstream's topics on the broker (idempotent)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

# Where the names are defined: the package re-exports them without declaring it (mypy).
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import Topic, changelog_topics


def admin_client(settings: Settings) -> AdminClient:
    """An Admin API client for the configured broker."""
    return AdminClient(kafka_config(settings, log_level=0))


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create every missing guardstream topic, the tables' changelogs included; return the
    names created, once the broker lists each with a leader for every partition.

    Faust would create the changelogs itself, as it starts, and its first partition
    assignment can come before the group leader's metadata has them: it then assigns the
    tables' source partitions without their changelog partitions, so a worker decides on a
    table it never restored, and no standby copy is kept (for up to the consumer's metadata
    age, five minutes). Seen on three brokers: a worker that took over partitions that way
    answered hundreds of usage reports USAGE_UNKNOWN.
    """
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except Exception as exc:
        raise GuardstreamError(
            f"cannot reach the broker at {settings.kafka_bootstrap}: {exc}",
            "start it with `guardstream stack up` or set GUARDSTREAM_BOOTSTRAP_SERVERS",
        ) from exc
    _align_configs(admin, settings, existing, timeout_s)
    replicas = {"min.insync.replicas": str(settings.topic_min_insync)}
    configs = {
        settings.topic(t): {"max.message.bytes": str(64 * 1024 * 1024), **replicas, **t.config}
        for t in Topic
    }
    # As Faust makes them: compacted, one partition per source partition.
    configs.update(
        {
            name: {"cleanup.policy": "compact", **replicas}
            for name in changelog_topics(settings).values()
        }
    )
    wanted = [
        NewTopic(
            name,
            num_partitions=settings.default_partitions,
            replication_factor=settings.topic_replicas,
            config=config,
        )
        for name, config in configs.items()
        if name not in existing
    ]
    if not wanted:
        return []
    created, unlisted = [], set()
    for name, future in admin.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise GuardstreamError(
                    f"creating topic {name} failed: {exc}",
                    "check the broker log (`guardstream stack logs kafka`)",
                ) from exc
            unlisted.add(name)
    # A topic can exist and still be missing from the listing: with several brokers, the one
    # that answered may not have heard yet of a topic made a moment ago (by hand, or by
    # another process). It is as old as any listed one, so it gets the same alignment.
    _align_configs(admin, settings, unlisted, timeout_s)
    _await_listed(admin, settings, [t.topic for t in wanted], timeout_s)
    return created


def _await_listed(
    admin: AdminClient, settings: Settings, names: list[str], timeout_s: float
) -> None:
    """Wait until the broker's metadata lists every topic with a leader on each partition."""
    deadline = time.monotonic() + timeout_s
    pending = list(names)
    while pending:
        listed = admin.list_topics(timeout=timeout_s).topics
        pending = [
            name
            for name in pending
            if name not in listed
            or len(listed[name].partitions) < settings.default_partitions
            or any(p.leader < 0 for p in listed[name].partitions.values())
        ]
        if pending and time.monotonic() > deadline:
            raise GuardstreamError(
                f"topics {', '.join(pending)} were created but the broker does not list them "
                f"with a leader for every partition after {timeout_s:.0f} s",
                "check that every broker is up (`guardstream stack status`) and its log",
            )
        if pending:
            time.sleep(0.1)


def _align_configs(
    admin: AdminClient, settings: Settings, existing: set[str], timeout_s: float
) -> None:
    """Set the configs guardstream relies on (e.g. broker timestamps on the ingress topics)
    on topics that already exist but differ: a topic created by an older version, or by hand,
    would otherwise keep client-chosen timestamps and let a replayed signature pass.

    Only what differs is altered, so a worker that may describe but not alter configs (the
    secured stack's worker user) starts when the operator has set them.
    """
    wanted = {settings.topic(t): t.config for t in Topic if t.config}
    names = [name for name in wanted if name in existing]
    if not names:
        return
    changes = []
    for name, current in _describe_topic_configs(admin, names, timeout_s).items():
        differ = {k: v for k, v in wanted[name].items() if current.get(k) != v}
        if differ:
            changes.append((name, differ))
    for name, differ in changes:
        entries = [
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in differ.items()
        ]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        for future in admin.incremental_alter_configs(
            [resource], request_timeout=timeout_s
        ).values():
            try:
                future.result()
            except Exception as exc:
                settings_text = ", ".join(f"{k}={v}" for k, v in differ.items())
                raise GuardstreamError(
                    f"topic {name} needs {settings_text} and setting it failed: {exc}",
                    "run `guardstream stack up` (or `topics create`) as an operator allowed "
                    "to alter topic configs, or set it on the topic by hand",
                ) from exc


def _describe_topic_configs(
    admin: AdminClient, names: list[str], timeout_s: float
) -> dict[str, dict[str, str | None]]:
    """Each topic's config, waiting out brokers that have not yet heard of a new topic.

    A describe goes to any broker; with several, a topic created a moment ago is unknown to
    some of them for a while (UNKNOWN_TOPIC_OR_PART), which is asked again until `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    configs: dict[str, dict[str, str | None]] = {}
    pending = list(names)
    while pending:
        described = admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, name) for name in pending],
            request_timeout=timeout_s,
        )
        unknown = []
        for resource, future in described.items():
            try:
                configs[resource.name] = {k: e.value for k, e in future.result().items()}
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                is_unknown = (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                )
                if not is_unknown or time.monotonic() >= deadline:
                    raise _describe_failed(resource.name, exc) from exc
                unknown.append(resource.name)
            except Exception as exc:
                raise _describe_failed(resource.name, exc) from exc
        pending = unknown
        if pending:
            time.sleep(0.2)
    return configs


def _describe_failed(name: str, exc: Exception) -> GuardstreamError:
    return GuardstreamError(
        f"reading the config of topic {name} failed: {exc}",
        "let guardstream's user describe topic configs (DESCRIBE_CONFIGS)",
    )


# Answers a partition gives while its leader is being (re-)established; librdkafka does not
# always flag them retriable on the watermark call.
_LEADERSHIP_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def high_watermark(consumer: Consumer, topic: str, partition: int, timeout_s: float = 30.0) -> int:
    """A partition's end offset, waiting out a broker that is still taking leadership.

    Right after a broker (re)starts with existing data, a partition can answer
    NOT_LEADER_FOR_PARTITION for a few seconds; that, its kin and every retriable error are
    retried until `timeout_s`, then raised.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=max(1.0, deadline - time.monotonic())
            )
            return int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            settling = isinstance(error, KafkaError) and (
                error.retriable() or error.code() in _LEADERSHIP_SETTLING
            )
            if not settling or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
